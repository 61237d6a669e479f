"""GGUF model fixtures: tiny random Llamas saved by transformers, converted to GGUF by llama.cpp's own
convert_hf_to_gguf.py (f32 / f16 / bf16 / q8_0) and quantised by llama.cpp's llama-quantize
(Q4_0 / Q4_1 / Q4_K / Q6_K / Q4_K_M), plus stories260K as an F32 GGUF. Next to the files,
expected.safetensors holds transformers' logits of the HF model, and for every non-f32 file the
logits of the same HF model whose weights are the gguf-py dequantisation of that very file (with
llama.cpp's Q/K row permutation undone), so a GGUF loader can be checked to ~1e-5 against those and
to quantisation error against the fp32 ones.

    # stories260K (optional: skipped without DIR) comes from the project's converter:
    build/peft convert models/stories260K/stories260K.bin /tmp/s260 --tokenizer models/stories260K/tok512.bin
    /root/peft-venv/bin/python tools/reference/gen_gguf_models.py [--stories-dir /tmp/s260]

Environment: LLAMACPP_SRC (llama.cpp source tree, default the llama-cpp-python 0.3.36 sdist's
vendor/llama.cpp), LLAMACPP_BUILD (build folder holding bin/llama-quantize, default
/work/llamacpp-build), PEFT_PY (Python that runs convert_hf_to_gguf.py, default this one).
Weights come from torch.manual_seed per model and are stored in the fixture (HF folder or GGUF), so
C++ never replays Python's RNG.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from common import FIXTURES, ROOT, versions

LLAMACPP_SRC = os.environ.get("LLAMACPP_SRC", "/work/dl/llama_cpp_python-0.3.36/vendor/llama.cpp")
LLAMACPP_BUILD = os.environ.get("LLAMACPP_BUILD", "/work/llamacpp-build")
PY = os.environ.get("PEFT_PY", sys.executable)
OUT = os.path.join(FIXTURES, "gguf", "models")
TOKENIZER_JSON = os.path.join(FIXTURES, "tokenizers", "llama2c", "tokenizer.json")  # stories260K's tok512

# The gguf-py that ships with the converter, so dequantisation matches the writer's version.
sys.path.insert(0, os.path.join(LLAMACPP_SRC, "gguf-py"))
import gguf  # noqa: E402

COMMANDS = []

# Two fixed rows of 12 ids: the llama2c tokenizer's ids of two TinyStories-like sentences (BOS first).
INPUT_IDS = torch.tensor([
    [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315],
    [1, 357, 1, 2, 0, 498, 33, 270, 511, 420, 45, 300],  # also specials, byte tokens, the last id
])

BASE = dict(vocab_size=512, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0,
            bos_token_id=1, eos_token_id=2, hidden_act="silu")
MODELS = {
    # hidden 64 / ffn 128: every row is a multiple of 32 (Q8_0, Q4_0, Q4_1 blocks), not of 256.
    "tiny_llama": dict(seed=0, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, tie_word_embeddings=False,
                       convert=["f32", "f16", "bf16", "q8_0"], quantize=["Q4_0", "Q4_1"], store_hf=True),
    "tiny_llama_tied": dict(seed=1, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                            convert=["f32", "q8_0"], quantize=[], store_hf=True),
    # K-quants need rows that are multiples of 256 (QK_K): hidden 256, ffn 512 (ffn_down rows are 512).
    # One layer and tied embeddings keep the Q6_K file under 1 MB; the f32 source is not stored.
    "tiny_llama_kq": dict(seed=2, hidden_size=256, intermediate_size=512, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                          convert=["f32"], quantize=["Q4_K", "Q6_K", "Q4_K_M"], store_hf=False),
    # Llama 3.1-style rope scaling: the converter writes rope_freqs.weight (per-frequency factors)
    # instead of rope-scaling keys. head_dim 64 and theta 500000 put several frequencies in the
    # smoothed band (original_max_position_embeddings 64 < max_position_embeddings 128).
    "tiny_llama3_rope": dict(seed=3, hidden_size=256, intermediate_size=512, num_hidden_layers=1,
                             num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                             rope_theta=500000.0,
                             rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                               high_freq_factor=4.0, original_max_position_embeddings=64),
                             convert=["q8_0"], quantize=[], store_hf=False),
}


def run(cmd, **kw):
    COMMANDS.append(" ".join(cmd).replace(ROOT + "/", ""))
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if kw.pop("quiet", True) else None, **kw)


def write_tokenizer(folder, max_len):
    shutil.copy(TOKENIZER_JSON, os.path.join(folder, "tokenizer.json"))
    # The tokenizer_config.json `peft convert` writes for stories260K.
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
                   "model_max_length": max_len, "unk_token": "<unk>"}, f, indent=2, sort_keys=True)
        f.write("\n")


def convert(hf_dir, outtype, out, name):
    run([PY, os.path.join(LLAMACPP_SRC, "convert_hf_to_gguf.py"), hf_dir, "--outtype", outtype,
         "--outfile", out, "--model-name", name], stderr=subprocess.DEVNULL)


def quantize(src, out, qtype):
    """--pure: every 2-D weight gets the one type (no k-quant mixture), except Q4_K_M, kept as the
    mixture llama.cpp picks (Q4_K plus Q6_K), as real files are."""
    exe = os.path.join(LLAMACPP_BUILD, "bin", "llama-quantize")
    pure = [] if qtype.endswith("_M") else ["--pure"]
    run([exe] + pure + [src, out, qtype], stderr=subprocess.DEVNULL)


def unpermute(w, n_head):
    """Undo convert_hf_to_gguf.py LlamaModel.permute: inside each head GGUF rows are ordered
    (i, j) -> 2*i + j for HF row j*head_dim/2 + i (interleaved RoPE pairs)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


HF_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
            "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def hf_state_from_gguf(path, cfg):
    """gguf-py dequantisation of every tensor, renamed to transformers' names, Q/K unpermuted."""
    r = gguf.GGUFReader(path)
    state, types = {}, {}
    for t in r.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type)
        w = np.asarray(w, dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])
        types[t.name] = t.tensor_type.name
        if t.name == "rope_freqs.weight":  # derived from the config's rope parameters, not a weight
            continue
        parts = t.name.split(".")
        if parts[0] == "blk":
            kind = parts[2]
            if kind == "attn_q":
                w = unpermute(w, cfg.num_attention_heads)
            elif kind == "attn_k":
                w = unpermute(w, cfg.num_key_value_heads)
            name = f"model.layers.{parts[1]}.{HF_NAMES[kind]}.weight"
        else:
            name = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                    "output.weight": "lm_head.weight"}[t.name]
        state[name] = torch.from_numpy(w.copy())
    if cfg.tie_word_embeddings:
        assert "lm_head.weight" not in state, path
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    return state, types


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def gguf_summary(path):
    r = gguf.GGUFReader(path)
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                          "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
            continue
        v = f.contents()
        meta[k] = float(np.float32(v)) if isinstance(v, float) else v
    return {"bytes": os.path.getsize(path), "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
            "metadata": meta,
            "tensors": {t.name: {"type": t.tensor_type.name, "ne": [int(d) for d in t.shape]} for t in r.tensors}}


def make_model(name, spec, tmp):
    torch.manual_seed(spec["seed"])
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "tie_word_embeddings")
    extra = {k: spec[k] for k in ("rope_theta", "rope_scaling") if k in spec}
    base = {k: v for k, v in BASE.items() if k not in extra}
    cfg = LlamaConfig(**base, **{k: spec[k] for k in keys}, **extra)
    model = LlamaForCausalLM(cfg).eval()
    # transformers' default init (std 0.02) gives near-uniform logits; larger weights make the
    # logits (and so any loader mistake) visible: matrices normal(0, 0.8 / sqrt(in_features)),
    # embeddings normal(0, 2 / sqrt(hidden)) (logit std ~2 when tied), norms uniform(0.5, 1.5).
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "embed" in n:
                p.normal_(0.0, 2.0 / cfg.hidden_size ** 0.5)
            elif p.dim() == 2:
                p.normal_(0.0, 0.8 / p.shape[1] ** 0.5)
            else:
                p.uniform_(0.5, 1.5)
    hf_dir = os.path.join(OUT, name, "hf") if spec["store_hf"] else os.path.join(tmp, name)
    os.makedirs(hf_dir, exist_ok=True)
    model.save_pretrained(hf_dir, safe_serialization=True)
    gen = os.path.join(hf_dir, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    write_tokenizer(hf_dir, BASE["max_position_embeddings"])
    return cfg, model, hf_dir


def eager(cfg, state=None, model=None, dtype=torch.float32):
    cfg = LlamaConfig.from_dict(cfg.to_dict())
    cfg._attn_implementation = "eager"
    m = LlamaForCausalLM(cfg).eval()
    m.load_state_dict(state if state is not None else model.state_dict())
    return m.to(dtype)


def build(name, spec, tmp):
    cfg, model, hf_dir = make_model(name, spec, tmp)
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    ref = eager(cfg, model=model)
    t = {"input_ids": INPUT_IDS, "logits": logits_of(ref, INPUT_IDS),
         "logits_fp64": logits_of(eager(cfg, model=model, dtype=torch.float64), INPUT_IDS)}
    files, f32 = {}, None
    fp64_gap = float((t["logits"] - t["logits_fp64"]).abs().max())
    for outtype in spec["convert"]:
        # The f32 file of a model whose HF folder is not stored is only the quantiser's input.
        keep = outtype != "f32" or spec["store_hf"]
        path = os.path.join(folder if keep else tmp, f"{name}_{outtype}.gguf")
        convert(hf_dir, outtype, path, name)
        if outtype == "f32":
            f32 = path
        files[outtype] = path
    for q in spec["quantize"]:
        path = os.path.join(folder, f"{name}_{q.lower()}.gguf")
        quantize(f32, path, q)
        files[q.lower()] = path
    report = {}
    hf_state = {k: v for k, v in model.state_dict().items()}
    for kind, path in files.items():
        state, types = hf_state_from_gguf(path, cfg)
        entry = {"types": sorted(set(types.values()))}
        if kind == "f32":
            for k, v in hf_state.items():
                assert torch.equal(state[k], v), (path, k)  # the permutation round trip is exact
            entry["weights_equal_hf"] = True
        else:
            lg = logits_of(eager(cfg, state=state), INPUT_IDS)
            t[f"logits_{kind}"] = lg
            entry["max_abs_vs_fp32_logits"] = float((lg - t["logits"]).abs().max())
            entry["max_abs_weight_error"] = max(float((state[k] - v).abs().max()) for k, v in hf_state.items())
        if os.path.dirname(path) == folder:
            entry["file"] = os.path.basename(path)
            entry["gguf"] = gguf_summary(path)
        report[kind] = entry
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(folder, "expected.safetensors"))
    print(name, {k: {kk: vv for kk, vv in v.items() if kk != "gguf"} for k, v in report.items()})
    conf = {k: getattr(cfg, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                         "num_attention_heads", "num_key_value_heads", "rms_norm_eps",
                                         "tie_word_embeddings")}
    conf["rope_theta"] = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", BASE["rope_theta"])
    return {"config": conf,
            "seed": spec["seed"], "logits_fp32_vs_fp64_max_abs": fp64_gap, "max_abs_logit": float(t["logits"].abs().max()),
            "hf_folder": "hf/" if spec["store_hf"] else None, "files": report}


STORY_PROMPTS = [
    [1, 403, 407, 261, 378],  # "Once upon a time" (GOLDEN.md)
    [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426],
]


def stories(stories_dir, tmp):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(stories_dir)
    prompts = STORY_PROMPTS + [tok("Lily saw a big red ball.")["input_ids"],
                               tok("Tom went to the park with his dog and")["input_ids"]]
    path = os.path.join(OUT, "stories260K_f32.gguf")
    convert(stories_dir, "f32", path, "stories260K")
    cfg = LlamaConfig.from_pretrained(stories_dir)
    model = LlamaForCausalLM.from_pretrained(stories_dir, dtype=torch.float32, attn_implementation="eager").eval()
    exact = LlamaForCausalLM.from_pretrained(stories_dir, dtype=torch.float64, attn_implementation="eager").eval()
    state, _ = hf_state_from_gguf(path, cfg)
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v), k
    t = {}
    for i, p in enumerate(prompts):
        ids = torch.tensor([p])
        t[f"prompt{i}_ids"] = ids
        t[f"prompt{i}_logits"] = logits_of(model, ids)
        t[f"prompt{i}_logits_fp64"] = logits_of(exact, ids)
    with torch.no_grad():
        gen = model.generate(torch.tensor([[1]]), max_new_tokens=32, do_sample=False, eos_token_id=None)
    t["greedy_from_bos"] = gen[0, 1:]
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, "stories260K_expected.safetensors"))
    return {"file": "stories260K_f32.gguf", "expected": "stories260K_expected.safetensors",
            "prompts": [tok.decode(p) for p in prompts], "weights_equal_hf": True,
            "greedy_from_bos": gen[0, 1:].tolist(), "gguf": gguf_summary(path)}


def llamacpp_version():
    info = {"source": LLAMACPP_SRC, "sdist": "llama_cpp_python-0.3.36 (vendor/llama.cpp)"}
    try:
        info["commit"] = subprocess.run(["git", "-C", LLAMACPP_SRC, "rev-parse", "HEAD"], capture_output=True,
                                        text=True, check=True).stdout.strip()
    except Exception:
        pass
    info["gguf_py"] = gguf.__file__
    import glob
    libs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(LLAMACPP_BUILD, "bin", "lib*.so.*.*")))
    info["build"] = {"folder": LLAMACPP_BUILD, "libraries": libs,
                     "cmake": "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON (tools/llamacpp/build.sh)"}
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stories-dir", help="stories260K converted by `peft convert` (skipped when absent)")
    ap.add_argument("--only", nargs="*", help="model names to (re)build")
    ap.add_argument("--skip-quantize", action="store_true", help="no llama-quantize variants (for a dry run)")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    man_path = os.path.join(OUT, "manifest.json")
    manifest = json.load(open(man_path)) if os.path.exists(man_path) else {"models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in MODELS.items():
            if args.only and name not in args.only:
                continue
            if args.skip_quantize:
                spec = dict(spec, quantize=[])
            manifest["models"][name] = build(name, spec, tmp)
        if args.stories_dir:
            manifest["stories260K"] = stories(args.stories_dir, tmp)
        COMMANDS[:] = [c.replace(tmp, "$TMP") for c in COMMANDS]  # reproducible manifest
    manifest.update({
        "generator": "tools/reference/gen_gguf_models.py", "command": " ".join(sys.argv),
        "versions": dict(versions(), gguf_py=getattr(gguf, "__version__", "0.19.0 (vendored)")),
        "llama_cpp": llamacpp_version(),
        "tokenizer": "tests/fixtures/tokenizers/llama2c/tokenizer.json (stories260K tok512, vocab 512)",
        "input_ids": INPUT_IDS.tolist(),
        "expected_keys": "input_ids [2,12] int64; logits [2,12,512] fp32 = transformers (eager, fp32) on the HF "
                         "weights; logits_fp64 = the same in float64; logits_<kind> = transformers fp32 on the "
                         "gguf-py dequantisation of <name>_<kind>.gguf (Q/K unpermuted)",
        "tolerance": {"dequantised_logits_atol": 1e-5, "f32_logits_atol": 1e-5},
        "commands_last_run": COMMANDS,
    })
    with open(man_path, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
