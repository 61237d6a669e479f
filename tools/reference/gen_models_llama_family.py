"""Llama-family fixtures: tiny random Qwen2, Qwen3 and Mistral models (causal LM, sequence and token
classification), same batch as the Llama fixtures.

    /root/peft-venv/bin/python tools/reference/gen_models_llama_family.py [qwen2 qwen3 mistral]

Sliding windows are small (4 slots on the 7-token batch; generation runs 8 tokens past it) so the
window really masks keys: Qwen2 slides on layer 1 only (use_sliding_window, max_window_layers=1) and
ties its embeddings, Qwen3 slides on layer 0 only (explicit layer_types) with attention_bias and an
explicit head_dim (12, not hidden / heads = 8), Mistral slides on every layer.
"""
import sys

import torch
import transformers

from model_fixtures import decoder_causal_case, grads_of, save_case

BASE = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6,
            pad_token_id=0, bos_token_id=1, eos_token_id=2)
ARCHS = {
    "qwen2": ("Qwen2", dict(BASE, tie_word_embeddings=True, use_sliding_window=True, sliding_window=4,
                            max_window_layers=1)),
    "qwen3": ("Qwen3", dict(BASE, intermediate_size=32, tie_word_embeddings=False, head_dim=12, attention_bias=True,
                            use_sliding_window=True, sliding_window=4,
                            layer_types=["sliding_attention", "full_attention"])),
    "mistral": ("Mistral", dict(BASE, tie_word_embeddings=False, sliding_window=4)),
}
SEEDS = {"qwen2": 20, "qwen3": 30, "mistral": 40}

IDS = torch.tensor([[5, 17, 33, 9, 41, 12, 7], [0, 0, 23, 8, 50, 3, 19]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])


def classes(arch):
    prefix, cfg = ARCHS[arch]
    get = lambda s: getattr(transformers, prefix + s)  # noqa: E731
    return get("Config"), get("ForCausalLM"), get("ForSequenceClassification"), get("ForTokenClassification"), cfg


def causal(arch):
    Config, CausalLM, _, _, cfg = classes(arch)
    torch.manual_seed(SEEDS[arch])
    c = Config(**cfg)
    model = CausalLM(c).eval()
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    t = decoder_causal_case(model, IDS, MASK, c.hidden_size, c.num_key_value_heads, head_dim, c.num_hidden_layers)
    save_case(f"{arch}_causal", model, t, {"layer_types": getattr(c, "layer_types", None),
                                           "sliding_window": c.sliding_window})


def seqcls(arch):
    Config, _, SeqCls, _, cfg = classes(arch)
    torch.manual_seed(SEEDS[arch] + 1)
    model = SeqCls(Config(**cfg, num_labels=3)).eval()
    ids = torch.tensor([[5, 17, 33, 9, 41, 12, 7], [23, 8, 50, 3, 19, 0, 0]])  # right padded
    mask = (ids != 0).long()
    labels = torch.tensor([2, 0])
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    t = {"input_ids": ids, "attention_mask": mask, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    save_case(f"{arch}_seqcls", model, t)


def tokcls(arch):
    Config, _, _, TokCls, cfg = classes(arch)
    torch.manual_seed(SEEDS[arch] + 2)
    model = TokCls(Config(**cfg, num_labels=5)).eval()
    labels = torch.tensor([[0, 1, 2, 3, 4, 0, 1], [-100, -100, 2, 2, 1, 0, 4]])
    out = model(input_ids=IDS, attention_mask=MASK, labels=labels)
    out.loss.backward()
    t = {"input_ids": IDS, "attention_mask": MASK, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    save_case(f"{arch}_tokcls", model, t)


if __name__ == "__main__":
    for a in sys.argv[1:] or list(ARCHS):
        causal(a)
        seqcls(a)
        tokcls(a)
