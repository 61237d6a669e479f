"""Llama fixtures: tiny random GQA Llama (causal LM, sequence and token classification).

    /root/peft-venv/bin/python tools/reference/gen_models_llama.py
"""
import torch
from transformers import (LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification,
                          LlamaForTokenClassification)

from model_fixtures import decoder_causal_case, grads_of, save_case

torch.manual_seed(0)
CFG = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
           tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)

IDS = torch.tensor([[5, 17, 33, 9, 41, 12, 7], [0, 0, 23, 8, 50, 3, 19]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])


def base_inputs(cfg):
    return {"input_ids": IDS, "attention_mask": MASK}


def causal():
    cfg = LlamaConfig(**CFG)
    model = LlamaForCausalLM(cfg).eval()
    t = decoder_causal_case(model, IDS, MASK, cfg.hidden_size, cfg.num_key_value_heads,
                            cfg.hidden_size // cfg.num_attention_heads, cfg.num_hidden_layers)
    save_case("llama_causal", model, t)


def seqcls():
    cfg = LlamaConfig(**CFG, num_labels=3)
    model = LlamaForSequenceClassification(cfg).eval()
    ids = torch.tensor([[5, 17, 33, 9, 41, 12, 7], [23, 8, 50, 3, 19, 0, 0]])  # right padded
    mask = (ids != 0).long()
    labels = torch.tensor([2, 0])
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    t = {"input_ids": ids, "attention_mask": mask, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    save_case("llama_seqcls", model, t)


def tokcls():
    cfg = LlamaConfig(**CFG, num_labels=5)
    model = LlamaForTokenClassification(cfg).eval()
    labels = torch.tensor([[0, 1, 2, 3, 4, 0, 1], [-100, -100, 2, 2, 1, 0, 4]])
    out = model(input_ids=IDS, attention_mask=MASK, labels=labels)
    out.loss.backward()
    t = {"input_ids": IDS, "attention_mask": MASK, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    save_case("llama_tokcls", model, t)


if __name__ == "__main__":
    causal()
    seqcls()
    tokcls()
