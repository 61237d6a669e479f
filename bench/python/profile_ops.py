#!/usr/bin/env python3
"""Per-op table of Chrome traces written by `bench_train --profile` (LibTorch's profiler) and
`bench_train.py --worker --profile` (torch.profiler), side by side.

    python bench/python/profile_ops.py --steps 10 cpp=/tmp/cpp.json peft=/tmp/py.json [--top 25]

For every op name: calls per training step and self time per step (its time minus the time of the
ops it called, per thread), and its share of all self time. The profilers add a few microseconds to
every op, so the counts and shares are the figures to read; the step times come from unprofiled
runs.
"""
import argparse
import collections
import json


def self_times(path):
    """{op name: [calls, self µs]} and the traced µs of the trace at path."""
    with open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    by_thread = collections.defaultdict(list)
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        cat = e.get("cat", "")
        if cat and cat not in ("cpu_op", "user_annotation", "Operator"):
            continue  # python functions, kernels, memory events
        by_thread[(e.get("pid"), e.get("tid"))].append((float(e["ts"]), float(e["dur"]), e["name"]))
    ops = collections.defaultdict(lambda: [0, 0.0])
    traced = 0.0
    for evs in by_thread.values():
        evs.sort(key=lambda x: (x[0], -x[1]))
        stack = []  # [end, name, child time]
        def pop():
            end, name, child, dur = stack.pop()
            ops[name][1] += dur - child
        for ts, dur, name in evs:
            while stack and stack[-1][0] <= ts:
                pop()
            if stack:
                stack[-1][2] += dur
            else:
                traced += dur
            ops[name][0] += 1
            stack.append([ts + dur, name, 0.0, dur])
        while stack:
            pop()
    return ops, traced


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", nargs="+", help="LABEL=TRACE.json")
    ap.add_argument("--steps", type=int, required=True, help="training steps in each trace")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    sides = []
    for spec in a.traces:
        label, _, path = spec.rpartition("=")
        ops, traced = self_times(path)
        sides.append((label or path, ops, sum(v[1] for v in ops.values())))
    names = collections.Counter()
    for _, ops, total in sides:
        for n, (_, t) in ops.items():
            names[n] = max(names[n], t / total)
    head = "| op | " + " | ".join(f"{l}: calls/step | {l}: self ms/step | {l}: share" for l, _, _ in sides) + " |"
    print(head)
    print("|---|" + "---|---|---|" * len(sides))
    for n, _ in names.most_common(a.top):
        cells = []
        for _, ops, total in sides:
            c, t = ops.get(n, (0, 0.0))
            cells.append(f"{c / a.steps:.0f} | {t / a.steps / 1e3:.2f} | {100 * t / total:.1f}%")
        print(f"| `{n}` | " + " | ".join(cells) + " |")
    print("| **all ops** | " + " | ".join(
        f"{sum(v[0] for v in ops.values()) / a.steps:.0f} | {total / a.steps / 1e3:.2f} | 100%"
        for _, ops, total in sides) + " |")


if __name__ == "__main__":
    main()
