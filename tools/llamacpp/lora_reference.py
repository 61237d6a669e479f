"""llama.cpp's own LoRA path end to end, as the reference for peft.cpp's GGUF LoRA export: a PEFT LoRA
adapter (random non-zero B) on an HF folder, converted by llama.cpp's convert_lora_to_gguf.py, applied
by llama.cpp (dump_logits --lora) to the base GGUF and compared with PEFT's logits.

    python tools/llamacpp/lora_reference.py [--base-hf tests/fixtures/gguf/models/tiny_llama/hf]
        [--base-gguf tests/fixtures/gguf/models/tiny_llama/tiny_llama_f32.gguf] [--out /tmp/lora_ref]
        [--scale 0.5]

Writes OUT/adapter (PEFT), OUT/adapter.gguf (llama.cpp's converter), OUT/peft_logits.safetensors
(input_ids, logits; logits_scaled with the adapter scaled by --scale) and prints the comparisons; the
adapter.gguf's metadata and tensor names are what a peft.cpp export should match. Developer tooling only.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from compare_logits import compare, llamacpp_logits  # noqa: E402

LLAMACPP_SRC = os.environ.get("LLAMACPP_SRC", "/work/dl/llama_cpp_python-0.3.36/vendor/llama.cpp")
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-hf", default=os.path.join(ROOT, "tests/fixtures/gguf/models/tiny_llama/hf"))
    ap.add_argument("--base-gguf", default=os.path.join(ROOT, "tests/fixtures/gguf/models/tiny_llama/tiny_llama_f32.gguf"))
    ap.add_argument("--out", default="/tmp/lora_ref")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=8.0)
    ap.add_argument("--scale", type=float, default=0.5)
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file
    from transformers import LlamaForCausalLM

    os.makedirs(args.out, exist_ok=True)
    model = LlamaForCausalLM.from_pretrained(args.base_hf, dtype=torch.float32, attn_implementation="eager").eval()
    torch.manual_seed(5)
    pm = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=args.alpha, target_modules=MODULES,
                                          lora_dropout=0.0))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.1)  # PEFT initialises B to zero: the adapter would do nothing
    pm.save_pretrained(os.path.join(args.out, "adapter"))
    ids = torch.tensor([[1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315]])
    with torch.no_grad():
        logits = pm(input_ids=ids).logits[0]
        for m in pm.modules():  # PEFT's scaling = alpha / r, times the user's scale
            if hasattr(m, "scaling") and isinstance(m.scaling, dict) and "default" in m.scaling:
                m.scaling["default"] *= args.scale
        scaled = pm(input_ids=ids).logits[0]
    save_file({"input_ids": ids[0].contiguous(), "logits": logits.contiguous(), "logits_scaled": scaled.contiguous()},
              os.path.join(args.out, "peft_logits.safetensors"))
    gguf_path = os.path.join(args.out, "adapter.gguf")
    subprocess.run([sys.executable, os.path.join(LLAMACPP_SRC, "convert_lora_to_gguf.py"),
                    os.path.join(args.out, "adapter"), "--base", args.base_hf, "--outtype", "f32", "--outfile", gguf_path],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = llamacpp_logits(args.base_gguf, ids.numpy())
    with_lora = llamacpp_logits(args.base_gguf, ids.numpy(), gguf_path, 1.0)
    with_scaled = llamacpp_logits(args.base_gguf, ids.numpy(), gguf_path, args.scale)
    for label, ref, got in (("adapter at scale 1", logits, with_lora),
                            (f"adapter at scale {args.scale}", scaled, with_scaled),
                            ("base only (adapter must matter)", logits, base)):
        r = compare(ref.numpy()[None], got)
        print(f"llama.cpp vs PEFT, {label}: max|d|={r['max_abs']:.3g} max rel={r['max_rel']:.3g} argmax {r['argmax_agree']}")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
