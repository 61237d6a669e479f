"""tests/fixtures/gguf/llamacpp/<model>.safetensors: llama.cpp's own logits for the tiny GGUF
fixtures, the reference of peft.cpp's llamacpp_numerics mode (tests/models/test_gguf_llamacpp.cpp).

For each file, on the two token rows of its expected.safetensors (`input_ids` [2, 12]):
  logits_f32_cache       dump_logits defaults: F32 KV cache, flash attention off, the 12 tokens in
                         one llama_decode with every position an output (prompt processing kernels)
  logits_default         llama.cpp's context defaults (what llama-simple / llama-cli run with):
                         F16 KV cache, flash attention auto (on for the CPU), one decode
  logits_default_steps   the same defaults, one llama_decode per token (generation kernels)
Each row starts from a fresh KV cache. manifest.json also holds, per file, llama.cpp's greedy
continuation (dump_logits --greedy, 16 tokens) of one prompt with the defaults and with the F32
cache: generation keeps only the last position through the last layer's feed-forward and the output
(llama.cpp's inp_out_ids), so it runs other kernels than the logits above.
Q5_0 / Q5_1 / Q5_K files are made here with llama-quantize --pure (the tiny Llama's F32 file; the
K-quant Llama's Q6_K file requantised) and stored beside the logits.
Written with the llama.cpp build of tools/llamacpp/build.sh (x86-64, AVX2/FMA/F16C, no AVX-512);
the numbers are that build's, which the mode reproduces.

    python tools/llamacpp/gen_llamacpp_logits.py
"""
import json
import os
import re
import subprocess
import tempfile

import numpy as np
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MODELS = os.path.join(ROOT, "tests", "fixtures", "gguf", "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf", "llamacpp")

# (folder, file): every block type the mode reproduces, tied and untied outputs, GQA, llama3 rope.
FILES = [
    ("tiny_llama", "tiny_llama_q4_0"),
    ("tiny_llama", "tiny_llama_q4_1"),
    ("tiny_llama", "tiny_llama_q8_0"),
    ("tiny_llama", "tiny_llama_f16"),
    ("tiny_llama_tied", "tiny_llama_tied_q8_0"),
    ("tiny_llama_kq", "tiny_llama_kq_q4_k"),
    ("tiny_llama_kq", "tiny_llama_kq_q6_k"),
    ("tiny_llama_kq", "tiny_llama_kq_q4_k_m"),
    ("tiny_llama3_rope", "tiny_llama3_rope_q8_0"),
    ("tiny_llama", "tiny_llama_q5_0"),
    ("tiny_llama", "tiny_llama_q5_1"),
    ("tiny_llama_kq", "tiny_llama_kq_q5_k"),
]

# Files made here: name -> (source file, llama-quantize type, extra flags).
QUANTIZE = {
    "tiny_llama_q5_0": ("tiny_llama/tiny_llama_f32.gguf", "Q5_0", []),
    "tiny_llama_q5_1": ("tiny_llama/tiny_llama_f32.gguf", "Q5_1", []),
    "tiny_llama_kq_q5_k": ("tiny_llama_kq/tiny_llama_kq_q6_k.gguf", "Q5_K", ["--allow-requantize"]),
}

PROMPT = "Once upon a time, there was a little girl named Lily. She"
GREEDY = 16

CONFIGS = {
    "logits_f32_cache": ["--cache-type", "f32", "--flash-attn", "off"],
    "logits_default": ["--cache-type", "f16", "--flash-attn", "auto"],
    "logits_default_steps": ["--cache-type", "f16", "--flash-attn", "auto", "--stepwise"],
}


def build_env():
    line = subprocess.run(["bash", os.path.join(HERE, "build.sh"), "--env"], capture_output=True, text=True,
                          check=True).stdout.strip().splitlines()[-1]
    return dict(kv.split("=", 1) for kv in line.split("; "))


def main():
    env = build_env()
    os.makedirs(OUT, exist_ok=True)
    # The sdist's vendor tree is not a git checkout: fall back to the commit it was cut from.
    commit = subprocess.run(["git", "-C", env["LLAMACPP_SRC"], "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
    manifest = {"generator": "tools/llamacpp/gen_llamacpp_logits.py", "llama_cpp": commit,
                "build": "tools/llamacpp/build.sh: x86-64 -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON, no AVX-512",
                "configs": {k: " ".join(v) for k, v in CONFIGS.items()}, "files": {}}
    for name, (src, qtype, flags) in QUANTIZE.items():
        subprocess.run([os.path.join(env["LLAMACPP_BIN"], "llama-quantize"), "--pure"] + flags +
                       [os.path.join(MODELS, src), os.path.join(OUT, name + ".gguf"), qtype], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for folder, name in FILES:
        ids = load_file(os.path.join(MODELS, folder, "expected.safetensors"))["input_ids"].astype(np.int64)
        model = os.path.join(OUT if name in QUANTIZE else os.path.join(MODELS, folder), name + ".gguf")
        tensors = {"input_ids": ids}
        greedy = {"prompt": PROMPT}
        for key, flags in (("defaults", CONFIGS["logits_default"]), ("f32_cache", CONFIGS["logits_f32_cache"])):
            r = json.loads(subprocess.run([env["DUMP_LOGITS"], "-m", model, "--prompt", PROMPT, "--greedy",
                                           str(GREEDY), "-t", "2"] + flags, capture_output=True,
                                          check=True).stdout.decode("utf-8", "replace"))
            greedy["prompt_ids"] = r["prompt_ids"]
            greedy[key] = {"generated_ids": r["generated_ids"], "stopped_at_eog": r["stopped_at_eog"]}
        with tempfile.TemporaryDirectory() as tmp:
            for key, flags in CONFIGS.items():
                rows = []
                for r, row in enumerate(ids):
                    out = os.path.join(tmp, f"{key}_{r}.npy")
                    subprocess.run([env["DUMP_LOGITS"], "-m", model, "--tokens", ",".join(str(int(x)) for x in row),
                                    "-o", out, "-t", "2"] + flags, check=True, stderr=subprocess.DEVNULL)
                    rows.append(np.load(out))
                tensors[key] = np.stack(rows).astype(np.float32)
        path = os.path.join(OUT, name + ".safetensors")
        save_file(tensors, path)
        manifest["files"][name] = {"model": os.path.relpath(model, ROOT),
                                   "tensors": {k: list(v.shape) for k, v in tensors.items()}, "greedy": greedy}
        print(f"{name}: wrote {os.path.relpath(path, ROOT)}")
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        text = json.dumps(manifest, indent=1)
        text = re.sub(r"\[\s*([-0-9.,\s]+?)\s*\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
                      text)  # number lists on one line each
        f.write(text)
        f.write("\n")


if __name__ == "__main__":
    main()
