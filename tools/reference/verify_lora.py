"""Loads an adapter folder written by the C++ save_pretrained with Python PEFT and compares logits.

    /root/peft-venv/bin/python tools/reference/verify_lora.py tests/fixtures/lora/<case> CPP_DIR \
        [--adapter NAME] [--stories-dir /tmp/s260_lora] [--atol 1e-5]

CASE_DIR is a folder written by gen_lora.py (case.json gives the base model, expected.safetensors the
inputs). CPP_DIR holds adapter_config.json + adapter_model.safetensors written by C++ and
cpp_logits.safetensors (key "logits": what the C++ model computed with that adapter active on the
case inputs, eval mode). The script loads the base model in transformers, attaches CPP_DIR with
PeftModel.from_pretrained, runs the case inputs and prints max |Δ| against the C++ logits (and,
for information, against the Python reference logits of the case). It also checks that the key set
of the C++ file is exactly the one PEFT itself would save for the loaded model (an unexpected key is
silently ignored by PEFT, so a wrong module path would otherwise go unnoticed).
Exit status 0 when max |Δ| (C++ vs Python on the C++ adapter) <= atol and the key sets agree.
"""
import argparse
import hashlib
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

from common import FIXTURES  # noqa: E402

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "decoder_input_ids")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case_dir")
    ap.add_argument("cpp_dir")
    ap.add_argument("--adapter", default=None, help="sub-folder of CPP_DIR holding a non-default adapter")
    ap.add_argument("--stories-dir", default=os.environ.get("STORIES260K_DIR", "/tmp/s260_lora"),
                    help="`peft convert` output for cases whose base is 'stories260k'")
    ap.add_argument("--atol", type=float, default=None, help="default: case.json atol")
    ap.add_argument("--logits-key", default="logits", help="key in cpp_logits.safetensors")
    args = ap.parse_args()

    with open(os.path.join(args.case_dir, "case.json")) as f:
        case = json.load(f)
    if case.get("expect_error"):
        print(f"case expects an error ({case['expect_error']}); nothing to verify")
        return 0
    base = case["base"]
    base_dir = args.stories_dir if base == "stories260k" else os.path.join(FIXTURES, base)
    if case.get("base_sha256"):
        with open(os.path.join(base_dir, "model.safetensors"), "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != case["base_sha256"]:
                print(f"WARNING: {base_dir}/model.safetensors is not the base this case was generated on "
                      "(base_sha256 differs): regenerate with gen_lora.py")
    with open(os.path.join(base_dir, "config.json")) as f:
        config = json.load(f)
    # As gen_lora.py: SDPA, but eager for Gemma 2 (SDPA refuses its attention soft-capping).
    attn = "eager" if config.get("model_type") == "gemma2" else "sdpa"
    model = getattr(transformers, config["architectures"][0]).from_pretrained(base_dir, dtype=torch.float32,
                                                                            attn_implementation=attn).eval()
    adapter_dir = os.path.join(args.cpp_dir, args.adapter) if args.adapter else args.cpp_dir
    pm = PeftModel.from_pretrained(model, adapter_dir).eval()

    with safe_open(os.path.join(adapter_dir, "adapter_model.safetensors"), "pt") as f:
        file_keys = set(f.keys())
    peft_keys = set(get_peft_model_state_dict(pm).keys())
    missing, unexpected = sorted(peft_keys - file_keys), sorted(file_keys - peft_keys)
    for k in missing:
        print("missing in C++ file:", k)
    for k in unexpected:
        print("unexpected in C++ file (PEFT ignores it):", k)

    exp = load_file(os.path.join(args.case_dir, "expected.safetensors"))
    inputs = {k: exp[k].long() for k in INPUT_KEYS if k in exp}
    with torch.no_grad():
        logits = pm(**inputs).logits
    cpp = load_file(os.path.join(args.cpp_dir, "cpp_logits.safetensors"))[args.logits_key].to(torch.float32)
    if cpp.shape != logits.shape:
        print(f"shape mismatch: C++ {tuple(cpp.shape)} vs Python {tuple(logits.shape)}")
        return 1
    atol = args.atol if args.atol is not None else case.get("atol", 1e-5)
    d = (cpp - logits).abs().max().item()
    print(f"{os.path.basename(os.path.normpath(args.case_dir))}: max |logits_cpp - logits_peft(cpp adapter)| = {d:.3g}"
          f" (atol {atol:g})")
    if "logits" in exp and exp["logits"].shape == logits.shape and not args.adapter:
        print(f"  info: max |logits_peft(cpp adapter) - case reference logits| = "
              f"{(logits - exp['logits']).abs().max().item():.3g}")
    ok = d <= atol and not missing and not unexpected
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
