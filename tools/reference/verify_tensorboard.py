#!/usr/bin/env python3
"""Reads a TensorBoard event directory written by peft::train::TensorBoardWriter with TensorBoard's
own EventAccumulator and prints every scalar.

Usage: /root/peft-venv/bin/python tools/reference/verify_tensorboard.py EVENT_DIR
Exit status 1 if no scalars were found.
"""
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})  # 0 = keep every event
    acc.Reload()
    tags = acc.Tags()
    print("file_version:", acc.file_version)
    print("scalar tags:", sorted(tags["scalars"]))
    n = 0
    for tag in sorted(tags["scalars"]):
        for ev in acc.Scalars(tag):
            print(f"{tag}\tstep={ev.step}\twall_time={ev.wall_time:.6f}\tvalue={ev.value!r}")
            n += 1
    print("total scalars:", n)
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main())
