#!/usr/bin/env python3
"""HF tokenizers (Rust) encode throughput on the same corpus as bench/bench_tokenizer.cpp.

Single thread (RAYON_NUM_THREADS=1). Prints MB/s for a per-line encode() loop (includes the
Python call overhead) and for encode_batch() over the whole corpus.
Run: /root/peft-venv/bin/python bench/python/bench_tokenizer.py [FIXTURE_DIR]
"""
import json
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import sentencepiece as spm  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests/fixtures/tokenizers")


def best_of(fn, reps=5):
    fn()
    best = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    with open(os.path.join(DIR, "corpus.jsonl"), encoding="utf-8") as f:
        lines = [json.loads(l) for l in f if l.strip()]
    nbytes = sum(len(l.encode("utf-8")) for l in lines)
    print(f"corpus: {len(lines)} lines, {nbytes} bytes")
    for name in ["gpt2", "bert", "llama2c", "unigram"]:
        tok = Tokenizer.from_file(os.path.join(DIR, name, "tokenizer.json"))
        loop = best_of(lambda: [tok.encode(l) for l in lines])
        batch = best_of(lambda: tok.encode_batch(lines))
        print(f"{name:<14} encode {nbytes / loop / 1e6:7.2f} MB/s (loop)   "
              f"{nbytes / batch / 1e6:7.2f} MB/s (encode_batch, 1 thread)")
    sp = spm.SentencePieceProcessor(model_file=os.path.join(DIR, "sentencepiece", "tokenizer.model"))
    loop = best_of(lambda: [sp.encode(l) for l in lines])
    print(f"{'sentencepiece':<14} encode {nbytes / loop / 1e6:7.2f} MB/s (loop)")


if __name__ == "__main__":
    main()
