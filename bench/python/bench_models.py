#!/usr/bin/env python3
"""transformers forward and greedy-generation throughput on the workloads of bench/bench_models.cpp.

    /root/peft-venv/bin/python bench/python/bench_models.py <stories260K-hf folder> [--cpp build/bench/bench_models]

Workloads: forward of a [4, 128] batch under no_grad, and greedy generation of 64 new tokens from a
16-token prompt, batch 1 (KV cache, no EOS stop), for (a) the converted stories260K Llama and (b) a
random GPT-2-124M (fp32). Default attention (SDPA), torch's default thread count. With --cpp the
C++ benchmark is run too and the C++ / Python ratio printed (> 1 = C++ faster).
"""
import argparse
import subprocess
import time

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel


def best_of(fn, reps):
    fn()  # warm-up
    best = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@torch.no_grad()
def run(name, model, vocab, fwd_reps, gen_reps):
    model.eval()
    torch.manual_seed(0)
    ids = torch.randint(vocab, (4, 128))
    mask = torch.ones(4, 128, dtype=torch.long)
    fwd = best_of(lambda: model(input_ids=ids, attention_mask=mask), fwd_reps)
    prompt = torch.randint(vocab, (1, 16))
    out = {}

    def gen():
        out["n"] = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=64,
                                  do_sample=False, eos_token_id=None, pad_token_id=0).shape[1] - prompt.shape[1]

    g = best_of(gen, gen_reps)
    print(f"{name}: forward [4, 128] {fwd * 1e3:.1f} ms ({512 / fwd:.0f} tok/s); "
          f"generate {out['n']} tokens {g * 1e3:.1f} ms ({out['n'] / g:.1f} tok/s)", flush=True)
    return {(name, "forward_tok_s"): 512 / fwd, (name, "generate_tok_s"): out["n"] / g}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stories")
    ap.add_argument("--cpp", help="path of the bench_models binary to compare with")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    res = {}
    res.update(run("stories260K", AutoModelForCausalLM.from_pretrained(args.stories, dtype=torch.float32), 512, 20, 5))
    torch.manual_seed(0)
    res.update(run("gpt2-124M", GPT2LMHeadModel(GPT2Config()), 50257, 3, 2))
    if not args.cpp:
        return
    proc = subprocess.run([args.cpp, args.stories], capture_output=True, text=True, check=True)
    print(proc.stdout, end="")
    cpp = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            _, model, metric, value = line.split()
            cpp[(model, metric)] = float(value)
    print(f"\n{'model':<12} {'metric':<16} {'C++':>10} {'Python':>10} {'C++/Py':>7}")
    for key, py in res.items():
        c = cpp.get(key, float("nan"))
        print(f"{key[0]:<12} {key[1]:<16} {c:>10.1f} {py:>10.1f} {c / py:>7.2f}")


if __name__ == "__main__":
    main()
