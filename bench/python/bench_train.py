#!/usr/bin/env python3
"""Training throughput of every PEFT method, peft.cpp against Python PEFT, side by side.

    /root/peft-venv/bin/python bench/python/bench_train.py --stories <stories260K-hf folder> \
        --cpp build/bench/bench_train [--models stories,gpt2] [--methods lora,adalora,...] \
        [--rounds 2] [--steps 10] [--warmup 2] [--batch 4] [--seq 128]

For each model (the bundled stories260K after `peft convert`, and a GPT-2-124M-shaped model with
random weights written once to --work) and each method, the adapter config is made with Python
PEFT (`PeftConfig.save_pretrained`), and in every round two fresh processes train on it in turn:
`bench_train` (peft.cpp's Trainer) and this script in --worker mode (a plain PyTorch loop: forward,
backward, clip_grad_norm_, AdamW, linear schedule; AdaLoRA's update_and_allocate after backward).
Same model files, data (deterministic ids, labels = inputs), batch, sequence length, learning rate
and optimiser. Threads: by default torch.set_num_threads(all cores) in Python and peft.cpp's default runtime
(one pool: LibTorch's threads over all cores; on OpenBLAS builds OpenBLAS held to one thread and the
large products split by rows across LibTorch's pool). --threads N gives both sides N threads
in every pool (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS and the frameworks' own
setting): the like-for-like comparison on a shared machine.

--cpp LABEL=PATH,LABEL=PATH,... compares several peft.cpp builds (say, on Debian's LibTorch 1.13 and on
PyPI's LibTorch 2.x) with PEFT in the same interleaved rounds.

Printed per run: tokens/s (timed steps after the warm-up), tokens per CPU-second (the process's CPU
time, every thread, over the same steps: the figure a loaded machine does not bias), step time median
and p90, peak RSS of the
process (VmHWM, model load included) and MFU = achieved FLOP/s / the fp32 GEMM peak measured by
`bench_train --gemm-peak`. FLOPs per step = 2 x forward FLOPs (forward + input gradients; frozen
weights get no weight gradient) + 2 x tokens x trainable parameters, forward FLOPs =
2 x tokens x linear-layer parameters + 4 x batch x seq x (seq + virtual tokens) x hidden x layers.
Medians over rounds; ratio = peft.cpp / Python (> 1: peft.cpp faster, or for RSS: larger).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

METHODS = ["lora", "adalora", "qlora", "prefix_tuning", "p_tuning", "prompt_tuning", "p_tuning_v2"]
VIRTUAL_TOKENS = 20


def targets(model_type, all_linear=False):
    if model_type == "gpt2":
        return ["c_attn", "c_proj", "c_fc"] if all_linear else ["c_attn"]
    return (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
            if all_linear else ["q_proj", "v_proj"])


def make_config(method, model_type, total_steps):
    """The PEFT config of a method with the benchmark's settings; None if PEFT cannot build it."""
    from peft import (AdaLoraConfig, LoraConfig, PrefixTuningConfig, PromptEncoderConfig,
                      PromptTuningConfig, TaskType)
    fan = model_type == "gpt2"
    if method == "lora":
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, lora_dropout=0.0,
                          target_modules=targets(model_type), fan_in_fan_out=fan)
    if method == "qlora":
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, lora_dropout=0.0,
                          target_modules=targets(model_type, all_linear=True), fan_in_fan_out=fan)
    if method == "adalora":
        return AdaLoraConfig(task_type=TaskType.CAUSAL_LM, init_r=12, target_r=8, lora_alpha=16,
                             target_modules=targets(model_type), fan_in_fan_out=fan, total_step=total_steps,
                             tinit=1, tfinal=1, deltaT=1)
    if method == "prefix_tuning":
        return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=VIRTUAL_TOKENS,
                                  prefix_projection=True, encoder_hidden_size=128)
    if method == "p_tuning_v2":
        return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=VIRTUAL_TOKENS)
    if method == "p_tuning":
        return PromptEncoderConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=VIRTUAL_TOKENS,
                                   encoder_hidden_size=128)
    if method == "prompt_tuning":
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=VIRTUAL_TOKENS)
    raise SystemExit(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")


def peak_rss_mb():
    """VmHWM: the peak resident set of this process image (ru_maxrss would also count the parent's
    image this process was forked from, before exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def ids_for(batch_rows, seq, vocab, first_row):
    import torch
    rows = [[(1 + 7919 * k + 104729 * r) % vocab for k in range(seq)] for r in range(first_row, first_row + batch_rows)]
    return torch.tensor(rows, dtype=torch.long)


def worker(a):
    """One Python PEFT training run; prints RESULT lines like bench_train."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(a.threads or os.cpu_count())
    torch.manual_seed(0)
    total = a.steps + a.warmup
    quant = None
    if a.method == "qlora":
        from transformers import BitsAndBytesConfig
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, quantization_config=quant)
    if quant is not None:
        from peft import prepare_model_for_kbit_training
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    cfg = make_config(a.method, model.config.model_type, total)
    pm = get_peft_model(model, cfg)
    trainable, all_params = pm.get_nb_trainable_parameters()
    print(f"RESULT torch_threads {torch.get_num_threads()}")
    print(f"RESULT trainable_params {trainable}\nRESULT all_params {all_params}")
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (total - s) / total))
    vocab = model.config.vocab_size
    pm.train()
    times, cpu, loss = [], 0.0, None
    prof = None
    last, last_cpu = time.perf_counter(), time.process_time()
    for step in range(total):
        if a.profile and step == a.warmup:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            prof.__enter__()
        ids = ids_for(a.batch, a.seq, vocab, step * a.batch)
        # --bf16: as transformers' Trainer with bf16=True on the CPU (autocast around the forward).
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            out = pm(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)
        out.loss.backward()
        if a.method == "adalora":
            pm.base_model.update_and_allocate(step)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        loss = out.loss.item()
        now, now_cpu = time.perf_counter(), time.process_time()
        if step >= a.warmup:
            times.append(now - last)
            cpu += now_cpu - last_cpu
        last, last_cpu = now, now_cpu
    if prof is not None:
        prof.__exit__(None, None, None)
        prof.export_chrome_trace(a.profile)
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    print(f"RESULT tokens_per_s {a.batch * a.seq * len(times) / sum(times)}")
    print(f"RESULT tokens_per_cpu_s {a.batch * a.seq * len(times) / cpu}")
    print(f"RESULT step_ms_median {1e3 * statistics.median(times)}\nRESULT step_ms_p90 {1e3 * p90}")
    print(f"RESULT final_loss {loss}")
    print(f"RESULT peak_rss_mb {peak_rss_mb()}")


def results_of(cmd, threads=0):
    env = dict(os.environ)
    if threads:  # every pool on both sides: OpenMP (LibTorch / torch), OpenBLAS (C++), MKL (torch wheel)
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(threads)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        lines = (p.stderr.strip() or p.stdout.strip() or "failed").splitlines()
        return {"error": lines[-1][:160]}
    out = {}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            _, k, v = line.split()
            out[k] = float(v)
    return out


def model_flops(cfg, method, trainable, batch, seq):
    """FLOPs of one training step (see the module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM
    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(cfg)
    linear = 0
    for mod in m.modules():
        w = getattr(mod, "weight", None)
        if w is not None and w.dim() == 2 and not isinstance(mod, torch.nn.Embedding):
            linear += w.numel()
    if getattr(cfg, "tie_word_embeddings", False):
        linear += cfg.vocab_size * cfg.hidden_size
    hidden = cfg.hidden_size
    layers = cfg.num_hidden_layers
    virt = VIRTUAL_TOKENS if method in ("prefix_tuning", "p_tuning", "prompt_tuning", "p_tuning_v2") else 0
    tokens = batch * (seq + (virt if method in ("p_tuning", "prompt_tuning") else 0))
    fwd = 2 * tokens * linear + 4 * batch * seq * (seq + virt) * hidden * layers
    return 2 * fwd + 2 * batch * seq * trainable


def ensure_gpt2(work):
    path = os.path.join(work, "gpt2-124m-random")
    if not os.path.exists(os.path.join(path, "config.json")):
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(path)
    return path


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_cpp(spec):
    """--cpp PATH or LABEL=PATH[,LABEL=PATH...]: the bench_train binaries to compare, in order."""
    out = []
    for i, part in enumerate(spec.split(",")):
        label, _, path = part.rpartition("=")
        out.append((label or ("peft.cpp" if i == 0 else f"peft.cpp#{i + 1}"), path))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stories", help="stories260K converted by `peft convert`")
    ap.add_argument("--cpp", help="bench_train binary, or LABEL=PATH,LABEL=PATH,... to compare builds")
    ap.add_argument("--models", default="stories,gpt2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "peft-bench"))
    ap.add_argument("--json", help="also write the table as JSON here")
    ap.add_argument("--profile", help="with --worker: a Chrome trace of the timed steps (torch.profiler)")
    ap.add_argument("--bf16", action="store_true",
                    help="bf16 autocast with fp32 master weights on both sides (transformers' bf16=True); "
                         "the GEMM peak is then bf16's")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a)
    if not a.cpp:
        ap.error("--cpp is required")
    os.makedirs(a.work, exist_ok=True)
    from transformers import AutoConfig
    import torch
    import peft
    import transformers

    cpps = parse_cpp(a.cpp)
    thr = ["--threads", str(a.threads)] if a.threads else []
    bf16 = ["--bf16"] if a.bf16 else []
    peak = results_of([cpps[0][1], "--gemm-peak"] + thr + bf16, a.threads).get("gemm_peak_gflops", float("nan"))
    print(f"{cpu_model()}, {os.cpu_count()} cores, load average {load_average()} at the start; "
          f"threads: {a.threads or 'each side its default'}", flush=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}; "
          f"{'bf16 autocast, bf16' if a.bf16 else 'fp32'} GEMM peak (bench_train --gemm-peak): {peak:.1f} GFLOP/s; batch {a.batch} x seq {a.seq}, "
          f"{a.steps} timed steps after {a.warmup}, {a.rounds} round(s), sides interleaved "
          f"({', '.join(label for label, _ in cpps)}, PEFT)", flush=True)
    models = {}
    for name in a.models.split(","):
        if name == "stories":
            if not a.stories:
                ap.error("--stories is required for the stories model")
            models["stories260K"] = a.stories
        elif name == "gpt2":
            models["gpt2-124M"] = ensure_gpt2(a.work)
        else:
            ap.error(f"unknown model {name!r}; expected stories or gpt2")
    rows = []
    for mname, mpath in models.items():
        hf_cfg = AutoConfig.from_pretrained(mpath)
        for method in a.methods.split(","):
            cfg = make_config(method, hf_cfg.model_type, a.steps + a.warmup)
            cdir = os.path.join(a.work, f"{mname}-{method}")
            cfg.save_pretrained(cdir)
            args = ["--model", mpath, "--adapter-config", os.path.join(cdir, "adapter_config.json"),
                    "--batch", str(a.batch), "--seq", str(a.seq), "--steps", str(a.steps),
                    "--warmup", str(a.warmup)] + thr + bf16
            if method == "qlora":
                args += ["--load-4bit", "nf4"]
            sides = [(label, [path] + args) for label, path in cpps]
            sides.append(("PEFT", [sys.executable, os.path.abspath(__file__), "--worker", "--model", mpath,
                                   "--method", method, "--batch", str(a.batch), "--seq", str(a.seq),
                                   "--steps", str(a.steps), "--warmup", str(a.warmup),
                                   "--threads", str(a.threads)] + bf16))
            runs = {label: [] for label, _ in sides}
            for _ in range(a.rounds):
                for label, cmd in sides:
                    runs[label].append(results_of(cmd, a.threads))
            row = {"model": mname, "method": method, "sides": {}}
            for label, rs in runs.items():
                ok = [r for r in rs if "error" not in r]
                if not ok:
                    row["sides"][label] = {"error": rs[0]["error"]}
                    continue
                med = {k: statistics.median(r[k] for r in ok) for k in ok[0] if all(k in r for r in ok)}
                flops = model_flops(hf_cfg, method, med["trainable_params"], a.batch, a.seq)
                med["mfu"] = flops * med["tokens_per_s"] / (a.batch * a.seq) / (peak * 1e9)
                row["sides"][label] = med
            rows.append(row)
            report(row)
    print(f"load average {load_average()} at the end")
    print_table(rows)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"cpu": cpu_model(), "gemm_peak_gflops": peak, "rows": rows, "args": vars(a)}, f, indent=1)


def report(row):
    for who, r in row["sides"].items():
        if "error" in r:
            print(f"  {row['model']} {row['method']} {who}: FAILED: {r['error']}", flush=True)
        else:
            print(f"  {row['model']} {row['method']} {who}: {r['tokens_per_s']:.0f} tok/s, "
                  f"{r.get('tokens_per_cpu_s', float('nan')):.0f} tok/CPU-s, step {r['step_ms_median']:.1f} ms "
                  f"(p90 {r['step_ms_p90']:.1f}), RSS {r['peak_rss_mb']:.0f} MB, MFU {100 * r['mfu']:.1f}%, "
                  f"trainable {int(r['trainable_params'])}, loss {r['final_loss']:.3f}", flush=True)


def print_table(rows):
    """One line per peft.cpp build: its figures and its ratios to Python PEFT's (> 1: peft.cpp
    faster, or for RSS: larger)."""
    print("\n| model | method | build | tok/s | tok/s PEFT | ratio | tok/CPU-s | tok/CPU-s PEFT | ratio "
          "| step ms p50/p90 | step ms p50/p90 PEFT | RSS MB | RSS MB PEFT | RSS ratio | MFU | MFU PEFT |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        p = row["sides"]["PEFT"]
        for who, c in row["sides"].items():
            if who == "PEFT":
                continue
            if "error" in c or "error" in p:
                why = c.get("error") or p.get("error")
                print(f"| {row['model']} | {row['method']} | {who} | n/a: {why} |" + " |" * 12)
                continue
            cc, pc = c.get("tokens_per_cpu_s", float("nan")), p.get("tokens_per_cpu_s", float("nan"))
            print(f"| {row['model']} | {row['method']} | {who} | {c['tokens_per_s']:.0f} | {p['tokens_per_s']:.0f} "
                  f"| {c['tokens_per_s'] / p['tokens_per_s']:.2f}x | {cc:.0f} | {pc:.0f} | {cc / pc:.2f}x "
                  f"| {c['step_ms_median']:.1f} / {c['step_ms_p90']:.1f} | {p['step_ms_median']:.1f} / {p['step_ms_p90']:.1f} "
                  f"| {c['peak_rss_mb']:.0f} | {p['peak_rss_mb']:.0f} | {c['peak_rss_mb'] / p['peak_rss_mb']:.2f}x "
                  f"| {100 * c['mfu']:.1f}% | {100 * p['mfu']:.1f}% |")


if __name__ == "__main__":
    main()
