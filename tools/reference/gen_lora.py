"""LoRA fixtures: one folder per case under tests/fixtures/lora/<case>/, written by Hugging Face PEFT.

    build/peft convert models/stories260K/stories260K.bin /tmp/s260_lora --tokenizer models/stories260K/tok512.bin
    /root/peft-venv/bin/python tools/reference/gen_lora.py /tmp/s260_lora [GROUP ...]

GROUP is any of llama, other, family, gemma, phi3, encoders, weighted, mixed, errors (default: all). The
script re-executes itself
with PYTHONHASHSEED=0 (PEFT saves target_modules from a set, so its order follows the string hash).

Each case folder holds
  adapter_config.json, adapter_model.safetensors, README.md   what PEFT's save_pretrained writes for
                                                              adapter "default" (other adapters in <case>/<name>/)
  expected.safetensors   inputs, logits / logits_disabled / logits_merged, loss, grad.<name>, merged.<module>.weight
  case.json              base, task_type, injected modules, parameter counts, tolerances, optimizer, notes
  manifest.json          versions and command line

Procedure per case: load the base fixture (float32, transformers' default SDPA attention, like the
model fixtures: a query row with no allowed key, i.e. a left-padding position, gets a zero
attention output, not eager attention's uniform average; Gemma 2 runs eager attention, its default,
since SDPA refuses its attention soft-capping), torch.manual_seed(seed),
get_peft_model, 3 AdamW steps (lr 1e-2, weight_decay 0) on the case's batch and loss, then everything
is evaluated in eval mode. Training also runs in eval mode (dropout off; PEFT's lora_dropout is 0),
so the trained weights are a pure function of the stored files. The adapter weights are stored, so
C++ never replays Python's RNG.
"""
import contextlib
import hashlib
import io
import json
import os
import shutil
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    # PEFT writes target_modules from a Python set: its order follows the string hash, so pin the
    # hash seed to make adapter_config.json byte-identical between runs.
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # base_model_name_or_path is a local folder; never ask the Hub

import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from common import FIXTURES, write_manifest  # noqa: E402

OUT = os.path.join(FIXTURES, "lora")
LR, WD, STEPS = 1e-2, 0.0, 3
OPTIMIZER = f"torch.optim.AdamW(lr={LR}, weight_decay={WD}, betas=(0.9, 0.999), eps=1e-8), {STEPS} steps"
STORIES_DIR = None  # set from argv

# Input keys taken from each base fixture's expected.safetensors (same batch as the model fixtures).
INPUT_KEYS = {
    "models/llama_causal": ["input_ids", "attention_mask", "labels"],
    "models/llama_seqcls": ["input_ids", "attention_mask", "labels"],
    "models/llama_tokcls": ["input_ids", "attention_mask", "labels"],
    "models/gpt2_causal": ["input_ids", "attention_mask", "labels"],
    "models/qwen2_causal": ["input_ids", "attention_mask", "labels"],
    "models/qwen3_causal": ["input_ids", "attention_mask", "labels"],
    "models/mistral_causal": ["input_ids", "attention_mask", "labels"],
    "models/bert_seqcls": ["input_ids", "attention_mask", "token_type_ids", "labels"],
    "models/t5_seq2seq": ["input_ids", "attention_mask", "decoder_input_ids", "labels"],
    "models/gemma2_causal": ["input_ids", "attention_mask", "labels"],
    "models/gemma3_causal": ["input_ids", "attention_mask", "labels"],
    "models/phi3_causal": ["input_ids", "attention_mask", "labels"],
    "models/phi3_longrope": ["input_ids", "attention_mask", "labels"],
    "models/roberta_seqcls": ["input_ids", "attention_mask", "labels"],
    "models/distilbert_seqcls": ["input_ids", "attention_mask", "labels"],
}

MIXED_IDS = torch.tensor([[5, 17, 33, 9, 41, 12, 7], [0, 0, 23, 8, 50, 3, 19], [4, 9, 16, 25, 36, 49, 60]])
MIXED_MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])


def base_path(base):
    if base == "stories260k":
        return STORIES_DIR
    return os.path.join(FIXTURES, base)


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def base_exists(base):
    p = base_path(base)
    return p is not None and os.path.exists(os.path.join(p, "config.json")) and \
        os.path.exists(os.path.join(p, "model.safetensors"))


def load_base(base):
    path = base_path(base)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    cls = getattr(transformers, config["architectures"][0])
    attn = "eager" if config.get("model_type") == "gemma2" else "sdpa"
    model = cls.from_pretrained(path, dtype=torch.float32, attn_implementation=attn)
    # adapter_config.json's base_model_name_or_path: the fixture-relative name, not this machine's path.
    model.name_or_path = base
    model.config._name_or_path = base
    return model.eval()


def load_inputs(base):
    if base == "stories260k":
        f = load_file(os.path.join(FIXTURES, "stories260k", "expected.safetensors"))
        ids, mask = f["batch_ids"].long(), f["batch_mask"].long()
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    f = load_file(os.path.join(FIXTURES, base, "expected.safetensors"))
    return {k: f[k].long() for k in INPUT_KEYS[base]}


def strip(name):
    return name.removeprefix("base_model.model.")


def lora_module_names(pm):
    return sorted(n for n, m in pm.base_model.model.named_modules() if isinstance(m, LoraLayer))


def train(pm, inputs, steps=STEPS):
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WD)
    for _ in range(steps):
        opt.zero_grad()
        loss = pm(**inputs).loss
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)


def evaluate(pm, inputs, merged_modules, t):
    """logits (active adapter), logits_disabled, logits_merged (+ merged weights), loss and grads."""
    fwd = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        t["logits"] = pm(**fwd).logits
        with pm.disable_adapter():
            t["logits_disabled"] = pm(**fwd).logits
        pm.merge_adapter()
        t["logits_merged"] = pm(**fwd).logits
        for mod in merged_modules:
            layer = pm.base_model.model.get_submodule(mod)
            t[f"merged.{mod}.weight"] = layer.get_base_layer().weight.detach().clone()
        pm.unmerge_adapter()
        after = pm(**fwd).logits
        assert torch.allclose(after, t["logits"], atol=1e-5), "unmerge did not restore the logits"
    pm.zero_grad(set_to_none=True)
    out = pm(**inputs)
    t["loss"] = out.loss.detach().reshape(1)
    out.loss.backward()
    for n, p in pm.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, n
            t["grad." + strip(n)] = p.grad.detach().clone()
    pm.zero_grad(set_to_none=True)


def counts(pm):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pm.print_trainable_parameters()
    trainable, total = pm.get_nb_trainable_parameters()
    return {"trainable_params": trainable, "all_params": total,
            "print_trainable_parameters": buf.getvalue().strip()}


def write_case(name, meta, tensors, pm=None, save_kwargs=None):
    out = os.path.join(OUT, name)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    if pm is not None:
        pm.save_pretrained(out, **(save_kwargs or {}))
    if tensors:
        clean = {}
        for k, v in tensors.items():
            v = v.detach().contiguous().cpu()
            clean[k] = v.to(torch.int64) if not v.is_floating_point() else v.to(torch.float32)
        save_file(clean, os.path.join(out, "expected.safetensors"))
    case = {"atol": 1e-5, "grad_rtol": 1e-5, "optimizer": OPTIMIZER if pm is not None else None}
    if tensors and "logits_merged" in tensors:
        # Merging changes the float32 rounding; with |logits| ~ 10 (stories260k) it exceeds 1e-5.
        d = (tensors["logits_merged"] - tensors["logits"]).abs().max().item()
        case["atol_merged"] = max(1e-5, float(f"{4 * d:.1g}"))
    case.update(meta)
    if "base" in case:
        # The base fixtures are regenerated by their own scripts; a changed base makes this case stale.
        case["base_sha256"] = file_sha256(os.path.join(base_path(case["base"]), "model.safetensors"))
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump(case, f, indent=2, sort_keys=True)
        f.write("\n")
    write_manifest(out, seed=meta.get("seed"),
                   procedure="torch.manual_seed(seed) before get_peft_model; weights stored in the fixture")
    size = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(out) for fn in fns)
    print(f"wrote {out} ({size} bytes)")


def skip_case(name, meta, why):
    out = os.path.join(OUT, name)
    if os.path.exists(out):
        shutil.rmtree(out)
    print(f"SKIP {name}: {why}")
    SKIPPED[name] = why


SKIPPED = {}
COMMON_NOTE = ("Trained and evaluated in eval mode (dropout off). grad.* = gradients of `loss` (eval mode, adapter "
               "active) after one backward from the trained state; names are PEFT's in-memory parameter names "
               "without the leading 'base_model.model.'. Keys in adapter_model.safetensors are PEFT's save names "
               "(adapter name removed).")


def standard(name, base, task_type, seed, lora_kwargs, merged_modules, notes="", extra=None):
    if not base_exists(base):
        return skip_case(name, {}, f"base fixture {base} does not exist")
    model = load_base(base)
    inputs = load_inputs(base)
    torch.manual_seed(seed)
    try:
        cfg = LoraConfig(task_type=task_type, **lora_kwargs)
        pm = get_peft_model(model, cfg)
    except Exception as e:  # recorded, not fatal
        meta = {"base": base, "task_type": task_type, "seed": seed, "config": lora_kwargs,
                "expect_error": f"{type(e).__name__}: {e}", "notes": notes}
        return write_case(name, meta, {}, None)
    pm.eval()
    mods = lora_module_names(pm)
    train(pm, inputs)
    pm.eval()
    t = dict(inputs)
    evaluate(pm, inputs, merged_modules, t)
    meta = {"base": base, "task_type": task_type, "seed": seed, "n_lora_modules": len(mods), "lora_modules": mods,
            "merged_modules": merged_modules, "notes": (notes + " " + COMMON_NOTE).strip()}
    meta.update(extra or {})
    meta.update(counts(pm))
    write_case(name, meta, t, pm)


LLAMA = "models/llama_causal"
QV0 = ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]


def llama_cases():
    base_kw = dict(r=4, lora_alpha=8, lora_dropout=0.0)
    standard("llama_default", LLAMA, "CAUSAL_LM", 101, dict(base_kw), QV0,
             "target_modules None -> PEFT's llama default (q_proj, v_proj).")
    standard("llama_all_linear", LLAMA, "CAUSAL_LM", 102, dict(base_kw, target_modules="all-linear"),
             ["model.layers.0.mlp.down_proj", "model.layers.1.self_attn.k_proj"],
             "'all-linear': every nn.Linear except the output layer lm_head.")
    standard("llama_rslora", LLAMA, "CAUSAL_LM", 103, dict(r=4, lora_alpha=16, lora_dropout=0.0, use_rslora=True),
             QV0, "scaling = lora_alpha / sqrt(r) = 8.")
    standard("llama_dora", LLAMA, "CAUSAL_LM", 104, dict(base_kw, use_dora=True), QV0,
             "DoRA: saved key '<module>.lora_magnitude_vector' (no '.weight'); in-memory name "
             "'<module>.lora_magnitude_vector.default.weight'. merged.* = m / ||W + s*B*A||_row * (W + s*B*A).")
    standard("llama_bias_all", LLAMA, "CAUSAL_LM", 105, dict(base_kw, bias="all"), QV0,
             "The tiny Llama has no biases at all (attention_bias/mlp_bias false), so bias='all' trains nothing "
             "extra here; see bert_bias_all for a base with biases.")
    standard("llama_bias_lora_only", LLAMA, "CAUSAL_LM", 106, dict(base_kw, bias="lora_only"), QV0,
             "No biases in the tiny Llama; see bert_bias_lora_only.")
    standard("llama_patterns", LLAMA, "CAUSAL_LM", 107,
             dict(base_kw, target_modules=r".*\.(q_proj|v_proj)", rank_pattern={"q_proj": 2},
                  alpha_pattern={"v_proj": 4}), QV0,
             "regex target_modules (re.fullmatch); q_proj: r=2 alpha=8 (scale 4); v_proj: r=4 alpha=4 (scale 1).")
    standard("llama_layers", LLAMA, "CAUSAL_LM", 108,
             dict(base_kw, layers_to_transform=[1], layers_pattern="layers"),
             ["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"],
             "Only layer 1's q_proj/v_proj adapted.")
    standard("llama_gaussian", LLAMA, "CAUSAL_LM", 109,
             dict(base_kw, init_lora_weights="gaussian", exclude_modules=["model.layers.0.self_attn.q_proj"]),
             ["model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj"],
             "init A ~ N(0, 1/r), B = 0; layer 0 q_proj excluded.")
    standard("llama_embedding", LLAMA, "CAUSAL_LM", 110,
             dict(base_kw, target_modules=["embed_tokens", "q_proj"]),
             ["model.embed_tokens", "model.layers.0.self_attn.q_proj"],
             "Embedding LoRA: lora_embedding_A [r, vocab], lora_embedding_B [dim, r] (raw parameters, no "
             "'.weight'). save_embedding_layers='auto' also writes the full base embedding as "
             "'base_model.model.model.embed_tokens.base_layer.weight' because an embedding is targeted.")
    standard("llama_seqcls", "models/llama_seqcls", "SEQ_CLS", 111, dict(base_kw), ["model.layers.0.self_attn.q_proj"],
             "SEQ_CLS adds modules_to_save ['classifier', 'score'] automatically; 'score' is wrapped "
             "(ModulesToSaveWrapper) and saved in full as 'base_model.model.score.weight'.")
    standard("llama_tokcls", "models/llama_tokcls", "TOKEN_CLS", 112, dict(base_kw, modules_to_save=["score"]),
             ["model.layers.0.self_attn.q_proj"], "Explicit modules_to_save ['score'].")


def other_cases():
    kw = dict(r=4, lora_alpha=8, lora_dropout=0.0)
    standard("gpt2_default", "models/gpt2_causal", "CAUSAL_LM", 113, dict(kw, fan_in_fan_out=True),
             ["transformer.h.0.attn.c_attn"],
             "GPT-2 Conv1D c_attn (PEFT default); weight stored [in, out] by HF, so merged.* is [in, out] "
             "(W += (s*B*A)^T). lora_A [r, in], lora_B [out, r] as for Linear.")
    standard("bert_seqcls", "models/bert_seqcls", "SEQ_CLS", 114, dict(kw),
             ["bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.1.attention.self.value"],
             "BERT default targets query, value; classifier is a modules_to_save copy "
             "(base_model.model.classifier.weight/.bias).")
    standard("bert_bias_all", "models/bert_seqcls", "SEQ_CLS", 120, dict(kw, bias="all"),
             ["bert.encoder.layer.0.attention.self.query"],
             "bias='all': every bias of the model is trainable and saved under its model name (for adapted "
             "layers '<module>.base_layer.bias'). PEFT quirk: because bias='all' selects every state_dict key "
             "containing 'bias', the file also holds the ModulesToSaveWrapper internals "
             "'classifier.original_module.bias' and 'classifier.modules_to_save.bias' (adapter name stripped) "
             "next to 'classifier.bias'/'classifier.weight'. The key.bias gradients are ~0 in exact arithmetic "
             "(softmax is shift-invariant), so compare grads with an absolute floor.")
    standard("bert_bias_lora_only", "models/bert_seqcls", "SEQ_CLS", 121, dict(kw, bias="lora_only"),
             ["bert.encoder.layer.0.attention.self.query"],
             "bias='lora_only': only biases of adapted layers ('<module>.base_layer.bias') are trained/saved.")
    standard("t5_default", "models/t5_seq2seq", "SEQ_2_SEQ_LM", 115, dict(kw),
             ["encoder.block.0.layer.0.SelfAttention.q", "decoder.block.1.layer.1.EncDecAttention.v"],
             "T5 default targets q, v (encoder self-attn, decoder self- and cross-attn). decoder_input_ids are "
             "passed explicitly (labels only feed the loss). Base weights are bf16-representable, run in float32.")
    standard("stories260k", "stories260k", "CAUSAL_LM", 116,
             dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
             ["model.layers.0.self_attn.q_proj", "model.layers.4.self_attn.o_proj"],
             "Base = `peft convert models/stories260K/stories260K.bin DIR` (tied embeddings); inputs are the "
             "left-padded batch of tests/fixtures/stories260k (batch_ids/batch_mask), labels = ids with pads -100. "
             "atol 3e-5: |logits| reach ~18 and SDPA vs eager attention already differ by ~1e-5 on real positions "
             "(tests/fixtures/stories260k stores both).", extra={"atol": 3e-5})


def family_cases():
    """PEFT's default targets (q_proj, v_proj) on the Llama-family fixtures (sliding windows of 4 on
    the 7-token batch; Qwen2's q/k/v biases and tied embeddings, Qwen3's q/k norms)."""
    kw = dict(r=4, lora_alpha=8, lora_dropout=0.0)
    for seed, arch in ((122, "qwen2"), (123, "qwen3"), (124, "mistral")):
        standard(f"{arch}_default", f"models/{arch}_causal", "CAUSAL_LM", seed, dict(kw), QV0,
                 f"target_modules None -> PEFT's {arch} default (q_proj, v_proj).")
def gemma_cases():
    kw = dict(r=4, lora_alpha=8, lora_dropout=0.0)
    standard("gemma2_default", "models/gemma2_causal", "CAUSAL_LM", 122, dict(kw), ["model.layers.0.self_attn.q_proj"],
             "target_modules None -> PEFT's gemma2 default (q_proj, v_proj). Sliding window 4 on layer 0, attention "
             "and final logit soft-capping, tied lm_head; eager attention (transformers' Gemma 2 default).")
    standard("gemma3_default", "models/gemma3_causal", "CAUSAL_LM", 123, dict(kw), ["model.layers.1.self_attn.v_proj"],
             "target_modules None -> PEFT's gemma3_text default (q_proj, v_proj). Gemma3ForCausalLM: q_norm/k_norm, "
             "local RoPE base on the sliding layer, linear RoPE scaling on the global one, untied lm_head.")


def two_adapters(seed_a, seed_b, targets_b=("q_proj", "v_proj")):
    model = load_base(LLAMA)
    inputs = load_inputs(LLAMA)
    torch.manual_seed(seed_a)
    pm = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0,
                                          target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(seed_b)
    pm.add_adapter("other", LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0,
                                       target_modules=list(targets_b)))
    pm.eval()
    for name in ("default", "other"):
        pm.set_adapter(name)
        train(pm, inputs)
    pm.set_adapter("default")
    pm.eval()
    return pm, inputs


def weighted_cases():
    if not base_exists(LLAMA):
        return skip_case("weighted_*", {}, "llama_causal missing")
    for i, ctype in enumerate(("linear", "cat", "svd")):
        name = f"weighted_{ctype}"
        pm, inputs = two_adapters(130 + 2 * i, 131 + 2 * i)
        kw = {"svd_rank": 4} if ctype == "svd" else {}
        pm.add_weighted_adapter(["default", "other"], [0.7, 0.5], "combo", combination_type=ctype, **kw)
        t = dict(inputs)
        mods = lora_module_names(pm)
        fwd = {k: v for k, v in inputs.items() if k != "labels"}
        with torch.no_grad():
            pm.set_adapter("other")
            t["logits_other"] = pm(**fwd).logits
            pm.set_adapter("combo")
            t["logits_combo"] = pm(**fwd).logits
        from peft.utils import get_peft_model_state_dict
        for k, v in get_peft_model_state_dict(pm, adapter_name="combo").items():
            t["combo." + strip(k)] = v
        pm.set_adapter("default")
        pm.eval()
        evaluate(pm, inputs, QV0, t)
        meta = {"base": LLAMA, "task_type": "CAUSAL_LM", "seed": [130 + 2 * i, 131 + 2 * i], "n_lora_modules": len(mods),
                "lora_modules": mods, "merged_modules": QV0,
                "weighted": {"adapters": ["default", "other"], "weights": [0.7, 0.5], "adapter_name": "combo",
                             "combination_type": ctype, **kw},
                "notes": ("Adapters 'default' (seed[0]) and 'other' (seed[1]) each trained 3 steps (default first, "
                          "then other, each with its own fresh AdamW), then add_weighted_adapter. combo.* = combo's "
                          "tensors in PEFT save naming (also in combo/adapter_model.safetensors); logits_combo with "
                          "set_adapter('combo'); logits_other with 'other'; the rest (logits, grads, merged) with "
                          "'default' active. combo's lora_alpha = its rank (scale 1). " +
                          ("svd: factors come from torch.linalg.svd of the summed delta (signs are LAPACK's); "
                           "compare combo.B @ combo.A (the delta) rather than the factors. " if ctype == "svd" else
                           "cat: rank = sum of ranks, A rows scaled by weight*scale. " if ctype == "cat" else
                           "linear: A = sum sqrt(w*s)*A_i, B = sum sqrt(w*s)*B_i (target_r equal ranks). ") +
                          COMMON_NOTE)}
        meta.update(counts(pm))
        write_case(name, meta, t, pm)


def mixed_case():
    if not base_exists(LLAMA):
        return skip_case("llama_two_adapters_mixed", {}, "llama_causal missing")
    pm, inputs = two_adapters(140, 141)
    t = dict(inputs)
    mods = lora_module_names(pm)
    names = ["default", "other", "__base__"]
    with torch.no_grad():
        t["mixed_input_ids"], t["mixed_attention_mask"] = MIXED_IDS, MIXED_MASK
        t["logits_mixed"] = pm(input_ids=MIXED_IDS, attention_mask=MIXED_MASK, adapter_names=names).logits
        pm.set_adapter("other")
        t["logits_other"] = pm(**{k: v for k, v in inputs.items() if k != "labels"}).logits
        pm.set_adapter("default")
    pm.eval()
    evaluate(pm, inputs, QV0, t)
    meta = {"base": LLAMA, "task_type": "CAUSAL_LM", "seed": [140, 141], "n_lora_modules": len(mods),
            "lora_modules": mods, "merged_modules": QV0, "adapter_names": names,
            "notes": ("Adapters 'default' and 'other' (q_proj, v_proj, r 4, alpha 8) trained 3 steps each. "
                      "logits_mixed: the 3-row batch mixed_input_ids/mixed_attention_mask with "
                      "adapter_names=['default','other','__base__'] (row i uses adapter_names[i]); logits_other: "
                      "main batch with 'other' active. 'other' is saved to other/. " + COMMON_NOTE)}
    meta.update(counts(pm))
    write_case("llama_two_adapters_mixed", meta, t, pm)


def error_cases():
    """Combinations PEFT rejects: case.json carries expect_error (and the config that triggers it)."""
    if not base_exists(LLAMA):
        return
    # 1. layers_to_transform with a regex target_modules string: rejected by LoraConfig.
    standard("error_regex_layers", LLAMA, "CAUSAL_LM", 150,
             dict(r=4, lora_alpha=8, target_modules=r".*\.q_proj", layers_to_transform=[0]), [],
             "LoraConfig rejects layers_to_transform when target_modules is a str.")
    # 2. mixed-adapter batch with DoRA.
    model = load_base(LLAMA)
    torch.manual_seed(151)
    pm = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, use_dora=True))
    pm.eval()
    try:
        pm(input_ids=MIXED_IDS[:2], attention_mask=MIXED_MASK[:2], adapter_names=["default", "__base__"])
        err = None
    except Exception as e:
        err = f"{type(e).__name__}: {e}"
    write_case("error_mixed_dora", {"base": LLAMA, "task_type": "CAUSAL_LM", "seed": 151,
                                    "config": {"r": 4, "lora_alpha": 8, "use_dora": True},
                                    "call": "forward(..., adapter_names=['default','__base__'])",
                                    "expect_error": err, "notes": "Mixed-adapter batches are not supported with DoRA."},
               {}, None)
    # 3. add_weighted_adapter 'linear' with different ranks.
    model = load_base(LLAMA)
    torch.manual_seed(152)
    pm = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8))
    pm.add_adapter("other", LoraConfig(task_type="CAUSAL_LM", r=2, lora_alpha=8))
    try:
        pm.add_weighted_adapter(["default", "other"], [0.7, 0.5], "combo", combination_type="linear")
        err = None
    except Exception as e:
        err = f"{type(e).__name__}: {e}"
    write_case("error_weighted_linear_ranks", {"base": LLAMA, "task_type": "CAUSAL_LM", "seed": 152,
                                               "config": {"default": {"r": 4}, "other": {"r": 2}},
                                               "call": "add_weighted_adapter(['default','other'], [0.7,0.5], 'combo', "
                                                       "combination_type='linear')",
                                               "expect_error": err,
                                               "notes": "linear/ties/dare/magnitude_prune need equal ranks."},
               {}, None)


def encoder_cases():
    kw = dict(r=4, lora_alpha=8, lora_dropout=0.0)
    standard("roberta_seqcls", "models/roberta_seqcls", "SEQ_CLS", 116, dict(kw),
             ["roberta.encoder.layer.0.attention.self.query", "roberta.encoder.layer.1.attention.self.value"],
             "RoBERTa default targets query, value; SEQ_CLS makes the RobertaClassificationHead 'classifier' "
             "(dense + out_proj) a modules_to_save copy (base_model.model.classifier.{dense,out_proj}.*).")
    standard("distilbert_seqcls", "models/distilbert_seqcls", "SEQ_CLS", 117, dict(kw, target_modules=["q_lin", "v_lin"]),
             ["distilbert.transformer.layer.0.attention.q_lin", "distilbert.transformer.layer.1.attention.v_lin"],
             "PEFT has no default target modules for distilbert (target_modules None is an error there), so "
             "q_lin, v_lin are given; PEFT's SEQ_CLS modules_to_save 'classifier' matches by plain suffix, so "
             "'pre_classifier' is a modules_to_save copy as well as 'classifier'.")


def phi3_cases():
    kw = dict(r=4, lora_alpha=8, lora_dropout=0.0)
    # PEFT has no phi3 entry in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING: target_modules
    # must be given (without it get_peft_model raises, recorded in error_phi3_no_default).
    standard("phi3_qkv", "models/phi3_causal", "CAUSAL_LM", 160, dict(kw, target_modules=["qkv_proj"]),
             ["model.layers.0.self_attn.qkv_proj", "model.layers.1.self_attn.qkv_proj"],
             "LoRA on Phi-3's fused qkv_proj (one lora_B of (heads + 2 kv_heads) * head_dim rows); base with "
             "partial rotary and sliding_window 5.")
    standard("phi3_fused", "models/phi3_longrope", "CAUSAL_LM", 161,
             dict(kw, target_modules=["qkv_proj", "gate_up_proj"]),
             ["model.layers.0.self_attn.qkv_proj", "model.layers.1.mlp.gate_up_proj"],
             "LoRA on both fused projections (qkv_proj, gate_up_proj); LongRoPE base (short factors at this length).")
    standard("error_phi3_no_default", "models/phi3_causal", "CAUSAL_LM", 162, dict(kw), [],
             "No default target modules for model_type phi3 in PEFT.")


ALL = {"llama": llama_cases, "other": other_cases, "family": family_cases, "gemma": gemma_cases, "phi3": phi3_cases,
       "encoders": encoder_cases, "weighted": weighted_cases, "mixed": mixed_case, "errors": error_cases}


def main(argv):
    global STORIES_DIR
    STORIES_DIR = os.path.abspath(argv[1]) if len(argv) > 1 else None
    # base_model_name_or_path is the fixture-relative folder ("models/llama_causal"); run from
    # tests/fixtures so that PEFT's save-time vocab-size check finds that config.json locally.
    os.chdir(FIXTURES)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # bitwise-reproducible reductions
    os.makedirs(OUT, exist_ok=True)
    for group in (argv[2:] or ALL):
        ALL[group]()
    write_manifest(OUT, optimizer=OPTIMIZER, skipped=SKIPPED,
                   note="per-case seeds in each case.json; stories260k base = `peft convert` output passed as argv[1]")
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(OUT) for fn in fns)
    print(f"total {total} bytes; skipped: {SKIPPED or 'none'}")


if __name__ == "__main__":
    main(sys.argv)
