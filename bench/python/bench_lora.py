#!/usr/bin/env python3
"""Python PEFT on the workloads of bench/bench_lora.cpp: LoRA inference overhead on a random GPT-2-124M.

    /root/peft-venv/bin/python bench/python/bench_lora.py [--rounds 7] [--cpp build-bench/bench/bench_lora]

Workloads (eval, no_grad, fp32, torch's default thread count, default attention):
  [4, 128]: base forward; unmerged LoRA r=8 on c_attn and on all-linear (overhead vs base); merged
            (merge_adapter) c_attn and all-linear adapters (vs base).
  [8, 128]: one active adapter (r=8, c_attn) vs mixed-adapter batches whose adapter_names cycle over
            1, 4 and 8 distinct adapters (throughput relative to the single adapter).
Each round times every variant once, in turn; a figure is the median over the rounds and a ratio the
median of the per-round ratios. With --cpp the C++ benchmark runs afterwards (not concurrently) and
both sets of figures are printed side by side.
"""
import argparse
import os
import statistics
import subprocess
import time
import warnings

import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel


def lora(targets):
    return LoraConfig(r=8, lora_alpha=16, target_modules=targets, fan_in_fan_out=True, init_lora_weights=False,
                      inference_mode=True, task_type="CAUSAL_LM")


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def ratio(ms, a, b):
    return statistics.median(x / y for x, y in zip(ms[a], ms[b]))


@torch.no_grad()
def bench(rounds):
    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config())
    base.eval()

    def inputs(b):
        return dict(input_ids=torch.randint(50257, (b, 128)), attention_mask=torch.ones(b, 128, dtype=torch.long))

    in4, in8 = inputs(4), inputs(8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(base, lora(["c_attn"]), adapter_name="a0")
        for k in range(1, 8):
            pm.add_adapter(f"a{k}", lora(["c_attn"]))
        pm.add_adapter("all", lora("all-linear"))
    pm.eval()

    # ---- part 1: [4, 128] overhead
    def base_fwd():
        with pm.disable_adapter():
            pm(**in4)

    def lora_fwd(name):
        def f():
            pm.set_adapter(name)
            pm(**in4)
        return f

    def merged(name):
        pm.set_adapter(name)
        pm.merge_adapter()
        t = timed(lambda: pm(**in4))
        pm.unmerge_adapter()
        return t

    p1 = {"base": base_fwd, "lora_c_attn": lora_fwd("a0"), "lora_all_linear": lora_fwd("all")}
    ms = {k: [] for k in list(p1) + ["merged_c_attn", "merged_all_linear"]}
    for f in p1.values():
        f()  # warm-up
    merged("a0")
    merged("all")
    for _ in range(rounds):
        for k, f in p1.items():
            ms[k].append(timed(f))
        ms["merged_c_attn"].append(merged("a0"))
        ms["merged_all_linear"].append(merged("all"))
    print(f"loadavg after part 1: {os.getloadavg()}", flush=True)

    # ---- part 2: [8, 128] mixed-adapter batches (only c_attn adapters present)
    pm.delete_adapter("all")
    pm.set_adapter("a0")

    def names(k):
        return [f"a{i % k}" for i in range(8)]

    diff = (pm(**in8).logits - pm(**in8, adapter_names=names(1)).logits).abs().max().item()
    print(f"check: mixed(1 adapter) vs single max |diff| = {diff:.3g}")
    p2 = {"single_adapter": lambda: pm(**in8)}
    for k in (1, 4, 8):
        p2[f"mixed_{k}"] = (lambda v: lambda: pm(**in8, adapter_names=v))(names(k))
    for f in p2.values():
        f()  # warm-up
    ms2 = {k: [] for k in p2}
    for _ in range(rounds):
        for k, f in p2.items():
            ms2[k].append(timed(f))
    print(f"loadavg after part 2: {os.getloadavg()}", flush=True)

    # part 3: adapter load time (save a0, then load_adapter + delete_adapter per round)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        pm.save_pretrained(tmp, selected_adapters=["a0"])
        adir = os.path.join(tmp, "a0") if os.path.exists(os.path.join(tmp, "a0", "adapter_config.json")) else tmp
        load_ms = []
        for r in range(rounds + 1):  # the first load is a warm-up
            name = f"load{r}"
            t0 = time.perf_counter()
            pm.load_adapter(adir, adapter_name=name)
            t = (time.perf_counter() - t0) * 1e3
            pm.delete_adapter(name)
            if r > 0:
                load_ms.append(t)

    res = {"base_ms": statistics.median(ms["base"])}
    for k in ("lora_c_attn", "lora_all_linear", "merged_c_attn", "merged_all_linear"):
        res[f"{k}_ms"] = statistics.median(ms[k])
        res[f"{k}_vs_base"] = ratio(ms, k, "base")
    res["single_adapter_ms"] = statistics.median(ms2["single_adapter"])
    for k in (1, 4, 8):
        res[f"mixed_{k}_ms"] = statistics.median(ms2[f"mixed_{k}"])
        res[f"mixed_{k}_rel_throughput"] = 1.0 / ratio(ms2, f"mixed_{k}", "single_adapter")
    res["adapter_load_ms"] = statistics.median(load_ms)
    return res


def report(py, cpp):
    rows = [
        ("[4,128] base forward ms", "base_ms", "ms", ""),
        ("unmerged LoRA c_attn ms", "lora_c_attn_ms", "ms", ""),
        ("  overhead vs base", "lora_c_attn_vs_base", "pct", "<= 5%"),
        ("unmerged LoRA all-linear ms", "lora_all_linear_ms", "ms", ""),
        ("  overhead vs base", "lora_all_linear_vs_base", "pct", ""),
        ("merged c_attn ms", "merged_c_attn_ms", "ms", ""),
        ("  vs base", "merged_c_attn_vs_base", "pct", "~0%"),
        ("merged all-linear ms", "merged_all_linear_ms", "ms", ""),
        ("  vs base", "merged_all_linear_vs_base", "pct", "~0%"),
        ("[8,128] single adapter ms", "single_adapter_ms", "ms", ""),
    ]
    for k in (1, 4, 8):
        rows.append((f"mixed {k} adapter(s) ms", f"mixed_{k}_ms", "ms", ""))
        rows.append(("  throughput vs single", f"mixed_{k}_rel_throughput", "x", ">= 0.9x"))
    rows.append(("adapter load ms (c_attn r=8)", "adapter_load_ms", "ms", ""))

    def fmt(v, kind):
        if v is None:
            return "-"
        if kind == "ms":
            return f"{v:.1f}"
        if kind == "pct":
            return f"{(v - 1) * 100:+.2f}%"
        return f"{v:.3f}x"

    print(f"\n{'metric':<30} {'C++':>10} {'PEFT':>10} {'target':>8}")
    for label, key, kind, target in rows:
        print(f"{label:<30} {fmt(cpp.get(key), kind):>10} {fmt(py.get(key), kind):>10} {target:>8}")
    if cpp:
        print(f"{'[4,128] base C++/PEFT time':<30} {cpp['base_ms'] / py['base_ms']:>10.2f}")


def main():
    warnings.filterwarnings("ignore", message="Already unmerged")
    warnings.filterwarnings("ignore", message="Adapter all was active")
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--cpp", help="path of the bench_lora binary to compare with")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, rounds {args.rounds}, "
          f"loadavg {os.getloadavg()}", flush=True)
    py = bench(args.rounds)
    cpp = {}
    if args.cpp:
        proc = subprocess.run([args.cpp, str(args.rounds)], capture_output=True, text=True, check=True)
        print("\n--- C++ ---\n" + "\n".join(l for l in proc.stdout.splitlines() if not l.startswith("RESULT ")))
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                _, key, value = line.split()
                cpp[key] = float(value)
    report(py, cpp)


if __name__ == "__main__":
    main()
