"""Loads the prompt-learning adapters the C++ tests saved with Python PEFT and compares logits.

    /root/peft-venv/bin/python tools/reference/verify_prompt.py [SAVED_DIR] [--atol 1e-5]

SAVED_DIR (default build/tests/prompt_saved) holds one folder per case of tests/fixtures/prompt,
written by PeftModel::save_pretrained in test_prompt_learning (PromptMatrix). For each, the script
loads the case's base model in transformers, attaches the C++ folder with PeftModel.from_pretrained,
runs the case inputs and compares the logits with the case's PEFT logits (the C++ adapter holds
the same encoder). It also checks that the tensor keys and shapes equal those PEFT saved itself.
Exit status 0 when every case is within atol and the key sets agree.
"""
import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from common import FIXTURES, ROOT  # noqa: E402
from gen_prompt import CASES, P, case_name, load_base  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("saved", nargs="?", default=os.path.join(ROOT, "build", "tests", "prompt_saved"))
    ap.add_argument("--atol", type=float, default=1e-5)
    args = ap.parse_args()
    bad = 0
    for base, method, _ in CASES:
        name = case_name(base, method)
        case = os.path.join(FIXTURES, "prompt", name)
        ours = os.path.join(args.saved, name)
        if not os.path.exists(os.path.join(ours, "adapter_config.json")):
            print(f"{name}: MISSING {ours}")
            bad += 1
            continue
        exp = load_file(os.path.join(case, "expected.safetensors"))
        inputs = {k[3:]: v for k, v in exp.items() if k.startswith("in.")}
        if name.split("_")[1] == "tokcls" and not method.startswith("prefix"):
            inputs["labels"] = torch.cat([torch.full((inputs["labels"].shape[0], P), -100), inputs["labels"]], 1)
        pm = PeftModel.from_pretrained(load_base(base), ours).eval()
        with torch.no_grad():
            logits = pm(**inputs).logits
        diff = (logits - exp["logits"]).abs().max().item()
        theirs = {k: tuple(v.shape) for k, v in load_file(os.path.join(case, "adapter", "adapter_model.safetensors")).items()}
        mine = {k: tuple(v.shape) for k, v in load_file(os.path.join(ours, "adapter_model.safetensors")).items()}
        ok = diff <= args.atol and theirs == mine
        bad += not ok
        extra = " + prompt_encoder.safetensors" if os.path.exists(os.path.join(ours, "prompt_encoder.safetensors")) else ""
        print(f"{name}: max |logits diff| {diff:.2e}, keys {'equal' if theirs == mine else f'DIFFER {mine} vs {theirs}'}"
              f"{extra} -> {'ok' if ok else 'FAIL'}")
    print(f"{len(CASES) - bad}/{len(CASES)} cases load in PEFT with matching logits")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
