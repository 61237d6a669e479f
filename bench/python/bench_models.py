#!/usr/bin/env python3
"""transformers forward and greedy-generation throughput on the workloads of bench/bench_models.cpp.

    /root/peft-venv/bin/python bench/python/bench_models.py <stories260K-hf folder> \
        [--cpp build/bench/bench_models --rounds 5] [--models stories260K,gpt2-124M] [--threads N]

Workloads: forward of a [4, 128] batch under no_grad, and greedy generation of 64 new tokens from a
16-token prompt, batch 1 (KV cache, no EOS stop), for (a) the converted stories260K Llama and (b) a
random GPT-2-124M (fp32). Default attention (SDPA), torch's default thread count. With --cpp the
C++ benchmark is run too, alternating with the Python runs model by model (the machine is shared, so
each round compares runs made a few seconds apart), and the median C++ / Python ratios are printed
(> 1 = C++ faster). Each metric comes as tokens per wall-clock second and per process-CPU second
(*_cpu_tok_s); with --threads 1 on a loaded machine the CPU figures are the steadier comparison.
"""
import argparse
import os
import statistics
import subprocess
import time

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel


def best_of(fn, reps):
    """Best wall time and best process CPU time (all threads) over reps calls after a warm-up."""
    fn()  # warm-up
    wall = cpu = 1e30
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu = min(cpu, time.process_time() - c0)
        wall = min(wall, time.perf_counter() - t0)
    return wall, cpu


@torch.no_grad()
def run(name, model, vocab, fwd_reps, gen_reps):
    model.eval()
    torch.manual_seed(0)
    ids = torch.randint(vocab, (4, 128))
    mask = torch.ones(4, 128, dtype=torch.long)
    fwd, fwd_cpu = best_of(lambda: model(input_ids=ids, attention_mask=mask), fwd_reps)
    prompt = torch.randint(vocab, (1, 16))
    out = {}

    def gen():
        out["n"] = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=64,
                                  do_sample=False, eos_token_id=None, pad_token_id=0).shape[1] - prompt.shape[1]

    g, g_cpu = best_of(gen, gen_reps)
    print(f"{name}: forward [4, 128] {fwd * 1e3:.1f} ms ({512 / fwd:.0f} tok/s; CPU {fwd_cpu * 1e3:.1f} ms); "
          f"generate {out['n']} tokens {g * 1e3:.1f} ms ({out['n'] / g:.1f} tok/s; CPU {g_cpu * 1e3:.1f} ms)",
          flush=True)
    return {(name, "forward_tok_s"): 512 / fwd, (name, "generate_tok_s"): out["n"] / g,
            (name, "forward_cpu_tok_s"): 512 / fwd_cpu, (name, "generate_cpu_tok_s"): out["n"] / g_cpu}


def run_cpp(binary, stories, model, threads):
    env = dict(os.environ)
    if threads > 0:
        env["OPENBLAS_NUM_THREADS"] = str(threads)  # LibTorch's own pool stays at the runtime's 1
    proc = subprocess.run([binary, stories, model], capture_output=True, text=True, check=True, env=env)
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            _, name, metric, value = line.split()
            out[(name, metric)] = float(value)
        elif line.startswith("threads "):
            out["info"] = line
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stories")
    ap.add_argument("--cpp", help="path of the bench_models binary to compare with")
    ap.add_argument("--rounds", type=int, default=1,
                    help="with --cpp: rounds of (Python, then C++) per model; medians are reported")
    ap.add_argument("--models", default="stories260K,gpt2-124M")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads here and OPENBLAS_NUM_THREADS for the C++ run (default: each side's own)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)
    models = {}
    for name in args.models.split(","):
        if name == "stories260K":
            models[name] = (AutoModelForCausalLM.from_pretrained(args.stories, dtype=torch.float32), 512, 20, 5)
        elif name == "gpt2-124M":
            torch.manual_seed(0)
            models[name] = (GPT2LMHeadModel(GPT2Config()), 50257, 3, 2)
        else:
            raise SystemExit(f"unknown model {name!r} (stories260K, gpt2-124M)")
    py, cpp = {}, {}
    for r in range(args.rounds if args.cpp else 1):
        for name, (model, vocab, fwd_reps, gen_reps) in models.items():
            for key, value in run(name, model, vocab, fwd_reps, gen_reps).items():
                py.setdefault(key, []).append(value)
            if args.cpp:
                res = run_cpp(args.cpp, args.stories, name, args.threads)
                if r == 0 and "info" in res:
                    print("C++:", res.pop("info"), flush=True)
                res.pop("info", None)
                for key, value in res.items():
                    cpp.setdefault(key, []).append(value)
                    print(f"  C++ {key[0]} {key[1]} {value:.1f}", flush=True)
    if not args.cpp:
        return
    print(f"\n{'model':<12} {'metric':<16} {'C++':>10} {'Python':>10} {'C++/Py':>7}   (medians of {args.rounds} rounds)")
    for key, values in py.items():
        p = statistics.median(values)
        c = statistics.median(cpp.get(key, [float("nan")]))
        ratios = [a / b for a, b in zip(cpp.get(key, []), values)]
        spread = f"  per round {min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else ""
        print(f"{key[0]:<12} {key[1]:<16} {c:>10.1f} {p:>10.1f} {c / p:>7.2f}{spread}")


if __name__ == "__main__":
    main()
