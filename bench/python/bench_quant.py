"""bitsandbytes' Linear4bit (NF4 + double quantisation, fp32 compute) on this CPU with the shapes
of bench/bench_quant.cpp, then the C++ binary; prints both.

    /root/peft-venv/bin/python bench/python/bench_quant.py [path/to/bench_quant] [rounds]
Forward: eval + no_grad (bitsandbytes repacks for its CPU kernel there); backward: the input
gradient of a train-mode forward (x requires grad). Figures are medians over rounds.
"""
import statistics
import subprocess
import sys
import time

import torch
import bitsandbytes as bnb


def timed(fn, reps):
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) * 1000 / reps


def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else "build/bench/bench_quant"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    torch.manual_seed(0)
    print("torch threads", torch.get_num_threads(), "bitsandbytes", bnb.__version__)
    for n, i, o in [(512, 768, 3072), (512, 3072, 768), (1, 768, 3072)]:
        W = torch.randn(o, i) * 0.02
        x = torch.randn(n, i)
        g = torch.randn(n, o)
        lin = bnb.nn.Linear4bit(i, o, bias=False, compute_dtype=torch.float32, compress_statistics=True,
                                quant_type="nf4")
        lin.weight = bnb.nn.Params4bit(W.clone(), requires_grad=False, compress_statistics=True, quant_type="nf4")
        lin = lin.to("cpu")
        reps = 50 if n == 1 else 3
        xg = x.clone().requires_grad_(True)

        def bnb_bwd():
            lin.train()
            y = lin(xg)
            y.backward(g)

        def fp32_fwd():
            torch.nn.functional.linear(x, W)

        def bnb_fwd():
            lin.eval()
            with torch.no_grad():
                lin(x)

        variants = {"fp32_fwd": fp32_fwd, "bnb_fwd_eval": bnb_fwd, "bnb_fwd_bwd_train": bnb_bwd}
        ms = {k: [] for k in variants}
        for f in variants.values():
            f()
        for _ in range(rounds):
            for k, f in variants.items():
                ms[k].append(timed(f, reps))
        tag = f"{n}x{i}x{o}"
        flop = 2.0 * n * i * o
        for k, v in ms.items():
            m = statistics.median(v)
            print(f"RESULT {tag}.{k}_ms {m:.4f}  ({flop / m / 1e6:.1f} GFLOP/s per matmul)")
    print("--- C++ (", exe, ")")
    subprocess.run([exe, str(rounds)], check=False)


if __name__ == "__main__":
    main()
