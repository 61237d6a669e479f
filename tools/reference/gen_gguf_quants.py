#!/usr/bin/env python3
"""ggml block types against gguf-py (gguf.quants) -> tests/fixtures/gguf/quants/.

quants.safetensors holds, for every ggml type T the C++ kernels dequantise:
  T.bytes     U8  [rows, row_bytes]  blocks of T: gguf-py's quantisation of random data where
                                     gguf-py has a quantiser, then random valid blocks (random
                                     bytes with finite f16 scales)
  T.expected  F32 [rows, row_len]    gguf.quants.dequantize(T.bytes, T)
and for every type gguf-py can quantise:
  quant.T.input  F32 [rows, row_len] normal rows, heavy-tailed rows, an all-zero block, a block
                                     with a NaN, tiny and huge values, exact rounding ties
  quant.T.bytes  U8  [rows, row_bytes] gguf.quants.quantize(input, T)
manifest.json lists the types, shapes, seed and library versions.

Usage: /root/peft-venv/bin/python tools/reference/gen_gguf_quants.py
"""
import os

import gguf
import numpy as np
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

from common import FIXTURES, write_manifest

T = gguf.GGMLQuantizationType
OUT = os.path.join(FIXTURES, "gguf", "quants")
SEED = 20240611

DEQUANT_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
                 T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
QUANT_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]

# Byte offsets of the f16 scales inside one block (everything else is random bytes).
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def finite_f16(rng, n):
    """Half of them realistic (|N(0, 0.02)|-ish, both signs), half any finite bit pattern
    (subnormals and +-65504 included)."""
    real = (rng.standard_normal(n) * 0.02).astype(np.float16).view(np.uint16)
    bits = rng.integers(0, 1 << 16, n, dtype=np.uint16)
    bits = np.where((bits & 0x7C00) == 0x7C00, bits & 0x83FF, bits)  # inf/nan -> subnormal
    return np.where(rng.random(n) < 0.5, real, bits).astype(np.uint16)


def random_blocks(rng, qtype, n_blocks):
    _, type_size = GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        b[:, off:off + 2] = finite_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return b


def quant_input(rng, rows, row_len):
    """Rows of the quantiser input: each row a different regime."""
    x = np.empty((rows, row_len), np.float32)
    for r in range(rows):
        kind = r % 8
        if kind == 0:
            v = rng.standard_normal(row_len) * 0.02
        elif kind == 1:  # heavy tails: outliers dominate a block's scale
            v = rng.standard_t(2, row_len) * 0.05
        elif kind == 2:  # zero blocks (all-zero scale) and one with a single non-zero
            v = rng.standard_normal(row_len)
            v[:32] = 0
            v[32:64] = 0
            v[40] = -0.25
            v[70] = np.nan  # a NaN block: numpy's max / argmax pick the NaN
        elif kind == 3:  # tiny: scales near the f16 subnormal range and below
            v = rng.standard_normal(row_len) * np.where(np.arange(row_len) < row_len // 2, 1e-6, 1e-30)
        elif kind == 4:  # huge: d overflows f16 in some blocks
            v = rng.standard_normal(row_len) * np.where(np.arange(row_len) < row_len // 2, 3e3, 3e6)
        elif kind == 5:  # ties: multiples of 1/16 so x * id lands on .5 often; equal +-max
            v = rng.integers(-16, 17, row_len) / 16.0
            v[0], v[1] = -1.0, 1.0
            v[32], v[33] = 1.0, -1.0
        elif kind == 6:  # all positive / all negative (Q4_1 min > 0, max < 0)
            v = np.abs(rng.standard_normal(row_len)) + 1.0
            v[row_len // 2:] = -v[row_len // 2:]
        else:  # f16 / bf16 rounding edges: halfway cases, overflow, subnormals
            v = rng.standard_normal(row_len)
            edges = [65504.0, 65519.0, 65520.0, 70000.0, -1e9, 2.0 ** -24, 2.0 ** -25,
                     3 * 2.0 ** -26, 2.0 ** -26, 1e-8, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11,
                     1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 3.4e38, -0.0, np.inf, -np.inf]
            v[:len(edges)] = edges
        x[r] = v.astype(np.float32)
    return x


def main():
    rng = np.random.default_rng(SEED)
    tensors, manifest_types = {}, {}
    for qtype in DEQUANT_TYPES:
        block, type_size = GGML_QUANT_SIZES[qtype]
        if qtype in (T.F32, T.F16, T.BF16):
            rows, row_len = 8, 64
            width = {T.F32: 4, T.F16: 2, T.BF16: 2}[qtype]
            raw = rng.integers(0, 256, (rows, row_len * width), dtype=np.uint8)
            if qtype == T.F16:  # specials: +-inf, -0, subnormals, quiet and signalling NaNs
                raw.view(np.uint16)[0, :8] = [0x7C00, 0xFC00, 0x8000, 0x0001, 0x83FF, 0x7C01,
                                              0xFE00, 0x7D55]
            if qtype == T.F32:  # finite values and a few specials; bits are copied anyway
                raw[:] = rng.standard_normal((rows, row_len)).astype(np.float32).view(np.uint8)
            blocks = raw
        else:
            row_len = 2 * block if block == 256 else 4 * block
            n_quant_rows = 8 if qtype in QUANT_TYPES else 0
            parts = []
            if n_quant_rows:
                src = quant_input(rng, n_quant_rows, row_len)
                parts.append(quantize(src, qtype).reshape(n_quant_rows, -1))
            n_rand_rows = 8
            parts.append(random_blocks(rng, qtype, n_rand_rows * row_len // block)
                         .reshape(n_rand_rows, -1))
            blocks = np.concatenate(parts, axis=0)
            rows = blocks.shape[0]
        expected = dequantize(blocks, qtype).reshape(rows, row_len).astype(np.float32, copy=False)
        assert blocks.shape == (rows, row_len // block * type_size)
        tensors[qtype.name + ".bytes"] = np.ascontiguousarray(blocks)
        tensors[qtype.name + ".expected"] = np.ascontiguousarray(expected)
        manifest_types[qtype.name] = {"rows": rows, "row_len": row_len, "block_size": block,
                                      "type_size": type_size,
                                      "quantised_rows": 8 if qtype in QUANT_TYPES and block > 1 else 0}

    for qtype in QUANT_TYPES:
        rows, row_len = 16, 128
        src = quant_input(rng, rows, row_len)
        if qtype in (T.F16, T.BF16):  # NaNs: numpy keeps the payload's top bits (F16) or quiets (BF16)
            src.view(np.uint32)[7, 20:26] = [0x7F800001, 0xFF802000, 0x7FC00000, 0x7FBFFFFF,
                                             0xFFFFFFFF, 0x7F810000]
        with np.errstate(all="ignore"):
            q = np.ascontiguousarray(quantize(src, qtype)).view(np.uint8).reshape(rows, -1)
        tensors["quant." + qtype.name + ".input"] = src
        tensors["quant." + qtype.name + ".bytes"] = q
        manifest_types.setdefault(qtype.name, {})["quantise"] = {"rows": rows, "row_len": row_len}

    os.makedirs(OUT, exist_ok=True)
    save_file(tensors, os.path.join(OUT, "quants.safetensors"))
    write_manifest(OUT, seed=SEED, gguf=gguf.__version__ if hasattr(gguf, "__version__") else
                   __import__("importlib.metadata").metadata.version("gguf"),
                   reference="gguf.quants.quantize / gguf.quants.dequantize, compared bit for bit",
                   types=manifest_types)
    print("wrote", OUT, sum(v.nbytes for v in tensors.values()), "bytes of tensors")


if __name__ == "__main__":
    with np.errstate(all="ignore"):
        main()
