"""Tiny Qwen2 / Qwen3 GGUF files written with gguf-py from the transformers fixtures
(tests/fixtures/models/{qwen2,qwen3}_causal), with llama.cpp's metadata keys and tensor names and,
as llama.cpp's converter does for these architectures, q/k rows in HF order (no rotary
permutation). Written to tests/fixtures/gguf/family/:

    <arch>_f32.gguf        every tensor F32: the HF fixture's own logits apply
X
    expected.safetensors   input_ids (the fixture's first row), logits of transformers' model on the
                           HF weights (f32) and on gguf-py's dequantisation of the Q8_0 weights,
                           with full attention on every layer: a GGUF file carries no sliding
                           window for these architectures (llama.cpp runs them without one), so
                           the fixtures' 4-slot windows are not part of what the file describes

    /root/peft-venv/bin/python tools/reference/gen_gguf_family.py
"""
import os

import gguf
import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file

from common import FIXTURES, write_manifest

OUT = os.path.join(FIXTURES, "gguf", "family")
NAMES = {  # HF key suffix -> llama.cpp tensor name ('#' = block)
    "embed_tokens.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "input_layernorm.weight": "blk.#.attn_norm.weight", "post_attention_layernorm.weight": "blk.#.ffn_norm.weight",
    "self_attn.q_proj.weight": "blk.#.attn_q.weight", "self_attn.q_proj.bias": "blk.#.attn_q.bias",
    "self_attn.k_proj.weight": "blk.#.attn_k.weight", "self_attn.k_proj.bias": "blk.#.attn_k.bias",
    "self_attn.v_proj.weight": "blk.#.attn_v.weight", "self_attn.v_proj.bias": "blk.#.attn_v.bias",
    "self_attn.o_proj.weight": "blk.#.attn_output.weight", "self_attn.o_proj.bias": "blk.#.attn_output.bias",
    "self_attn.q_norm.weight": "blk.#.attn_q_norm.weight", "self_attn.k_norm.weight": "blk.#.attn_k_norm.weight",
    "mlp.gate_proj.weight": "blk.#.ffn_gate.weight", "mlp.up_proj.weight": "blk.#.ffn_up.weight",
    "mlp.down_proj.weight": "blk.#.ffn_down.weight",
}


def gguf_name(key):
    parts = key.split(".")
    if parts[0] == "model":
        parts = parts[1:]
    if parts[0] == "layers":
        return NAMES[".".join(parts[2:])].replace("#", parts[1])
    return NAMES[".".join(parts)]


def write(arch, path, q8=False):
    folder = os.path.join(FIXTURES, "models", f"{arch}_causal")
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny-{arch}")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    if arch == "qwen3":
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if q8 else gguf.LlamaFileType.ALL_F32)
    state = model.state_dict()
    deq = {}
    for key, t in state.items():
        if key == "lm_head.weight" and c.tie_word_embeddings:
            continue
        a = t.detach().numpy().astype(np.float32)
        if q8 and a.ndim == 2 and key.endswith("proj.weight") and a.shape[1] % 32 == 0:
            qa = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(gguf_name(key), qa, raw_shape=qa.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            deq[key] = torch.from_numpy(gguf.quants.dequantize(qa, gguf.GGMLQuantizationType.Q8_0).reshape(a.shape).copy())
        else:
            w.add_tensor(gguf_name(key), a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    return model, deq


def without_window(model):
    """The same weights with full attention everywhere (what the GGUF metadata describes)."""
    cfg = model.config
    cfg.use_sliding_window = False
    cfg.sliding_window = None
    cfg.layer_types = ["full_attention"] * cfg.num_hidden_layers
    m = type(model)(cfg).eval()
    m.load_state_dict(model.state_dict())
    return m


def main():
    os.makedirs(OUT, exist_ok=True)
    ids = load_file(os.path.join(FIXTURES, "models", "qwen3_causal", "expected.safetensors"))["input_ids"][:1]
    t = {"input_ids": ids}
    for arch in ("qwen2", "qwen3"):
        model, _ = write(arch, os.path.join(OUT, f"{arch}_f32.gguf"))
        model = without_window(model)
        with torch.no_grad():
            t[f"{arch}_f32"] = model(input_ids=ids).logits
    model, deq = write("qwen3", os.path.join(OUT, "qwen3_q8_0.gguf"), q8=True)
    sd = model.state_dict()
    sd.update(deq)
    model.load_state_dict(sd)
    model = without_window(model)
    with torch.no_grad():
        t["qwen3_q8_0"] = model(input_ids=ids).logits
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, "expected.safetensors"))
    write_manifest(OUT, seeds="none (weights from tests/fixtures/models/{qwen2,qwen3}_causal)")


if __name__ == "__main__":
    main()
