"""Loads AdaLoRA adapters written by the C++ save_pretrained with Python PEFT and compares logits.

    /root/peft-venv/bin/python tools/reference/verify_adalora.py [CPP_OUT] [--atol 1e-5]

CPP_OUT (default build/tests/adalora) holds one folder per case of tests/fixtures/adalora, written by
test_torch's AdaLora tests: adapter_config.json + adapter_model.safetensors (our save_pretrained) and
cpp_logits.safetensors (what the C++ model computed with that adapter, eval mode). For each case the
script loads the case's base model in transformers, attaches the C++ folder with
PeftModel.from_pretrained and checks that
  - the tensor keys are exactly those PEFT saves for the loaded model,
  - every module's lora_A/lora_E/lora_B has the rank its rank_pattern keeps (rank 0 included) and
    PEFT restored ranknum to init_r,
  - PEFT's logits equal the C++ logits within atol.
Exit status 0 when every case passes.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from peft import PeftModel  # noqa: E402
from peft.utils import get_peft_model_state_dict  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from common import FIXTURES, ROOT  # noqa: E402


def verify(case, cpp_dir, atol):
    case_dir = os.path.join(FIXTURES, "adalora", case)
    with open(os.path.join(case_dir, "case.json")) as f:
        meta = json.load(f)
    base_dir = os.path.join(FIXTURES, meta["base"])
    with open(os.path.join(base_dir, "config.json")) as f:
        arch = json.load(f)["architectures"][0]
    model = getattr(transformers, arch).from_pretrained(base_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    pm = PeftModel.from_pretrained(model, cpp_dir).eval()
    ok = True
    with safe_open(os.path.join(cpp_dir, "adapter_model.safetensors"), "pt") as f:
        file_keys = set(f.keys())
    peft_keys = set(get_peft_model_state_dict(pm).keys())
    for k in sorted(peft_keys - file_keys):
        print("  missing in C++ file:", k)
        ok = False
    for k in sorted(file_keys - peft_keys):
        print("  unexpected in C++ file (PEFT ignores it):", k)
        ok = False
    cfg = pm.peft_config["default"]
    ranks = []
    for key, keep in (cfg.rank_pattern or {}).items():
        mod = pm.base_model.model.get_submodule(key.rsplit(".", 1)[0])
        k = sum(keep)
        shapes = (mod.lora_A["default"].shape[0], mod.lora_E["default"].shape[0], mod.lora_B["default"].shape[1])
        if shapes != (k, k, k) or (k > 0 and mod.ranknum["default"].item() != float(cfg.init_r)):
            print(f"  {key}: ranks {shapes}, ranknum {mod.ranknum['default'].item()} (expected {k}, init_r {cfg.init_r})")
            ok = False
        ranks.append(k)
    exp = load_file(os.path.join(case_dir, "expected.safetensors"))
    ids = exp["input_ids"] if "input_ids" in exp else exp["batch0.input_ids"]
    mask = exp["attention_mask"] if "attention_mask" in exp else exp["batch0.attention_mask"]
    with torch.no_grad():
        logits = pm(input_ids=ids.long(), attention_mask=mask.long()).logits
    cpp = load_file(os.path.join(cpp_dir, "cpp_logits.safetensors"))["logits"].float()
    d = (cpp - logits).abs().max().item() if cpp.shape == logits.shape else float("inf")
    ok = ok and d <= atol
    print(f"{case}: ranks {ranks}; max |logits_cpp - logits_peft(cpp adapter)| = {d:.3g} (atol {atol:g}) "
          f"{'OK' if ok else 'FAIL'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cpp_out", nargs="?", default=os.path.join(ROOT, "build", "tests", "adalora"))
    ap.add_argument("--atol", type=float, default=1e-5)
    args = ap.parse_args()
    cases = sorted(c for c in os.listdir(args.cpp_out) if os.path.exists(os.path.join(args.cpp_out, c, "cpp_logits.safetensors")))
    if not cases:
        print(f"no C++ adapters under {args.cpp_out}: run test_torch --gtest_filter='*AdaLora*' first")
        return 1
    results = [verify(c, os.path.join(args.cpp_out, c), args.atol) for c in cases]
    print("OK" if all(results) else "FAIL")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
