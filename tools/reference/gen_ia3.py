"""(IA)³ fixtures: one folder per case under tests/fixtures/ia3/<case>/, written by Hugging Face PEFT.

    /root/peft-venv/bin/python tools/reference/gen_ia3.py [GROUP ...]

GROUP is any of models, custom, adapters, errors (default: all). The script re-executes itself with
PYTHONHASHSEED=0 (PEFT saves target_modules / feedforward_modules from sets, so their order follows
the string hash).

Each case folder holds
  adapter_config.json, adapter_model.safetensors, README.md   what PEFT's save_pretrained writes for
                                                              adapter "default" (other adapters in <case>/<name>/)
  expected.safetensors   inputs, logits / logits_disabled / logits_merged, loss, grad.<name>,
                         merged.<module>.weight / .bias (after merge_adapter), unmerged.<module>.weight / .bias
                         (after unmerge_adapter: PEFT divides by the vector + 1e-8)
  case.json              base, task_type, injected modules (feedforward ones listed apart), parameter
                         counts, tolerances, optimizer, notes
  manifest.json          versions and command line

Procedure per case, as gen_lora.py: load the base fixture (float32, SDPA attention), torch.manual_seed(seed),
get_peft_model, 3 AdamW steps (lr 1e-2, weight_decay 0) in eval mode on the base fixture's batch, then
everything is evaluated in eval mode. The adapter weights are stored, so C++ never replays Python's RNG.
"""
import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from peft import IA3Config, get_peft_model  # noqa: E402
from peft.tuners.ia3 import IA3Layer  # noqa: E402
from peft.utils import get_peft_model_state_dict  # noqa: E402

import gen_lora  # noqa: E402
from common import FIXTURES, write_manifest  # noqa: E402
from gen_lora import base_exists, counts, load_base, load_inputs, strip, train  # noqa: E402

OUT = os.path.join(FIXTURES, "ia3")
gen_lora.OUT = OUT  # write_case / skip_case write under tests/fixtures/ia3
write_case, skip_case = gen_lora.write_case, gen_lora.skip_case

COMMON_NOTE = ("Trained and evaluated in eval mode. grad.* = gradients of `loss` (adapter active) after one backward "
               "from the trained state; names are PEFT's in-memory parameter names without 'base_model.model.'. "
               "Saved keys are '<module>.ia3_l' (adapter name removed): [out, 1] on output-scaled modules, [1, in] "
               "on feedforward (input-scaled) ones.")


def ia3_modules(pm):
    mods = {n: m for n, m in pm.base_model.model.named_modules() if isinstance(m, IA3Layer)}
    return sorted(mods), sorted(n for n, m in mods.items() if m.is_feedforward)


def layer_tensors(pm, modules, prefix, t):
    for mod in modules:
        base = pm.base_model.model.get_submodule(mod).get_base_layer()
        t[f"{prefix}.{mod}.weight"] = base.weight.detach().clone()
        if base.bias is not None:
            t[f"{prefix}.{mod}.bias"] = base.bias.detach().clone()


def evaluate(pm, inputs, merged_modules, t, key=""):
    """logits, logits_disabled, logits_merged (+ merged / unmerged weights), loss and grads; `key`
    suffixes the names (several active adapters)."""
    fwd = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        t["logits" + key] = pm(**fwd).logits
        with pm.disable_adapter():
            t["logits_disabled" + key] = pm(**fwd).logits
        pm.merge_adapter()
        t["logits_merged" + key] = pm(**fwd).logits
        layer_tensors(pm, merged_modules, "merged" + key, t)
        pm.unmerge_adapter()
        layer_tensors(pm, merged_modules, "unmerged" + key, t)
        after = pm(**fwd).logits
        assert torch.allclose(after, t["logits" + key], atol=1e-5), "unmerge did not restore the logits"
    pm.zero_grad(set_to_none=True)
    out = pm(**inputs)
    t["loss" + key] = out.loss.detach().reshape(1)
    out.loss.backward()
    for n, p in pm.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, n
            t["grad" + key + "." + strip(n)] = p.grad.detach().clone()
    pm.zero_grad(set_to_none=True)


def standard(name, base, task_type, seed, ia3_kwargs, merged_modules, notes="", extra=None):
    if not base_exists(base):
        return skip_case(name, {}, f"base fixture {base} does not exist")
    model = load_base(base)
    inputs = load_inputs(base)
    torch.manual_seed(seed)
    pm = get_peft_model(model, IA3Config(task_type=task_type, **ia3_kwargs))
    pm.eval()
    mods, ff = ia3_modules(pm)
    train(pm, inputs)
    pm.eval()
    t = dict(inputs)
    evaluate(pm, inputs, merged_modules, t)
    meta = {"base": base, "task_type": task_type, "seed": seed, "config": ia3_kwargs, "n_ia3_modules": len(mods),
            "ia3_modules": mods, "feedforward": ff, "merged_modules": merged_modules,
            "notes": (notes + " " + COMMON_NOTE).strip()}
    meta.update(extra or {})
    meta.update(counts(pm))
    write_case(name, meta, t, pm)


LLAMA = "models/llama_causal"


def model_cases():
    standard("llama_default", LLAMA, "CAUSAL_LM", 201, {},
             ["model.layers.0.self_attn.k_proj", "model.layers.1.mlp.down_proj"],
             "target_modules / feedforward_modules None -> PEFT's llama defaults (k_proj, v_proj, down_proj; "
             "feedforward down_proj). The tiny Llama has no biases.")
    standard("gpt2_default", "models/gpt2_causal", "CAUSAL_LM", 202, {},
             ["transformer.h.0.attn.c_attn", "transformer.h.1.mlp.c_proj"],
             "GPT-2 defaults c_attn, mlp.c_proj (feedforward mlp.c_proj), both Conv1D: PEFT sets fan_in_fan_out "
             "to True with a warning, so the saved config says true. merged.* are HF's [in, out] Conv1D weights; "
             "c_attn's bias is scaled too (output-scaled module), mlp.c_proj's is not.")
    standard("bert_seqcls", "models/bert_seqcls", "SEQ_CLS", 203, {},
             ["bert.encoder.layer.0.attention.self.key", "bert.encoder.layer.0.attention.output.dense",
              "bert.encoder.layer.1.output.dense"],
             "BERT defaults key, value, output.dense (feedforward output.dense, which also matches "
             "attention.output.dense); SEQ_CLS adds modules_to_save classifier, saved in full "
             "(base_model.model.classifier.weight/.bias).")
    standard("t5_default", "models/t5_seq2seq", "SEQ_2_SEQ_LM", 204, {},
             ["encoder.block.0.layer.0.SelfAttention.k", "decoder.block.1.layer.1.EncDecAttention.v",
              "decoder.block.1.layer.2.DenseReluDense.wo"],
             "T5 defaults k, v, wo (feedforward wo) in encoder self-attention, decoder self- and cross-attention "
             "and both feed-forward stacks. decoder_input_ids are passed explicitly.")


def custom_cases():
    standard("llama_custom", LLAMA, "CAUSAL_LM", 205,
             dict(target_modules=["q_proj", "o_proj", "up_proj", "down_proj"],
                  feedforward_modules=["up_proj", "down_proj"], init_ia3_weights=False),
             ["model.layers.0.self_attn.o_proj", "model.layers.1.mlp.up_proj"],
             "Explicit targets and feedforward modules; init_ia3_weights=False: vectors start as torch.randn "
             "(stored here after training, so C++ does not replay the RNG).")
    standard("llama_regex", LLAMA, "CAUSAL_LM", 206,
             dict(target_modules=r".*\.(k_proj|o_proj|down_proj)", feedforward_modules=["own_proj"],
                  exclude_modules=["model.layers.0.self_attn.o_proj"]),
             ["model.layers.1.self_attn.o_proj", "model.layers.0.mlp.down_proj"],
             "Regex target_modules (re.fullmatch) with layer 0's o_proj excluded; feedforward_modules "
             "['own_proj'] is matched by a plain str.endswith (not the '.name' rule of target_modules), so "
             "down_proj is feedforward. No subset check: target_modules is a str.")


def adapter_cases():
    """Two adapters trained one after the other; both active at once (vectors multiply); and
    add_weighted_adapter."""
    if not base_exists(LLAMA):
        return skip_case("llama_two_adapters", {}, "llama_causal missing")
    model = load_base(LLAMA)
    inputs = load_inputs(LLAMA)
    torch.manual_seed(207)
    pm = get_peft_model(model, IA3Config(task_type="CAUSAL_LM"))
    torch.manual_seed(208)
    pm.add_adapter("other", IA3Config(task_type="CAUSAL_LM", target_modules=["v_proj", "up_proj", "down_proj"],
                                      feedforward_modules=["v_proj", "down_proj"], init_ia3_weights=False))
    pm.eval()
    for name in ("default", "other"):
        pm.set_adapter(name)
        train(pm, inputs)
    pm.eval()
    merged = ["model.layers.0.self_attn.v_proj", "model.layers.1.mlp.down_proj", "model.layers.1.mlp.up_proj"]
    t = dict(inputs)
    fwd = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        pm.set_adapter("other")
        t["logits_other"] = pm(**fwd).logits
    # PEFT's unmerge divides by vector + 1e-8, so a merge / unmerge cycle leaves the base weights a
    # few ulps off: each evaluation starts from the original base weights.
    original = {n: p.detach().clone() for n, p in pm.named_parameters() if "ia3_" not in n}

    def restore():
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if n in original:
                    p.copy_(original[n])

    # Both active: PEFT multiplies the vectors of every active adapter on a layer.
    pm.base_model.set_adapter(["default", "other"])
    evaluate(pm, inputs, merged, t, key="_both")
    restore()
    pm.add_weighted_adapter(["default", "other"], [0.7, 0.5], "combo")
    for k, v in get_peft_model_state_dict(pm, adapter_name="combo").items():
        t["combo." + strip(k)] = v
    with torch.no_grad():
        pm.set_adapter("combo")
        t["logits_combo"] = pm(**fwd).logits
    pm.set_adapter("default")
    pm.eval()
    evaluate(pm, inputs, merged, t)
    mods, ff = ia3_modules(pm)
    meta = {"base": LLAMA, "task_type": "CAUSAL_LM", "seed": [207, 208], "n_ia3_modules": len(mods),
            "ia3_modules": mods, "feedforward": ff, "merged_modules": merged,
            "weighted": {"adapters": ["default", "other"], "weights": [0.7, 0.5], "adapter_name": "combo"},
            "notes": ("Adapter 'default' (PEFT's llama defaults, seed[0]) and 'other' (v_proj, up_proj, down_proj; "
                      "feedforward v_proj, down_proj; init_ia3_weights False; seed[1]) each trained 3 steps with its "
                      "own AdamW. v_proj is output-scaled for 'other' too: a PEFT IA3 layer keeps the kind it was "
                      "created with (by 'default'), so 'other' loads only after 'default'. *_both keys: both adapters active (pm.base_model.set_adapter(['default','other'])), "
                      "grad_both.* holds both adapters' gradients. combo = add_weighted_adapter([default, other], "
                      "[0.7, 0.5]): union of targets and feedforward modules, vector = sum w_i * vector_i over the "
                      "adapters that have one on that layer (combo.* and combo/). logits_other: 'other' alone. The "
                      "unsuffixed keys are for 'default' alone. " + COMMON_NOTE)}
    meta.update(counts(pm))
    write_case("llama_two_adapters", meta, t, pm)


def error_case(name, base, ia3_kwargs, notes, task_type="CAUSAL_LM"):
    try:
        pm = get_peft_model(load_base(base), IA3Config(task_type=task_type, **ia3_kwargs))
        err = None
        del pm
    except Exception as e:
        err = f"{type(e).__name__}: {e}"
    write_case(name, {"base": base, "task_type": task_type, "config": ia3_kwargs, "expect_error": err,
                      "notes": notes}, {}, None)


def error_cases():
    if not base_exists(LLAMA):
        return
    error_case("error_feedforward_subset", LLAMA, dict(target_modules=["q_proj"], feedforward_modules=["down_proj"]),
               "IA3Config.__post_init__: feedforward_modules must be a subset of target_modules (both lists).")
    error_case("error_embedding", LLAMA, dict(target_modules=["embed_tokens"], feedforward_modules=[]),
               "(IA)³ adapts Linear / Conv1D (and Conv2d/3d) only; an nn.Embedding target is rejected.")


ALL = {"models": model_cases, "custom": custom_cases, "adapters": adapter_cases, "errors": error_cases}


def main(argv):
    os.chdir(FIXTURES)  # base_model_name_or_path is the fixture-relative folder
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    for group in (argv[1:] or ALL):
        ALL[group]()
    write_manifest(OUT, optimizer=gen_lora.OPTIMIZER, skipped=gen_lora.SKIPPED, note="per-case seeds in each case.json")
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(OUT) for fn in fns)
    print(f"total {total} bytes; skipped: {gen_lora.SKIPPED or 'none'}")


if __name__ == "__main__":
    main(sys.argv)
