"""Writes tests/fixtures/safetensors/: one file per dtype written by Python `safetensors`, one
file with every dtype and __metadata__, and expected.json holding each tensor's raw element bit
patterns, so the C++ reader can be checked bit for bit.

    /root/peft-venv/bin/python tools/reference/gen_safetensors.py
"""
import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

from common import FIXTURES, write_manifest

OUT = os.path.join(FIXTURES, "safetensors")

SPECIALS = [0.0, -0.0, 1.0, -2.5, float("inf"), float("-inf"), float("nan"), 1e-40, 65504.0, 3.14159]


def pattern(dtype, shape):
    """Deterministic values (no RNG) covering signs, specials and the dtype's range."""
    n = int(np.prod(shape)) if shape else 1
    if dtype.is_floating_point:
        base = torch.tensor([SPECIALS[i % len(SPECIALS)] if i < len(SPECIALS) else (i * 0.37 - 5.0) * (1.7 ** (i % 7))
                             for i in range(n)], dtype=torch.float64)
        return base.to(dtype).reshape(shape)
    if dtype == torch.bool:
        return torch.tensor([(i * 7) % 3 == 0 for i in range(n)], dtype=torch.bool).reshape(shape)
    info = torch.iinfo(dtype)
    vals = [info.min, info.max, 0, 1] + [((i * 2654435761) % (info.max - info.min + 1)) + info.min for i in range(4, n)]
    return torch.tensor(vals[:n], dtype=dtype).reshape(shape)


DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def bit_patterns(t):
    t = t.contiguous().reshape(-1)
    raw = t.numpy().astype(np.uint8).tobytes() if t.dtype == torch.bool else t.view(torch.uint8).numpy().tobytes()
    return [int(x) for x in np.frombuffer(raw, dtype=BITS[t.element_size()])]


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}
    everything = {}
    for name, dt in DTYPES.items():
        shapes = {"matrix": [3, 5], "cube": [2, 3, 4], "scalar": [], "empty": [0, 4]}
        tensors = {f"{k}": pattern(dt, s) for k, s in shapes.items()}
        save_file(tensors, os.path.join(OUT, f"dtype_{name}.safetensors"))
        expected[f"dtype_{name}.safetensors"] = {
            k: {"dtype": name, "shape": list(v.shape), "bits": bit_patterns(v)} for k, v in tensors.items()}
        for k, v in tensors.items():
            everything[f"{name.lower()}.{k}"] = v
    save_file(everything, os.path.join(OUT, "all_dtypes.safetensors"), metadata={"format": "pt", "note": "all dtypes"})
    expected["all_dtypes.safetensors"] = {
        k: {"dtype": k.split(".")[0].upper(), "shape": list(v.shape), "bits": bit_patterns(v)}
        for k, v in everything.items()}
    expected["all_dtypes.safetensors"]["__metadata__"] = {"format": "pt", "note": "all dtypes"}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, sort_keys=True)
    write_manifest(OUT, seeds=None, tolerance="bit-exact")
    print(f"wrote {len(expected)} files to {OUT}")


if __name__ == "__main__":
    main()
