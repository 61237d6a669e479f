"""GPT-2 fixtures: tiny random GPT-2 (causal LM, sequence and token classification).

    /root/peft-venv/bin/python tools/reference/gen_models_gpt2.py

transformers' default attention (SDPA) is used, as users get it; the C++ side matches it
(including zero outputs for fully masked left-padding query rows).
"""
import torch
from transformers import (GPT2Config, GPT2ForSequenceClassification, GPT2ForTokenClassification,
                          GPT2LMHeadModel)

from model_fixtures import decoder_causal_case, grads_of, save_case

# n_inner=64 keeps the causal fixture small; the classification cases use the default (4 * n_embd).
CFG = dict(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2)

IDS = torch.tensor([[5, 17, 33, 9, 41, 12, 7], [0, 0, 23, 8, 50, 3, 19]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])


def causal():
    torch.manual_seed(0)
    cfg = GPT2Config(**CFG, n_inner=64)
    model = GPT2LMHeadModel(cfg).eval()
    t = decoder_causal_case(model, IDS, MASK, cfg.n_embd, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.n_layer)
    save_case("gpt2_causal", model, t)


def seqcls():
    torch.manual_seed(1)
    # Also covers scale_attn_by_inverse_layer_idx.
    cfg = GPT2Config(**CFG, num_labels=3, pad_token_id=0, scale_attn_by_inverse_layer_idx=True)
    model = GPT2ForSequenceClassification(cfg).eval()
    ids = torch.tensor([[5, 17, 33, 9, 41, 12, 7], [23, 8, 50, 3, 19, 0, 0]])  # right padded
    mask = (ids != 0).long()
    labels = torch.tensor([2, 0])
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    t = {"input_ids": ids, "attention_mask": mask, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    save_case("gpt2_seqcls", model, t)


def tokcls():
    torch.manual_seed(2)
    cfg = GPT2Config(**CFG, num_labels=5, activation_function="gelu")
    model = GPT2ForTokenClassification(cfg).eval()
    labels = torch.tensor([[0, 1, 2, 3, 4, 0, 1], [-100, -100, 2, 2, 1, 0, 4]])
    out = model(input_ids=IDS, attention_mask=MASK, labels=labels)
    out.loss.backward()
    t = {"input_ids": IDS, "attention_mask": MASK, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    save_case("gpt2_tokcls", model, t)


if __name__ == "__main__":
    causal()
    seqcls()
    tokcls()
