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


def decoder_causal_case(model, ids, mask, hidden, kv_heads, head_dim, n_layers, P=3):
    """The shared decoder-only causal-LM case: logits, last hidden state, loss and gradients;
    an inputs_embeds forward; a key/value prefix of P positions (the real tokens take positions
    P.. as transformers gives them when a cache of length P is passed); greedy generation of 8
    tokens from the left-padded batch with no EOS stop."""
    from transformers import DynamicCache

    labels = ids.masked_fill(mask == 0, -100)
    t = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    out = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    t["logits"] = out.logits
    t["last_hidden_state"] = out.hidden_states[-1]
    t["loss"] = out.loss.reshape(1)
    out.loss.backward()
    t.update(grads_of(model))
    model.zero_grad()
    B, T = ids.shape
    with torch.no_grad():
        emb = pattern((B, T, hidden), 0.8)
        t["inputs_embeds"] = emb
        t["logits_embeds"] = model(inputs_embeds=emb, attention_mask=mask).logits
        cache = DynamicCache()
        for i in range(n_layers):
            k = pattern((B, kv_heads, P, head_dim), 0.5, phase=i)
            v = pattern((B, kv_heads, P, head_dim), 0.5, phase=10 + i)
            cache.update(k, v, i)
            t[f"prefix_key.{i}"] = k
            t[f"prefix_value.{i}"] = v
        pmask = torch.cat([torch.ones(B, P, dtype=mask.dtype), mask], 1)
        pos = torch.arange(P, P + T).unsqueeze(0).expand(B, -1)
        t["prefix_position_ids"] = pos
        t["logits_prefix"] = model(input_ids=ids, attention_mask=pmask, past_key_values=cache, position_ids=pos).logits
        t["generated"] = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False,
                                        eos_token_id=None, pad_token_id=0)
    return t
