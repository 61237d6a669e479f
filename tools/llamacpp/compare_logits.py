"""Runs llama.cpp (dump_logits) on a GGUF model (+ optional GGUF LoRA adapter) and compares its
logits with a logits file written by peft.cpp (or any safetensors file with the same keys).

    python tools/llamacpp/compare_logits.py -m MODEL.gguf [--lora ADAPTER.gguf --lora-scale S] \
        --logits OURS.safetensors [--key logits] [--ids-key input_ids | --tokens 1,403,407] [--atol 1e-4]

OURS.safetensors holds `logits` as [T, vocab] (or [B, T, vocab]) float32 and, unless --tokens is
given, the token ids under `input_ids` ([T] or [B, T]). Prints max |delta|, max |delta| / max |ours|,
the largest element-wise relative error (|delta| / max(|ours|, 1)) and how many positions have the
same argmax; exits 1 when --atol is given and exceeded. Developer tooling only.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))


def dump_logits_exe():
    exe = os.environ.get("DUMP_LOGITS")
    if exe:
        return exe
    cache = os.environ.get("PEFT_LLAMACPP_CACHE", os.path.expanduser("~/.cache/peft-llamacpp"))
    exe = os.path.join(cache, "bin", "dump_logits")
    if not os.path.exists(exe):  # build.sh compiles it (and reuses an existing llama.cpp build)
        subprocess.run(["bash", os.path.join(HERE, "build.sh")], check=True, stdout=subprocess.DEVNULL)
    return exe


def llamacpp_logits(model, ids, lora=None, lora_scale=1.0, threads=None):
    """ids: [B, T] int array; returns llama.cpp's float32 logits [B, T, vocab]."""
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = os.path.join(tmp, "ids.txt")
        with open(ids_file, "w") as f:
            for row in ids:
                f.write(",".join(str(int(x)) for x in row) + "\n")
        out = os.path.join(tmp, "logits.npy")
        cmd = [dump_logits_exe(), "-m", model, "--tokens-file", ids_file, "-o", out]
        if lora:
            cmd += ["--lora", lora, "--lora-scale", str(lora_scale)]
        if threads:
            cmd += ["-t", str(threads)]
        subprocess.run(cmd, check=True)
        a = np.load(out)
    return a.reshape(len(ids), -1, a.shape[-1])


def compare(ref, got):
    d = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    return {"max_abs": float(d.max()), "max_abs_over_scale": float(d.max() / max(np.abs(ref).max(), 1e-30)),
            "max_rel": float((d / np.maximum(np.abs(ref), 1.0)).max()),
            "argmax_agree": f"{int((ref.argmax(-1) == got.argmax(-1)).sum())}/{ref.shape[0] * ref.shape[1]}"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--lora")
    ap.add_argument("--lora-scale", type=float, default=1.0)
    ap.add_argument("--logits", required=True, help="safetensors file with our logits")
    ap.add_argument("--key", default="logits")
    ap.add_argument("--ids-key", default="input_ids")
    ap.add_argument("--tokens", help="comma-separated ids (instead of --ids-key)")
    ap.add_argument("--atol", type=float)
    ap.add_argument("-t", "--threads", type=int)
    ap.add_argument("--save", help="also write llama.cpp's logits to this .npy")
    args = ap.parse_args()

    t = load_file(args.logits)
    ours = t[args.key].astype(np.float32)
    ids = np.array([[int(x) for x in args.tokens.split(",")]]) if args.tokens else t[args.ids_key]
    ids = ids.reshape(-1, ids.shape[-1])
    ours = ours.reshape(ids.shape[0], ids.shape[1], -1)
    theirs = llamacpp_logits(args.model, ids, args.lora, args.lora_scale, args.threads)
    if args.save:
        np.save(args.save, theirs)
    if theirs.shape != ours.shape:
        sys.exit(f"shape mismatch: llama.cpp {theirs.shape} vs {args.logits}:{args.key} {ours.shape}")
    r = compare(ours, theirs)
    print(f"{os.path.basename(args.model)}{' + ' + os.path.basename(args.lora) if args.lora else ''} vs "
          f"{args.logits}:{args.key} {list(ours.shape)}: max|d|={r['max_abs']:.3g} "
          f"max|d|/max|ref|={r['max_abs_over_scale']:.3g} max rel={r['max_rel']:.3g} argmax {r['argmax_agree']}")
    if args.atol is not None and r["max_abs"] > args.atol:
        sys.exit(1)


if __name__ == "__main__":
    main()
