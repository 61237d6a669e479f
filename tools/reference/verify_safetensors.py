"""Reads a safetensors file written by the C++ writer (the test_core case
SafetensorsPython.WriteEveryDtypeForPython writes it) with Python `safetensors` and checks
every tensor's dtype, shape and bits against tests/fixtures/safetensors/expected.json.

    /root/peft-venv/bin/python tools/reference/verify_safetensors.py build/tests/cpp_all_dtypes.safetensors
"""
import json
import os
import sys

from safetensors import safe_open

from common import FIXTURES
from gen_safetensors import bit_patterns


def main(path):
    expected = json.load(open(os.path.join(FIXTURES, "safetensors", "expected.json")))["all_dtypes.safetensors"]
    meta_expected = expected.pop("__metadata__")
    bad = 0
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        keys = sorted(f.keys())
        if keys != sorted(expected):
            print("key mismatch:", sorted(set(keys) ^ set(expected)))
            bad += 1
        for k in keys:
            t = f.get_tensor(k)
            e = expected.get(k)
            if e is None:
                continue
            if list(t.shape) != e["shape"] or bit_patterns(t) != e["bits"]:
                print(f"MISMATCH {k}: shape {list(t.shape)} vs {e['shape']}")
                bad += 1
    if meta != meta_expected:
        print("metadata mismatch:", meta, meta_expected)
        bad += 1
    print(f"{path}: {len(keys)} tensors read by safetensors {__import__('safetensors').__version__}, "
          f"{len(keys) - bad} identical, {bad} mismatches; metadata {meta}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
