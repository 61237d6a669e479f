"""Llama fixtures: tiny random GQA Llama (causal LM, sequence and token classification).

    /root/peft-venv/bin/python tools/reference/gen_models_llama.py
"""
import torch
from transformers import (DynamicCache, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification,
                          LlamaForTokenClassification)

from model_fixtures import grads_of, pattern, save_case

torch.manual_seed(0)
CFG = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
           tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)

IDS = torch.tensor([[5, 17, 33, 9, 41, 12, 7], [0, 0, 23, 8, 50, 3, 19]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])


def base_inputs(cfg):
    return {"input_ids": IDS, "attention_mask": MASK}


def prefix_cache(cfg, P=3, B=2):
    kv, hd = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    keys = [pattern((B, kv, P, hd), 0.5, phase=i) for i in range(cfg.num_hidden_layers)]
    vals = [pattern((B, kv, P, hd), 0.5, phase=10 + i) for i in range(cfg.num_hidden_layers)]
    return keys, vals


def causal():
    cfg = LlamaConfig(**CFG)
    model = LlamaForCausalLM(cfg).eval()
    t = {"input_ids": IDS, "attention_mask": MASK}
    labels = IDS.masked_fill(MASK == 0, -100)
    t["labels"] = labels
    out = model(input_ids=IDS, attention_mask=MASK, labels=labels, output_hidden_states=True)
    t["logits"] = out.logits
    t["last_hidden_state"] = out.hidden_states[-1]
    t["loss"] = out.loss.reshape(1)
    out.loss.backward()
    t.update(grads_of(model))
    model.zero_grad()
    with torch.no_grad():
        emb = pattern((2, 7, cfg.hidden_size), 0.8)
        t["inputs_embeds"] = emb
        t["logits_embeds"] = model(inputs_embeds=emb, attention_mask=MASK).logits
        # Key/value prefix of P=3 positions; the real tokens take positions P.. as transformers
        # gives them when a cache of length P is passed.
        keys, vals = prefix_cache(cfg)
        cache = DynamicCache()
        for i, (k, v) in enumerate(zip(keys, vals)):
            cache.update(k, v, i)
            t[f"prefix_key.{i}"] = k
            t[f"prefix_value.{i}"] = v
        pmask = torch.cat([torch.ones(2, 3, dtype=MASK.dtype), MASK], 1)
        pos = torch.arange(3, 10).unsqueeze(0).expand(2, -1)
        t["prefix_position_ids"] = pos
        t["logits_prefix"] = model(input_ids=IDS, attention_mask=pmask, past_key_values=cache, position_ids=pos).logits
        # Greedy generation from the batch (left padded), 8 new tokens, no EOS stop.
        gen = model.generate(input_ids=IDS, attention_mask=MASK, max_new_tokens=8, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
        t["generated"] = gen
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
