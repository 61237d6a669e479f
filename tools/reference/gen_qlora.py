"""QLoRA fixtures (tests/fixtures/qlora/) from bitsandbytes' CPU backend:

quant/expected.safetensors: for each case <c>, the fp32 input <c>.input, bitsandbytes' packed
  bytes <c>.packed, per-block absmax (<c>.absmax, or <c>.absmax_codes + <c>.nested_absmax +
  <c>.offset with double quantisation) and its dequantisation <c>.dequant; case.json lists the
  cases with quant_type / blocksize / double_quant / shape.
  Random weights, edge cases (zeros, odd sizes, a tail block, values on code midpoints) and the
  real stories260K projection weights.
model/: a tiny Llama saved by transformers with load_in_4bit (nf4 + double quant) through
  bitsandbytes (the on-disk "bnb-4bit" format), a PEFT LoRA adapter trained-looking (random B),
  and PEFT's logits for a batch with and without the adapter.

blockwise8/: bitsandbytes' 8-bit blockwise quantiser alone (the double-quantisation step).

Usage: python gen_qlora.py <stories260K HF folder>   (all)  |  python gen_qlora.py blockwise8
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

import bitsandbytes.functional as BF

from common import FIXTURES, write_manifest

OUT = os.path.join(FIXTURES, "qlora")


def dequantize_flat(q, s):
    """bitsandbytes' own pure-torch dequantisation (backends/default), flat blocks of `blocksize`.
    Its native CPU kernel (dequantizeBlockwise4bitCpu) indexes blocks per row and disagrees with
    the quantiser when the last dimension is not a multiple of the block size, so it is not used."""
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute

    absmax = s.absmax
    if s.nested:
        absmax = BF.dequantize_blockwise(s.absmax, s.state2) + s.offset
    code = BF.get_4bit_type(s.quant_type, "cpu")
    out = _dequantize_4bit_compute(q.reshape(-1), absmax, code, s.blocksize, s.shape, torch.float32)
    if s.shape[-1] % s.blocksize == 0:  # where the native kernel is right, both agree
        assert torch.equal(out, BF.dequantize_4bit(q, s))
    return out


def quant_case(t, name, src, w, quant_type, blocksize, double_quant):
    q, s = BF.quantize_4bit(w, blocksize=blocksize, quant_type=quant_type, compress_statistics=double_quant)
    t["input." + src] = w.contiguous()
    t[name + ".packed"] = q.reshape(-1).contiguous()
    if double_quant:
        t[name + ".absmax_codes"] = s.absmax.contiguous()
        t[name + ".nested_absmax"] = s.state2.absmax.contiguous()
        t[name + ".offset"] = s.offset.reshape(1).contiguous()
        t[name + ".nested_quant_map"] = s.state2.code.contiguous()
    else:
        t[name + ".absmax"] = s.absmax.contiguous()
    t[name + ".quant_map"] = s.code.contiguous()
    if name.startswith(("odd", "edge")) or name in ("random_nf4_dq", "random_fp4"):  # bytes equal => dequantisation equal; keep the file small
        t[name + ".dequant"] = dequantize_flat(q, s).contiguous()
    packed = s.as_dict(packed=True)
    key = [k for k in packed if k.startswith("quant_state.")][0]
    t[name + ".quant_state"] = packed[key].contiguous()
    return {"name": name, "input": src, "quant_type": quant_type, "blocksize": blocksize, "double_quant": double_quant,
            "shape": list(w.shape)}


def quant_fixtures(model_dir):
    g = torch.Generator().manual_seed(9)
    t, cases = {}, []
    rnd = torch.randn(48, 160, generator=g) * 0.05  # 120 blocks of 64: one nested block of < 256
    big = torch.randn(129, 128, generator=g)         # 258 blocks: a full and a tail nested block
    odd = torch.randn(7, 37, generator=g)            # 259 values: odd count and a tail block
    edge = torch.randn(8, 64, generator=g)
    edge[0].zero_()                                  # an all-zero block
    code = BF.get_4bit_type("nf4", "cpu")
    mids = (code[:-1] + code[1:]) / 2
    edge[1, :15] = mids                              # exactly on NF4 midpoints (absmax 1)
    edge[1, 15:] = 0.0
    edge[1, 20] = 1.0
    edge[2] = torch.linspace(-3, 3, 64)
    for qt in ("nf4", "fp4"):
        for dq in (False, True):
            sfx = f"{qt}{'_dq' if dq else ''}"
            cases.append(quant_case(t, "random_" + sfx, "random", rnd, qt, 64, dq))
            cases.append(quant_case(t, "odd_" + sfx, "odd", odd, qt, 64, dq))
            cases.append(quant_case(t, "edge_" + sfx, "edge", edge, qt, 64, dq))
    cases.append(quant_case(t, "big_nf4_dq", "big", big, "nf4", 64, True))
    cases.append(quant_case(t, "random_nf4_b128", "random", rnd, "nf4", 128, False))
    cases.append(quant_case(t, "random_nf4_dq_b32", "random", rnd, "nf4", 32, True))
    # Real weights: stories260K projections (attention and MLP, first and last layer).
    sd = load_file(os.path.join(model_dir, "model.safetensors"))
    real = ["model.layers.0.self_attn.k_proj.weight", "model.layers.0.mlp.down_proj.weight",
            "model.layers.4.mlp.up_proj.weight"]
    for k in real:
        short = "stories_" + k.replace("model.layers.", "l").replace(".weight", "").replace(".", "_")
        cases.append(quant_case(t, short + "_nf4_dq", short, sd[k].float(), "nf4", 64, True))
    cases.append(quant_case(t, "stories_l0_mlp_down_proj_fp4", "stories_l0_mlp_down_proj",
                            sd["model.layers.0.mlp.down_proj.weight"].float(), "fp4", 64, False))
    t = {k: v.clone() for k, v in t.items()}  # each input stored once, no shared storage
    d = os.path.join(OUT, "quant")
    os.makedirs(d, exist_ok=True)
    save_file(t, os.path.join(d, "expected.safetensors"))
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump({"cases": cases, "dynamic_map": "bitsandbytes.functional.create_dynamic_map(signed=True)"}, f,
                  indent=2)
        f.write("\n")
    write_manifest(d, seeds="torch.Generator().manual_seed(9)")
    print(f"wrote {d}: {len(cases)} cases")


def blockwise8_fixtures():
    """blockwise8/expected.safetensors: bitsandbytes' CPU quantize_blockwise (the 8-bit dynamic-map
    quantiser double quantisation uses) on its own: input, codes, absmax (block 256). Normal and
    heavy-tailed values (codes near 0 lie closer together than its lookup table's bins), values a
    float step either side of the table's bin edges, an all-zero block and a tail block."""
    g = torch.Generator().manual_seed(11)
    normal = torch.randn(4096, generator=g)
    tiny = torch.randn(4096, generator=g) * torch.rand(4096, generator=g) ** 8
    k = torch.randint(1, 65535, (85 * 30,), generator=g).double()
    edge = ((k - 0.5) / 65535 * 2 - 1).float()
    edges = torch.stack([torch.nextafter(edge, torch.tensor(2.0)), edge, torch.nextafter(edge, torch.tensor(-2.0))], 1)
    edges = torch.cat([edges.reshape(-1, 255), torch.ones(30, 1)], 1).reshape(-1)  # absmax 1 per block
    x = torch.cat([normal, tiny, edges, torch.zeros(256), torch.randn(100, generator=g) * 3]).contiguous()
    q, s = BF.quantize_blockwise(x, blocksize=256)
    t = {"input": x, "codes": q.reshape(-1).contiguous(), "absmax": s.absmax.contiguous(), "code": s.code.contiguous()}
    d = os.path.join(OUT, "blockwise8")
    os.makedirs(d, exist_ok=True)
    save_file(t, os.path.join(d, "expected.safetensors"))
    write_manifest(d, seeds="torch.Generator().manual_seed(11)")
    print(f"wrote {d}: {x.numel()} values")


def linear_fixtures():
    """Linear4bit (nf4 + double quant, fp32 compute): forward and input gradient."""
    import bitsandbytes as bnb

    g = torch.Generator().manual_seed(11)
    t = {}
    # in_features multiples of 64: bitsandbytes' native CPU dequantisation is wrong otherwise (see
    # dequantize_flat), and Linear4bit.forward uses it.
    for name, (i, o, bias) in {"lin_a": (128, 48, True), "lin_b": (64, 72, False)}.items():
        ref = torch.nn.Linear(i, o, bias=bias)
        with torch.no_grad():
            ref.weight.copy_(torch.randn(o, i, generator=g) * 0.1)
            if bias:
                ref.bias.copy_(torch.randn(o, generator=g))
        lin = bnb.nn.Linear4bit(i, o, bias=bias, compute_dtype=torch.float32, compress_statistics=True,
                                quant_type="nf4")
        lin.weight = bnb.nn.Params4bit(ref.weight.data.clone(), requires_grad=False, compress_statistics=True,
                                       quant_type="nf4")
        if bias:
            lin.bias = torch.nn.Parameter(ref.bias.data.clone())
        lin = lin.to("cpu")  # quantises
        assert lin.weight.quant_state is not None, "Linear4bit did not quantise on CPU"
        deq = BF.dequantize_4bit(lin.weight.data, lin.weight.quant_state)
        assert (deq - ref.weight).abs().max() < 0.05
        sd = {k: v.detach().clone() for k, v in lin.state_dict().items()}
        x = torch.randn(3, 5, i, generator=g, requires_grad=True)
        y = lin(x)
        gy = torch.randn(y.shape, generator=g)
        y.backward(gy)
        t[name + ".weight"] = ref.weight.detach().contiguous()
        if bias:
            t[name + ".bias"] = ref.bias.detach().contiguous()
        t[name + ".x"] = x.detach().contiguous()
        t[name + ".y"] = y.detach().contiguous()
        t[name + ".grad_y"] = gy.contiguous()
        t[name + ".grad_x"] = x.grad.detach().contiguous()
        for k, v in sd.items():
            t[name + ".bnb." + k] = v.detach().contiguous()
    d = os.path.join(OUT, "linear")
    os.makedirs(d, exist_ok=True)
    save_file(t, os.path.join(d, "expected.safetensors"))
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump({"atol": 1e-5, "rtol": 1e-4}, f, indent=2)
        f.write("\n")
    write_manifest(d, seeds="torch.Generator().manual_seed(11)")
    print(f"wrote {d}")


def model_fixture():
    """A tiny Llama quantised by transformers (BitsAndBytesConfig nf4 + double quant), saved in the
    pre-quantised format, plus a PEFT LoRA adapter on all linear layers and PEFT's logits."""
    from peft import LoraConfig, get_peft_model
    from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(5)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False)
    full = LlamaForCausalLM(cfg).eval()
    d = os.path.join(OUT, "model")
    fp_dir = os.path.join(d, "base_fp32")
    q_dir = os.path.join(d, "base_bnb4")
    os.makedirs(d, exist_ok=True)
    full.save_pretrained(fp_dir, safe_serialization=True)
    bnb_cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.float32)
    qm = LlamaForCausalLM.from_pretrained(fp_dir, quantization_config=bnb_cfg, dtype=torch.float32,
                                          device_map="cpu").eval()
    qm.save_pretrained(q_dir, safe_serialization=True)
    for p in (fp_dir, q_dir):
        gc = os.path.join(p, "generation_config.json")
        if os.path.exists(gc):
            os.remove(gc)
    lcfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0, task_type="CAUSAL_LM")
    pm = get_peft_model(qm, lcfg)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape) * 0.1)
    # Train mode with no dropout: in eval mode bitsandbytes' CPU path repacks the weight with a
    # bf16 absmax for its own kernel; train mode keeps the exact fp32 dequantise-then-matmul.
    pm.train()
    ids = torch.tensor([[1, 5, 9, 33, 7, 60, 2, 50], [0, 0, 3, 17, 44, 63, 12, 8]])
    mask = torch.tensor([[1] * 8, [0, 0] + [1] * 6])
    t = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        t["logits_lora"] = pm(input_ids=ids, attention_mask=mask).logits
        with pm.disable_adapter():
            t["logits_base"] = pm(input_ids=ids, attention_mask=mask).logits
        t["logits_fp32"] = full(input_ids=ids, attention_mask=mask).logits
    pm.save_pretrained(os.path.join(d, "adapter"))
    os.remove(os.path.join(d, "adapter", "README.md"))
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(d, "expected.safetensors"))
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump({"atol": 1e-4, "rtol": 0.0}, f, indent=2)
        f.write("\n")
    write_manifest(d, seeds="torch.manual_seed(5)")
    print(f"wrote {d}")


if __name__ == "__main__":
    if sys.argv[1:] == ["blockwise8"]:
        blockwise8_fixtures()
        sys.exit(0)
    quant_fixtures(sys.argv[1])
    blockwise8_fixtures()
    linear_fixtures()
    model_fixture()
