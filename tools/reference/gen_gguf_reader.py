"""GGUF reader fixture: a file written by gguf-py's GGUFWriter with every metadata value type,
arrays (nested too), a non-default alignment and tensors of several ggml types, plus what
gguf-py's GGUFReader reads from it (tests/fixtures/gguf/reader/).

    /root/peft-venv/bin/python tools/reference/gen_gguf_reader.py
"""
import importlib.metadata
import json
import os

import gguf
import numpy as np

from common import write_manifest

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "gguf", "reader")
T = gguf.GGUFValueType


def main():
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "all_types.gguf")
    w = gguf.GGUFWriter(path, "llama", endianess=gguf.GGUFEndian.LITTLE)
    w.data_alignment = 64
    w.add_uint32("general.alignment", 64)
    w.add_key_value("v.u8", 250, T.UINT8)
    w.add_key_value("v.i8", -100, T.INT8)
    w.add_key_value("v.u16", 65000, T.UINT16)
    w.add_key_value("v.i16", -32000, T.INT16)
    w.add_key_value("v.u32", 4000000000, T.UINT32)
    w.add_key_value("v.i32", -2000000000, T.INT32)
    w.add_key_value("v.u64", 2**63 + 5, T.UINT64)
    w.add_key_value("v.i64", -(2**62), T.INT64)
    w.add_key_value("v.f32", 0.1, T.FLOAT32)
    w.add_key_value("v.f64", 0.1, T.FLOAT64)
    w.add_key_value("v.bool", True, T.BOOL)
    w.add_key_value("v.str", "h\u00e9llo \u2581 \U0001F600", T.STRING)
    w.add_key_value("v.empty", "", T.STRING)
    w.add_array("a.str", ["<unk>", "\u0120the", "", "\n"])
    w.add_array("a.i32", [1, -2, 3])
    w.add_array("a.f32", [0.5, -1.25, 3.0e-8])
    w.add_array("a.bool", [True, False])
    w.add_array("a.empty", [])
    w.add_array("a.nested", [[1, 2], [3]])
    rng = np.random.default_rng(7)
    f32 = rng.standard_normal((3, 5)).astype(np.float32)
    f16 = rng.standard_normal((2, 8)).astype(np.float16)
    q = rng.standard_normal((2, 64)).astype(np.float32)
    q8 = gguf.quants.quantize(q, gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("t.f32", f32)
    w.add_tensor("t.f16", f16)
    w.add_tensor("t.q8_0", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("t.i8", np.arange(-5, 6, dtype=np.int8))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = gguf.GGUFReader(path)
    keys = []
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        t = f.types[0]
        e = {"key": f.name, "type": int(t)}
        if t == T.ARRAY:
            e["elem_type"] = int(f.types[1]) if len(f.types) > 1 else int(T.UINT32)
            e["value"] = f.contents()
        else:
            e["value"] = f.contents()
        if isinstance(e["value"], (float, np.floating)):
            e["value"] = float(np.float32(e["value"])) if t == T.FLOAT32 else float(e["value"])
        if t == T.ARRAY and e.get("elem_type") == int(T.FLOAT32):
            e["value"] = [float(np.float32(x)) for x in e["value"]]
        keys.append(e)
    tensors = []
    for t in r.tensors:
        raw = np.asarray(t.data).view(np.uint8).reshape(-1)
        tensors.append({"name": t.name, "type": int(t.tensor_type), "ne": [int(x) for x in t.shape],
                        "offset": int(t.data_offset - r.data_offset), "nbytes": int(t.n_bytes),
                        "byte_sum": int(raw.astype(np.uint64).sum())})
    exp = {"alignment": int(r.alignment), "data_offset": int(r.data_offset), "keys": keys, "tensors": tensors}
    with open(os.path.join(OUT, "expected.json"), "w") as fh:
        json.dump(exp, fh, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    write_manifest(OUT, gguf_py=importlib.metadata.version("gguf"))


if __name__ == "__main__":
    main()
