"""Shared harness for model fixtures: each case folder under tests/fixtures/models/<case>/ holds
config.json + model.safetensors (save_pretrained of a tiny random-weight model) and
expected.safetensors (inputs and expected outputs, float32/int64), plus case.json (tolerances).
Weights are stored in the fixture, so C++ never replays Python's RNG.
"""
import json
import math
import os

import torch
from safetensors.torch import save_file

from common import FIXTURES, write_manifest

MODELS = os.path.join(FIXTURES, "models")


def pattern(shape, scale=1.0, phase=0.0, dtype=torch.float32):
    """Deterministic values without RNG (torchtune's fixed_init idea): a scaled sine of arange."""
    n = math.prod(shape)
    return (torch.sin(torch.arange(n, dtype=torch.float64) * 0.731 + phase) * scale).reshape(shape).to(dtype)


def save_case(name, model, tensors, meta=None):
    """Saves the model with save_pretrained, the tensors dict (inputs + expected outputs) and
    case.json (tolerances and notes)."""
    out = os.path.join(MODELS, name)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    for extra in ("generation_config.json",):
        p = os.path.join(out, extra)
        if os.path.exists(p):
            os.remove(p)
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items() if v is not None}
    save_file(clean, os.path.join(out, "expected.safetensors"))
    case = {"atol": 1e-5, "rtol": 1e-4, "grad_rtol": 1e-5}
    case.update(meta or {})
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump(case, f, indent=2, sort_keys=True)
        f.write("\n")
    write_manifest(out, seeds="torch.manual_seed per case (weights stored in model.safetensors)")
    print(f"wrote {out} ({sum(v.numel() for v in clean.values())} expected values)")


def grads_of(model, prefix="grad."):
    return {prefix + n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
