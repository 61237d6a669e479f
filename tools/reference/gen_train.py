"""Training-trajectory fixtures: Python PEFT + a plain torch AdamW loop, 10 steps, the loop the C++
Trainer implements (sequential batches, linear schedule with 2 warm-up steps, grad-norm clipping,
AdamW with weight decay on LoRA matrices). Writes tests/fixtures/train/trajectory/: the initial
adapter (init/), the batches, the loss at every step and the final LoRA weights; and
tests/fixtures/train/trajectory_full/: the same loop fine-tuning every parameter of the base (the
`method: full` baseline), weight decay on the parameters transformers' Trainer decays
(Trainer.get_decay_parameter_names: no biases, no norm weights), the final weights of all of them.

    /root/peft-venv/bin/python tools/reference/gen_train.py
"""
import json
import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from common import FIXTURES, write_manifest

OUT = os.path.join(FIXTURES, "train", "trajectory")
BASE = os.path.join(FIXTURES, "models", "llama_causal")
STEPS, LR, WARMUP, BS, CLIP, WD = 10, 1e-2, 2, 2, 1.0, 0.01


def sequences():
    # 8 sequences of lengths 5..12 with deterministic ids (vocab 64, avoiding pad 0).
    return [[1 + (7 * i + 3 * j) % 63 for j in range(5 + i)] for i in range(8)]


def collate(seqs):
    L = max(map(len, seqs))
    ids = torch.tensor([s + [0] * (L - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s in seqs])
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


def lr_lambda(step):
    if step < WARMUP:
        return step / max(1, WARMUP)
    return max(0.0, (STEPS - step) / max(1, STEPS - WARMUP))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32).eval()  # dropout off
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                     init_lora_weights="gaussian", task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg)
    pm.save_pretrained(os.path.join(OUT, "init"))
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WD)
    seqs = sequences()
    batches = [seqs[i:i + BS] for i in range(0, len(seqs), BS)]
    t, losses = {}, []
    for step in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = LR * lr_lambda(step)
        ids, mask, labels = collate(batches[step % len(batches)])
        loss = pm(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    for n, p in pm.named_parameters():
        if p.requires_grad:
            t["final." + n.removeprefix("base_model.model.")] = p.detach().clone()
    t["losses"] = torch.tensor(losses, dtype=torch.float64)
    save_file(t, os.path.join(OUT, "expected.safetensors"))
    with open(os.path.join(OUT, "case.json"), "w") as f:
        json.dump({"steps": STEPS, "learning_rate": LR, "warmup_steps": WARMUP, "batch_size": BS,
                   "max_grad_norm": CLIP, "weight_decay": WD, "lr_scheduler_type": "linear",
                   "sequences": seqs, "atol": 1e-5,
                   "notes": "eval mode (no dropout); batches taken in order, right-padded with 0"}, f, indent=2)
    write_manifest(OUT, seeds={"torch.manual_seed": 7}, tolerance=1e-5)
    print("losses", [round(x, 6) for x in losses])


def full():
    """Full fine-tuning: every parameter trained, decay groups as transformers' Trainer makes them."""
    from transformers import Trainer, TrainingArguments

    out = os.path.join(FIXTURES, "train", "trajectory_full")
    os.makedirs(out, exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32).eval()
    decay_names = set(Trainer.get_decay_parameter_names(None, model))
    decay = [p for n, p in model.named_parameters() if n in decay_names]
    no_decay = [p for n, p in model.named_parameters() if n not in decay_names]
    lr = 1e-3
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.999), eps=1e-8)
    params = decay + no_decay
    seqs = sequences()
    batches = [seqs[i:i + BS] for i in range(0, len(seqs), BS)]
    losses = []
    for step in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = lr * lr_lambda(step)
        ids, mask, labels = collate(batches[step % len(batches)])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    t = {"final." + n: p.detach().clone() for n, p in model.named_parameters()}
    t["losses"] = torch.tensor(losses, dtype=torch.float64)
    save_file(t, os.path.join(out, "expected.safetensors"))
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump({"steps": STEPS, "learning_rate": lr, "warmup_steps": WARMUP, "batch_size": BS,
                   "max_grad_norm": CLIP, "weight_decay": WD, "lr_scheduler_type": "linear",
                   "sequences": seqs, "atol": 1e-5, "decayed": sorted(decay_names),
                   "notes": "full fine-tuning of models/llama_causal; eval mode (no dropout); batches in order, "
                            "right-padded with 0; decay groups from transformers' Trainer.get_decay_parameter_names"},
                  f, indent=2)
    write_manifest(out, seeds={}, tolerance=1e-5)
    print("full losses", [round(x, 6) for x in losses])


if __name__ == "__main__":
    main()
    full()
