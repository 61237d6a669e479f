"""Loads the (IA)³ adapters written by the C++ save_pretrained with Python PEFT and compares logits.

    /root/peft-venv/bin/python tools/reference/verify_ia3.py [CPP_OUT] [--atol 1e-5]

CPP_OUT (default build/tests/ia3) holds one folder per case of tests/fixtures/ia3, written by
test_torch's Ia3Matrix test: adapter_config.json + adapter_model.safetensors (our save_pretrained;
other adapters in <name>/) and cpp_logits.safetensors (what the C++ model computed with adapter
"default" after loading that folder, eval mode). For each case the script loads the case's base model
in transformers, attaches the C++ folder with PeftModel.from_pretrained (so PEFT parses our
adapter_config.json: IA3Config.__post_init__ runs) and checks that
  - the config PEFT read equals the one of PEFT's own fixture (target / feedforward modules as sets),
  - the tensor keys and shapes are exactly those PEFT saves for the loaded model,
  - every module's vector has the kind (feedforward [1, in] / [out, 1]) PEFT gives it,
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
from peft import PeftConfig, PeftModel  # noqa: E402
from peft.tuners.ia3 import IA3Layer  # noqa: E402
from peft.utils import get_peft_model_state_dict  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from common import FIXTURES, ROOT  # noqa: E402

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "decoder_input_ids")
CONFIG_FIELDS = ("peft_type", "task_type", "target_modules", "feedforward_modules", "exclude_modules",
                 "fan_in_fan_out", "init_ia3_weights", "modules_to_save", "inference_mode")


def comparable(cfg):
    out = {}
    for k in CONFIG_FIELDS:
        v = getattr(cfg, k)
        out[k] = sorted(v) if isinstance(v, (set, list)) else str(v) if k in ("peft_type", "task_type") else v
    return out


def verify(case, cpp_dir, atol):
    case_dir = os.path.join(FIXTURES, "ia3", case)
    with open(os.path.join(case_dir, "case.json")) as f:
        meta = json.load(f)
    base_dir = os.path.join(FIXTURES, meta["base"])
    with open(os.path.join(base_dir, "config.json")) as f:
        arch = json.load(f)["architectures"][0]
    model = getattr(transformers, arch).from_pretrained(base_dir, dtype=torch.float32,
                                                        attn_implementation="sdpa").eval()
    pm = PeftModel.from_pretrained(model, cpp_dir).eval()
    problems = []
    names = ["default"] + sorted(d for d in os.listdir(cpp_dir)
                                 if os.path.exists(os.path.join(cpp_dir, d, "adapter_config.json")))
    for name in names:
        sub = "" if name == "default" else name
        if name != "default":
            pm.load_adapter(os.path.join(cpp_dir, sub), adapter_name=name)
        ours = comparable(PeftConfig.from_pretrained(os.path.join(cpp_dir, sub)))
        theirs = comparable(PeftConfig.from_pretrained(os.path.join(case_dir, sub)))
        if ours != theirs:
            problems.append(f"{name}: config {ours} != PEFT's {theirs}")
        with safe_open(os.path.join(cpp_dir, sub, "adapter_model.safetensors"), "pt") as f:
            file_shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        peft_shapes = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(pm, adapter_name=name).items()}
        if file_shapes != peft_shapes:
            problems.append(f"{name}: keys/shapes differ: only C++ {sorted(set(file_shapes) - set(peft_shapes))}, "
                            f"only PEFT {sorted(set(peft_shapes) - set(file_shapes))}, shapes "
                            f"{[k for k in file_shapes if k in peft_shapes and file_shapes[k] != peft_shapes[k]]}")
    ff = sorted(n for n, m in pm.base_model.model.named_modules() if isinstance(m, IA3Layer) and m.is_feedforward)
    if ff != meta["feedforward"]:
        problems.append(f"feedforward modules {ff} != {meta['feedforward']}")
    pm.set_adapter("default")
    exp = load_file(os.path.join(case_dir, "expected.safetensors"))
    inputs = {k: exp[k].long() for k in INPUT_KEYS if k in exp}
    with torch.no_grad():
        logits = pm(**inputs).logits
    cpp = load_file(os.path.join(cpp_dir, "cpp_logits.safetensors"))["logits"].to(torch.float32)
    d = (cpp - logits).abs().max().item()
    ref = (logits - exp["logits"]).abs().max().item()
    print(f"{case}: max |logits_cpp - logits_peft(cpp adapter)| = {d:.3g} (atol {atol:g}); "
          f"PEFT on the C++ adapter vs the fixture's logits: {ref:.3g}; adapters {names}")
    if d > atol:
        problems.append(f"logits differ by {d:.3g}")
    for p in problems:
        print("  FAIL:", p)
    return not problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cpp_out", nargs="?", default=os.path.join(ROOT, "build", "tests", "ia3"))
    ap.add_argument("--atol", type=float, default=1e-5)
    args = ap.parse_args()
    cases = sorted(d for d in os.listdir(args.cpp_out) if os.path.isdir(os.path.join(args.cpp_out, d)))
    if not cases:
        print(f"no C++ output in {args.cpp_out}: run `ctest -R Ia3Matrix` first")
        return 1
    ok = all([verify(c, os.path.join(args.cpp_out, c), args.atol) for c in cases])
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
