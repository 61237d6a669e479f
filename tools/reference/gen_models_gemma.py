"""Gemma family fixtures: tiny random Gemma 2 and Gemma 3 (text) models (causal LM, sequence and
token classification where transformers has them) and a Gemma 1 causal LM.

    /root/peft-venv/bin/python tools/reference/gen_models_gemma.py

Small sliding windows (4 on a 7-token input, generation runs past it), attention and final logit
soft-capping small enough to bite, and weights drawn with std 0.2 (norm weights included, so
(1 + weight) is exercised) make every Gemma-specific path change the numbers. The causal cases
also hold transformers' bfloat16 logits of the same weights (logits_bf16), where Gemma's norm
order (scale in fp32, cast last) matters.
"""
import copy

import torch
from transformers import (Gemma2Config, Gemma2ForCausalLM, Gemma2ForSequenceClassification,
                          Gemma2ForTokenClassification, Gemma3ForCausalLM, Gemma3TextConfig,
                          Gemma3TextForSequenceClassification, GemmaConfig, GemmaForCausalLM)

from model_fixtures import decoder_causal_case, grads_of, save_case

COMMON = dict(vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=12, max_position_embeddings=64, rms_norm_eps=1e-6,
              pad_token_id=0, bos_token_id=1, eos_token_id=2)
GEMMA2 = dict(COMMON, query_pre_attn_scalar=20, sliding_window=4, attn_logit_softcapping=2.0,
              final_logit_softcapping=3.0, layer_types=["sliding_attention", "full_attention"])
GEMMA3 = dict(COMMON, query_pre_attn_scalar=20, sliding_window=4, final_logit_softcapping=3.0,
              layer_types=["sliding_attention", "full_attention"], tie_word_embeddings=False,
              rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000.0},
                               "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}})
GEMMA1 = dict(COMMON, hidden_act="gelu_pytorch_tanh")

IDS = torch.tensor([[5, 17, 33, 9, 41, 12, 7], [0, 0, 23, 8, 50, 3, 19]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])


def randomize(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def with_bf16(model, t):
    m = copy.deepcopy(model).to(torch.bfloat16)
    with torch.no_grad():
        t["logits_bf16"] = m(input_ids=IDS, attention_mask=MASK).logits.float()
    return t


def causal(name, cls, cfg, seed):
    model = randomize(cls(cfg), seed)
    t = decoder_causal_case(model, IDS, MASK, cfg.hidden_size, cfg.num_key_value_heads, cfg.head_dim,
                            cfg.num_hidden_layers)
    save_case(name, model, with_bf16(model, t))


def seqcls(name, cls, cfg, seed):
    model = randomize(cls(cfg), seed)
    ids = torch.tensor([[5, 17, 33, 9, 41, 12, 7], [23, 8, 50, 3, 19, 0, 0]])  # right padded
    mask = (ids != 0).long()
    labels = torch.tensor([2, 0])
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    t = {"input_ids": ids, "attention_mask": mask, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    save_case(name, model, t)


def tokcls(name, cls, cfg, seed):
    model = randomize(cls(cfg), seed)
    labels = torch.tensor([[0, 1, 2, 3, 4, 0, 1], [-100, -100, 2, 2, 1, 0, 4]])
    out = model(input_ids=IDS, attention_mask=MASK, labels=labels)
    out.loss.backward()
    t = {"input_ids": IDS, "attention_mask": MASK, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    save_case(name, model, t)


if __name__ == "__main__":
    causal("gemma2_causal", Gemma2ForCausalLM, Gemma2Config(**GEMMA2), 1)
    seqcls("gemma2_seqcls", Gemma2ForSequenceClassification, Gemma2Config(**GEMMA2, num_labels=3), 2)
    tokcls("gemma2_tokcls", Gemma2ForTokenClassification, Gemma2Config(**GEMMA2, num_labels=5), 3)
    causal("gemma3_causal", Gemma3ForCausalLM, Gemma3TextConfig(**GEMMA3), 4)
    seqcls("gemma3_seqcls", Gemma3TextForSequenceClassification, Gemma3TextConfig(**GEMMA3, num_labels=3), 5)
    causal("gemma_causal", GemmaForCausalLM, GemmaConfig(**GEMMA1), 6)
