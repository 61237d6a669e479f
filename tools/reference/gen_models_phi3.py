"""Phi-3 fixtures: tiny random GQA Phi-3 models (fused qkv_proj / gate_up_proj).

phi3_causal: default rope on half of each head (partial_rotary_factor 0.5) and a sliding window
of 5; phi3_longrope: LongRoPE ("su") on 3/4 of each head with original_max_position_embeddings 8,
so the 7-token forwards use the short factors and the key/value-prefix forward (positions 3..9),
the 12-token forward and the generation past 8 tokens (which transformers re-runs without its
cache once the ids reach 9) use the long ones; phi3_seqcls / phi3_tokcls: the classification heads.

    /root/peft-venv/bin/python tools/reference/gen_models_phi3.py
"""
import torch
from transformers import (Phi3Config, Phi3ForCausalLM, Phi3ForSequenceClassification,
                          Phi3ForTokenClassification)

from model_fixtures import decoder_causal_case, grads_of, save_case

CFG = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, max_position_embeddings=64, original_max_position_embeddings=64,
           rms_norm_eps=1e-5, rope_theta=10000.0, partial_rotary_factor=0.5, sliding_window=5,
           tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
LONGROPE = dict(CFG, partial_rotary_factor=0.75, sliding_window=None, original_max_position_embeddings=8,
                rope_scaling={"type": "su", "original_max_position_embeddings": 8, "short_factor": [1.0, 1.5, 3.0], "long_factor": [2.0, 5.0, 11.0]})

IDS = torch.tensor([[5, 17, 33, 9, 41, 12, 7], [0, 0, 23, 8, 50, 3, 19]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])
LONG_IDS = torch.tensor([[5, 17, 33, 9, 41, 12, 7, 60, 2, 14, 38, 11], [0, 0, 0, 23, 8, 50, 3, 19, 44, 6, 27, 31]])


def causal(name, cfg_kwargs):
    torch.manual_seed(0)
    cfg = Phi3Config(**cfg_kwargs)
    model = Phi3ForCausalLM(cfg).eval()
    hd = cfg.hidden_size // cfg.num_attention_heads
    t = decoder_causal_case(model, IDS, MASK, cfg.hidden_size, cfg.num_key_value_heads, hd, cfg.num_hidden_layers)
    with torch.no_grad():
        mask = (LONG_IDS != 0).long()
        t["long_input_ids"] = LONG_IDS
        t["long_attention_mask"] = mask
        t["logits_long"] = model(input_ids=LONG_IDS, attention_mask=mask).logits
    save_case(name, model, t)


def seqcls():
    torch.manual_seed(1)
    cfg = Phi3Config(**CFG, num_labels=3)
    model = Phi3ForSequenceClassification(cfg).eval()
    ids = torch.tensor([[5, 17, 33, 9, 41, 12, 7], [23, 8, 50, 3, 19, 0, 0]])  # right padded
    mask = (ids != 0).long()
    labels = torch.tensor([2, 0])
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    t = {"input_ids": ids, "attention_mask": mask, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    save_case("phi3_seqcls", model, t)


def tokcls():
    torch.manual_seed(2)
    cfg = Phi3Config(**CFG, num_labels=5)
    model = Phi3ForTokenClassification(cfg).eval()
    labels = torch.tensor([[0, 1, 2, 3, 4, 0, 1], [-100, -100, 2, 2, 1, 0, 4]])
    out = model(input_ids=IDS, attention_mask=MASK, labels=labels)
    out.loss.backward()
    t = {"input_ids": IDS, "attention_mask": MASK, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    save_case("phi3_tokcls", model, t)


if __name__ == "__main__":
    causal("phi3_causal", CFG)
    causal("phi3_longrope", LONGROPE)
    seqcls()
    tokcls()
