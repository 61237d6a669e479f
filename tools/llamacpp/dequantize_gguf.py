"""Writes an F32 copy of a GGUF model (gguf-py's dequantisation, metadata kept), so llama.cpp and
peft.cpp can be compared with the same weights and llama.cpp's F32 matmul (no activation
quantisation): tools/llamacpp/dequantize_gguf.py IN.gguf OUT.gguf"""
import sys

import gguf
import numpy as np


def main(src, dst):
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name in ("general.architecture", "general.alignment"):
            continue
        if f.name == "general.file_type":
            w.add_uint32(f.name, 0)
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            w.add_array(f.name, f.contents())
        else:
            w.add_key_value(f.name, f.contents(), t)
    for t in r.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, data.reshape([int(x) for x in reversed(t.shape)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
