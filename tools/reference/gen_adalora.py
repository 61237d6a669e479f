"""AdaLoRA fixtures under tests/fixtures/adalora/<case>/, written by Hugging Face PEFT.

    /root/peft-venv/bin/python tools/reference/gen_adalora.py

Cases
  llama_train30/  30 training steps of PEFT's AdaLoRA on the tiny Llama fixture (models/llama_causal),
                  a plain torch.optim.SGD loop calling PEFT's own update_and_allocate after every
                  optimizer step (loss.backward(); opt.step(); update_and_allocate(step); zero_grad()),
                  steps numbered 1..30. Holds
                    init/                    the adapter before training (save_pretrained, full rank)
                    adapter_config.json, adapter_model.safetensors   the adapter after training, as
                                             PEFT saves it (rank_pattern, tensors shrunk)
                    expected.safetensors     batches (batch<i>.input_ids/labels), per-step triplet scores
                                             (score.<step>.<module>, recomputed from the allocator's EMAs
                                             with mask_to_budget's formula), the trained full-rank tensors
                                             (final.<module>.lora_A/E/B), logits after training and logits
                                             of the saved adapter re-loaded by PeftModel.from_pretrained
                    case.json                per step: loss (task loss + orth reg), budget, masked, rank_pattern
  llama_rank0/    the trained adapter of llama_train30 with one module's pattern set all-False (rank 0:
                  zero-sized tensors) before save_pretrained; logits of PEFT's reload
  gpt2_pruned/    6 steps on the GPT-2 fixture (Conv1D c_attn, fan_in_fan_out), saved and re-loaded

Every case runs in train mode with dropout 0 (the fixtures' models have no active dropout), float32.
"""
import json
import os
import shutil
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"  # target_modules is saved from a set
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from peft import AdaLoraConfig, PeftModel, get_peft_model  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from common import FIXTURES, write_manifest  # noqa: E402

OUT = os.path.join(FIXTURES, "adalora")


def load_base(rel):
    d = os.path.join(FIXTURES, rel)
    with open(os.path.join(d, "config.json")) as f:
        arch = json.load(f)["architectures"][0]
    return getattr(transformers, arch).from_pretrained(d, dtype=torch.float32, attn_implementation="sdpa")


def batches(vocab, n=3, rows=2, cols=8, seed=7):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(3, vocab, (rows, cols), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()})
    return out


def triplet_scores(alloc, model, adapter="default"):
    """mask_to_budget's per-triplet score, from the allocator's current EMAs."""
    out = {}
    for n, _ in model.named_parameters():
        if f"lora_E.{adapter}" not in n or n not in alloc.exp_avg_ipt:
            continue
        nA, nB = n.replace("lora_E", "lora_A"), n.replace("lora_E", "lora_B")
        sA = alloc._element_score(nA).mean(dim=1, keepdim=True)
        sB = alloc._element_score(nB).mean(dim=0, keepdim=False).view(-1, 1)
        ab = torch.cat([sA, sB], dim=1).sum(dim=1)
        out[module_of(n)] = (alloc._element_score(n).view(-1) + ab.view(-1)).detach().clone()
    return out


def module_of(param_name):
    # "base_model.model.model.layers.0.self_attn.q_proj.lora_E.default" -> "model.layers.0.self_attn.q_proj"
    n = param_name
    for p in ("base_model.model.",):
        if n.startswith(p):
            n = n[len(p):]
    return n.rsplit(".", 2)[0]


def stripped_pattern(rp):
    return {k.replace(".default", ""): [bool(b) for b in v] for k, v in rp.items()}


def write_case(name, tensors, meta):
    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, os.path.join(out, "expected.safetensors"))
    case = {"atol": 1e-5}
    case.update(meta)
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump(case, f, indent=1, sort_keys=True)
        f.write("\n")
    write_manifest(out, seeds="torch.manual_seed(0) before get_peft_model; batches from torch.Generator(seed 7)")
    print("wrote", out)


def reload_logits(base_rel, folder, inputs):
    m = load_base(base_rel).eval()
    pm = PeftModel.from_pretrained(m, folder).eval()
    with torch.no_grad():
        return pm(**inputs).logits


def train(base_rel, cfg_kwargs, steps, lr, name, vocab, seed=0):
    out = os.path.join(OUT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    base = load_base(base_rel)
    torch.manual_seed(seed)
    cfg = AdaLoraConfig(task_type="CAUSAL_LM", **cfg_kwargs)
    pm = get_peft_model(base, cfg)
    pm.train()
    counts = list(pm.get_nb_trainable_parameters())
    pm.save_pretrained(os.path.join(out, "init"))
    # save_pretrained writes a README model card; keep the folders small and plain.
    data = batches(vocab)
    opt = torch.optim.SGD([p for p in pm.parameters() if p.requires_grad], lr=lr)
    tensors, per_step = {}, []
    for i, b in enumerate(data):
        for k, v in b.items():
            tensors[f"batch{i}.{k}"] = v
    alloc = pm.base_model.rankallocator
    for step in range(1, steps + 1):
        b = data[(step - 1) % len(data)]
        loss = pm(**b).loss
        loss.backward()
        opt.step()
        budget, mask_ind = alloc.budget_schedule(step)
        before = pm.peft_config["default"].rank_pattern
        before = None if before is None else {k: list(v) for k, v in before.items()}
        pm.base_model.update_and_allocate(step)
        rp = pm.peft_config["default"].rank_pattern
        masked = step == cfg.total_step - cfg.tfinal or (step < cfg.total_step - cfg.tfinal and mask_ind)
        for mod, s in triplet_scores(alloc, pm.base_model.model).items():
            tensors[f"score.{step}.{mod}"] = s
        per_step.append({"step": step, "loss": loss.item(), "budget": int(budget) if step <= cfg.total_step - cfg.tfinal
                         else alloc.target_bgt, "masked": bool(masked),
                         "rank_pattern": stripped_pattern(rp) if rp is not None else None})
        opt.zero_grad()
    for n, p in pm.named_parameters():
        if ".lora_" in n and ".default" in n:
            mod = module_of(n)
            part = n.rsplit(".", 2)[1]
            tensors[f"final.{mod}.{part}"] = p.detach().clone()
    pm.eval()
    inputs = {k: data[0][k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        tensors["logits"] = pm(**inputs).logits
    tensors["nb_trainable_parameters"] = torch.tensor(counts, dtype=torch.int64)
    return pm, tensors, per_step, inputs, cfg


def strip_readme(folder):
    p = os.path.join(folder, "README.md")
    if os.path.exists(p):
        os.remove(p)


def main():
    os.makedirs(OUT, exist_ok=True)
    # -- llama_train30
    kw = dict(init_r=6, target_r=2, tinit=4, tfinal=8, deltaT=2, total_step=30, lora_alpha=8, beta1=0.85,
              beta2=0.85, orth_reg_weight=0.5, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    pm, t, steps, inputs, cfg = train("models/llama_causal", kw, 30, 0.5, "llama_train30", vocab=64)
    out = os.path.join(OUT, "llama_train30")
    pm.save_pretrained(out)
    strip_readme(out)
    strip_readme(os.path.join(out, "init"))
    t["logits_reloaded"] = reload_logits("models/llama_causal", out, inputs)
    write_case("llama_train30", t, {"base": "models/llama_causal", "optimizer": "torch.optim.SGD(lr=0.5)",
                                    "steps": steps, "config": {k: v for k, v in kw.items()},
                                    "init_bgt": pm.base_model.rankallocator.init_bgt,
                                    "target_bgt": pm.base_model.rankallocator.target_bgt})
    # -- llama_rank0: one module pruned to rank 0 by hand before saving.
    rp = dict(pm.peft_config["default"].rank_pattern)
    victim = sorted(rp.keys())[0]
    rp[victim] = [False] * len(rp[victim])
    pm.peft_config["default"].rank_pattern = rp
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_E.default" in n and module_of(n) + ".lora_E" == victim:
                p.zero_()
    out0 = os.path.join(OUT, "llama_rank0")
    shutil.rmtree(out0, ignore_errors=True)
    pm.save_pretrained(out0)
    strip_readme(out0)
    t0 = {"input_ids": inputs["input_ids"].clone(), "attention_mask": inputs["attention_mask"].clone(),
          "logits": reload_logits("models/llama_causal", out0, inputs)}
    write_case("llama_rank0", t0, {"base": "models/llama_causal", "rank0_module": victim.split(".lora_E")[0],
                                   "rank_pattern": stripped_pattern(rp)})
    # -- gpt2_pruned: Conv1D targets (default c_attn), a short schedule.
    kw2 = dict(init_r=4, target_r=2, tinit=1, tfinal=2, deltaT=1, total_step=6, lora_alpha=16)
    pm2, t2, steps2, inputs2, _ = train("models/gpt2_causal", kw2, 6, 0.5, "gpt2_pruned", vocab=64)
    out2 = os.path.join(OUT, "gpt2_pruned")
    shutil.rmtree(os.path.join(out2, "init"), ignore_errors=True)
    pm2.save_pretrained(out2)
    strip_readme(out2)
    t2["logits_reloaded"] = reload_logits("models/gpt2_causal", out2, inputs2)
    t2 = {k: v for k, v in t2.items() if not k.startswith("score.")}
    t2["input_ids"], t2["attention_mask"] = inputs2["input_ids"].clone(), inputs2["attention_mask"].clone()
    write_case("gpt2_pruned", t2, {"base": "models/gpt2_causal", "steps": steps2, "config": kw2})


if __name__ == "__main__":
    main()
