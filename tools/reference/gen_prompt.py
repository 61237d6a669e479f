"""Prompt-learning fixtures (Prompt Tuning, P-Tuning, Prefix Tuning / P-Tuning v2), written by
Hugging Face PEFT: one folder per case under tests/fixtures/prompt/<case>/.

    /root/peft-venv/bin/python tools/reference/gen_prompt.py [CASE ...] [--stories DIR]

With --stories DIR (stories260K converted by `peft convert ... --tokenizer tok512.bin`), the
folder text_init/ gets PEFT's TEXT-initialised prompt tables for that model (prompt_embeddings of a
fresh PromptTuningConfig with prompt_tuning_init="TEXT", P = 4 and 13) and the token ids.

Each case folder holds
  adapter/               PEFT's save_pretrained of adapter "default" (prompt_embeddings + config)
  encoder.safetensors    the full prompt encoder as PEFT built it (embedding, MLP / LSTM /
                         projection), under PEFT's module names without "prompt_encoder.default."
  expected.safetensors   inputs (as given to PEFT), logits, loss, grad.<encoder param>,
                         grad.classifier.* (classification), gen_ids (greedy generation)
  case.json              base, config, PEFT's parameter counts, tolerances
  manifest.json          versions and command line

Procedure: load the base fixture (float32, eval mode, SDPA; Gemma 2: eager), torch.manual_seed(seed),
get_peft_model, one forward with labels in eval mode (dropout off), backward, then
save_pretrained; generation cases run PEFT's generate (greedy, no EOS) on the same batch.
The encoder is stored, so C++ never replays Python's RNG.
"""
import json
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from peft import (PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig,  # noqa: E402
                  get_peft_model)
from safetensors.torch import load_file, save_file  # noqa: E402

from common import FIXTURES, write_manifest  # noqa: E402

OUT = os.path.join(FIXTURES, "prompt")
INPUT_KEYS = {
    "llama_causal": ["input_ids", "attention_mask", "labels"],
    "llama_seqcls": ["input_ids", "attention_mask", "labels"],
    "llama_tokcls": ["input_ids", "attention_mask", "labels"],
    "gpt2_causal": ["input_ids", "attention_mask", "labels"],
    "qwen2_causal": ["input_ids", "attention_mask", "labels"],
    "qwen3_causal": ["input_ids", "attention_mask", "labels"],
    "mistral_causal": ["input_ids", "attention_mask", "labels"],
    "gpt2_seqcls": ["input_ids", "attention_mask", "labels"],
    "gpt2_tokcls": ["input_ids", "attention_mask", "labels"],
    "bert_seqcls": ["input_ids", "attention_mask", "token_type_ids", "labels"],
    "bert_tokcls": ["input_ids", "attention_mask", "token_type_ids", "labels"],
    "t5_seq2seq": ["input_ids", "attention_mask", "decoder_input_ids", "labels"],
    "gemma2_causal": ["input_ids", "attention_mask", "labels"],
    "phi3_causal": ["input_ids", "attention_mask", "labels"],
    "roberta_seqcls": ["input_ids", "attention_mask", "labels"],
    "roberta_tokcls": ["input_ids", "attention_mask", "labels"],
    "distilbert_seqcls": ["input_ids", "attention_mask", "labels"],
    "distilbert_tokcls": ["input_ids", "attention_mask", "labels"],
}
TASK = {"causal": "CAUSAL_LM", "seqcls": "SEQ_CLS", "tokcls": "TOKEN_CLS", "seq2seq": "SEQ_2_SEQ_LM"}
METHODS = {
    "prompt": (PromptTuningConfig, {}),
    "ptuning_mlp": (PromptEncoderConfig, {"encoder_hidden_size": 24}),
    "ptuning_lstm": (PromptEncoderConfig, {"encoder_reparameterization_type": "LSTM", "encoder_hidden_size": 6,
                                           "encoder_num_layers": 2}),
    "prefix": (PrefixTuningConfig, {}),
    "prefix_proj": (PrefixTuningConfig, {"prefix_projection": True, "encoder_hidden_size": 20}),
}
# (base, method, generate?[, seed]); without a seed, case i is seeded 100 + i
CASES = [
    ("llama_causal", "prompt", True), ("llama_causal", "ptuning_mlp", True), ("llama_causal", "ptuning_lstm", False),
    ("llama_causal", "prefix", True), ("llama_causal", "prefix_proj", False),
    ("gpt2_causal", "prompt", True), ("gpt2_causal", "prefix", True),
    ("llama_seqcls", "prompt", False), ("llama_seqcls", "prefix", False),
    ("llama_tokcls", "ptuning_mlp", False),
    ("bert_seqcls", "prompt", False), ("bert_seqcls", "ptuning_mlp", False), ("bert_seqcls", "prefix", False),
    ("bert_seqcls", "prefix_proj", False),
    ("bert_tokcls", "prompt", False), ("bert_tokcls", "prefix", False),
    ("t5_seq2seq", "prompt", True), ("t5_seq2seq", "ptuning_mlp", False), ("t5_seq2seq", "prefix", True),
    ("gpt2_causal", "ptuning_mlp", True), ("gpt2_causal", "prefix_proj", True), ("gpt2_seqcls", "prefix", False),
    ("gpt2_tokcls", "prompt", False), ("llama_tokcls", "prefix", False), ("llama_seqcls", "ptuning_lstm", False),
    ("bert_tokcls", "ptuning_lstm", False), ("t5_seq2seq", "ptuning_lstm", False), ("t5_seq2seq", "prefix_proj", True),
    # Llama family (4-slot sliding windows): the prefix / virtual tokens leave the window while generating.
    ("qwen2_causal", "prefix", True), ("qwen3_causal", "ptuning_mlp", True), ("mistral_causal", "prompt", True),
    ("gemma2_causal", "prefix", True, 128),
    ("phi3_causal", "prefix", True, 128),
    ("roberta_seqcls", "prefix", False, 128), ("roberta_tokcls", "prefix", False, 129),
    # PEFT has no P-Tuning v2 for DistilBERT (its forward takes no past_key_values: PEFT raises "Model
    # does not support past key values which are required for prefix tuning"); its prompt methods
    # need token_dim and num_attention_heads given (config.json says dim, n_heads).
    # distilbert_seqcls is left out until modules_to_save matches PEFT's plain suffix rule (PEFT's
    # SEQ_CLS "classifier" also wraps DistilBERT's "pre_classifier").
    ("distilbert_tokcls", "ptuning_mlp", False, 130),
]
# Config fields PEFT cannot read from the model's config.json.
EXTRA = {"distilbert": {"token_dim": 32, "num_attention_heads": 4}}
P = 3
GEN_TOKENS = 6


def case_name(base, method):
    return f"{base}_{method}"


def load_base(base):
    path = os.path.join(FIXTURES, "models", base)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    # Gemma 2 runs eager attention (its default; SDPA refuses attention soft-capping).
    attn = "eager" if config.get("model_type") == "gemma2" else "sdpa"
    model = getattr(transformers, config["architectures"][0]).from_pretrained(path, dtype=torch.float32,
                                                                            attn_implementation=attn)
    model.name_or_path = f"models/{base}"
    model.config._name_or_path = f"models/{base}"
    return model.eval()


def load_inputs(base):
    f = load_file(os.path.join(FIXTURES, "models", base, "expected.safetensors"))
    return {k: f[k].long() for k in INPUT_KEYS[base]}


def peft_model_for(base, method, seed):
    task = TASK[base.split("_")[1]]
    cls, kw = METHODS[method]
    cfg = cls(task_type=task, num_virtual_tokens=P, **kw, **EXTRA.get(base.split("_")[0], {}))
    torch.manual_seed(seed)
    pm = get_peft_model(load_base(base), cfg)
    return pm.eval(), cfg


def make_case(base, method, gen, seed):
    name = case_name(base, method)
    out = os.path.join(OUT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    pm, cfg = peft_model_for(base, method, seed)
    inputs = load_inputs(base)
    t = {f"in.{k}": v for k, v in inputs.items()}
    fwd = dict(inputs)
    task = cfg.task_type
    if task == "TOKEN_CLS" and method in ("prompt", "ptuning_mlp", "ptuning_lstm"):
        # PEFT leaves the labels alone: the caller pads them for the virtual tokens (issue #1974).
        fwd["labels"] = torch.cat([torch.full((inputs["labels"].shape[0], P), -100), inputs["labels"]], 1)
    res = pm(**fwd)
    t["logits"] = res.logits
    t["loss"] = res.loss.reshape(1)
    res.loss.backward()
    enc = pm.prompt_encoder["default"]
    enc_state = {k: v.detach().clone().contiguous() for k, v in enc.state_dict().items()}
    save_file(enc_state, os.path.join(out, "encoder.safetensors"))
    for n, p in enc.named_parameters():
        if p.grad is not None:
            t[f"grad.{n}"] = p.grad
    for n, p in pm.base_model.named_parameters():
        if p.requires_grad and p.grad is not None and "modules_to_save.default" in n:
            t["grad." + n.replace("modules_to_save.default.", "")] = p.grad
    t["prompt_embeddings"] = pm.get_prompt_embedding_to_save("default")
    if gen:
        pm.base_model.generation_config.eos_token_id = None
        pm.base_model.generation_config.pad_token_id = 0
        with torch.no_grad():
            kwargs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"],
                      "max_new_tokens": GEN_TOKENS, "do_sample": False}
            t["gen_ids"] = pm.generate(**kwargs)
    trainable, total = pm.get_nb_trainable_parameters()
    pm.save_pretrained(os.path.join(out, "adapter"))
    os.remove(os.path.join(out, "adapter", "README.md"))  # model card: not needed
    # The saved adapter loads back in PEFT and gives the same logits.
    from peft import PeftModel
    again = PeftModel.from_pretrained(load_base(base), os.path.join(out, "adapter")).eval()
    with torch.no_grad():
        t["logits_loaded"] = again(**fwd).logits
    assert torch.allclose(t["logits_loaded"], t["logits"], atol=1e-6), name
    save_file({k: v.detach().contiguous() for k, v in t.items()}, os.path.join(out, "expected.safetensors"))
    meta = {"base": f"models/{base}", "method": method, "task_type": task, "peft_type": str(cfg.peft_type.value),
            "config": json.loads(json.dumps(dict(METHODS[method][1], **EXTRA.get(base.split("_")[0], {})))),
            "num_virtual_tokens": P, "seed": seed,
            "trainable_params": trainable, "all_params": total, "generate": gen,
            "gen_tokens": GEN_TOKENS if gen else 0, "atol": 1e-5, "rtol": 1e-4, "grad_rtol": 1e-5}
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    write_manifest(out, seeds=f"torch.manual_seed({seed}) before get_peft_model")
    print(f"wrote {out}: trainable {trainable} / {total}")


def text_init_case(stories):
    """PEFT's TEXT init on the real stories260K with its tokenizer: the table is a copy of the word
    embeddings of the tokenised text, repeated / truncated to P (two lengths)."""
    out = os.path.join(OUT, "text_init")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    t = {}
    text = "Once upon a time, there was"
    for p in (4, 13):
        model = transformers.LlamaForCausalLM.from_pretrained(stories, dtype=torch.float32)
        cfg = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=p, prompt_tuning_init="TEXT",
                                 prompt_tuning_init_text=text, tokenizer_name_or_path=stories)
        pm = get_peft_model(model, cfg)
        t[f"table_{p}"] = pm.get_prompt_embedding_to_save("default")
    t["ids"] = torch.tensor(transformers.AutoTokenizer.from_pretrained(stories)(text)["input_ids"])
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(out, "expected.safetensors"))
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump({"text": text, "lengths": [4, 13], "base": "stories260K (peft convert)"}, f, indent=2, sort_keys=True)
        f.write("\n")
    write_manifest(out, seeds="none (TEXT init is deterministic)")
    print(f"wrote {out}")


def main():
    args = sys.argv[1:]
    if "--stories" in args:
        i = args.index("--stories")
        text_init_case(args[i + 1])
        args = args[:i] + args[i + 2:]
        if not args:
            return
    wanted = set(args)
    for i, (base, method, gen, *seed) in enumerate(CASES):
        if wanted and case_name(base, method) not in wanted:
            continue
        make_case(base, method, gen, seed=seed[0] if seed else 100 + i)


if __name__ == "__main__":
    main()
