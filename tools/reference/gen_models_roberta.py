"""RoBERTa / XLM-RoBERTa fixtures: tiny random RobertaModel, RobertaForSequenceClassification
(single-label, regression, multi-label), RobertaForTokenClassification, XLMRobertaModel.

    /root/peft-venv/bin/python tools/reference/gen_models_roberta.py

Positions are never passed: transformers numbers them from the ids (pad_token_id + 1 + count of
non-padding tokens, padding at pad_token_id) and, with a key/value prefix held as a cache of length
P, after those P positions; from inputs_embeds they run pad_token_id + 1, pad_token_id + 2, ...
The batch is right-padded so both rules are exercised.
"""
import torch
from transformers import (DynamicCache, RobertaConfig, RobertaForSequenceClassification,
                          RobertaForTokenClassification, RobertaModel, XLMRobertaConfig, XLMRobertaModel)

from model_fixtures import grads_of, pattern, save_case

CFG = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
           hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
           max_position_embeddings=20, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
           bos_token_id=0, eos_token_id=2)

# <s> A </s></s> B </s> and a shorter right-padded pair (pad id 1).
IDS = torch.tensor([[0, 17, 33, 9, 2, 2, 41, 12, 7, 2], [0, 23, 8, 50, 2, 2, 19, 2, 1, 1]])
MASK = (IDS != 1).long()
P = 3


def perturb(model):
    """Moves every parameter off HF's init (zero biases, unit LayerNorms, zero padding rows)."""
    with torch.no_grad():
        for i, (_, p) in enumerate(model.named_parameters()):
            p.add_(pattern(p.shape, 0.05, phase=0.37 * i))


def prefix_cache(cfg, t, B=2):
    H, D = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    cache = DynamicCache()
    for i in range(cfg.num_hidden_layers):
        k, v = pattern((B, H, P, D), 0.5, phase=i), pattern((B, H, P, D), 0.5, phase=10 + i)
        cache.update(k, v, i)
        t[f"prefix_key.{i}"], t[f"prefix_value.{i}"] = k, v
    return cache


def base():
    torch.manual_seed(0)
    cfg = RobertaConfig(**CFG)
    model = RobertaModel(cfg).eval()
    perturb(model)
    t = {"input_ids": IDS, "attention_mask": MASK}
    out = model(input_ids=IDS, attention_mask=MASK)
    t["last_hidden_state"], t["pooler_output"] = out.last_hidden_state, out.pooler_output
    wh = pattern(out.last_hidden_state.shape, 1.0, phase=3.0)
    wp = pattern(out.pooler_output.shape, 1.0, phase=5.0)
    t["loss_weight_hidden"], t["loss_weight_pooler"] = wh, wp
    loss = (out.last_hidden_state * wh).sum() + (out.pooler_output * wp).sum()
    t["loss"] = loss.reshape(1)
    loss.backward()
    t.update(grads_of(model))
    model.zero_grad()
    with torch.no_grad():
        t["position_ids"] = model.embeddings.create_position_ids_from_input_ids(IDS, 1)
        emb = pattern((2, IDS.shape[1], cfg.hidden_size), 0.8)
        t["inputs_embeds"] = emb
        o = model(inputs_embeds=emb, attention_mask=MASK)
        t["last_hidden_state_embeds"], t["pooler_output_embeds"] = o.last_hidden_state, o.pooler_output
        cache = prefix_cache(cfg, t)
        pmask = torch.cat([torch.ones(2, P, dtype=MASK.dtype), MASK], 1)
        o = model(input_ids=IDS, attention_mask=pmask, past_key_values=cache)
        t["prefix_position_ids"] = model.embeddings.create_position_ids_from_input_ids(IDS, 1, P)
        t["last_hidden_state_prefix"], t["pooler_output_prefix"] = o.last_hidden_state, o.pooler_output
    save_case("roberta_base", model, t, {
        "prefix_note": "prefix outputs from transformers RobertaModel(past_key_values=DynamicCache of the prefix, "
                       "attention_mask over P+T, default positions: after the P prefix positions)",
        "loss_note": "base loss = sum(last_hidden_state * loss_weight_hidden) + sum(pooler_output * loss_weight_pooler)"})


def seqcls(name, num_labels, labels, seed):
    torch.manual_seed(seed)
    cfg = RobertaConfig(**CFG, num_labels=num_labels)
    model = RobertaForSequenceClassification(cfg).eval()
    perturb(model)
    out = model(input_ids=IDS, attention_mask=MASK, labels=labels)
    out.loss.backward()
    t = {"input_ids": IDS, "attention_mask": MASK, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    with torch.no_grad():
        t["last_hidden_state"] = model.roberta(input_ids=IDS, attention_mask=MASK).last_hidden_state
    # problem_type as transformers inferred it on this call (config.json keeps null).
    save_case(name, model, t, {"problem_type": model.config.problem_type})


def tokcls():
    torch.manual_seed(4)
    cfg = RobertaConfig(**CFG, num_labels=5)
    model = RobertaForTokenClassification(cfg).eval()
    perturb(model)
    labels = torch.tensor([[-100, 1, 2, 3, -100, -100, 0, 1, 4, -100], [-100, 2, 2, 1, -100, -100, 0, -100, -100, -100]])
    out = model(input_ids=IDS, attention_mask=MASK, labels=labels)
    out.loss.backward()
    t = {"input_ids": IDS, "attention_mask": MASK, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    save_case("roberta_tokcls", model, t)


def xlmr():
    torch.manual_seed(5)
    model = XLMRobertaModel(XLMRobertaConfig(**CFG)).eval()
    perturb(model)
    with torch.no_grad():
        out = model(input_ids=IDS, attention_mask=MASK)
    save_case("xlm_roberta_base", model, {"input_ids": IDS, "attention_mask": MASK,
                                          "last_hidden_state": out.last_hidden_state,
                                          "pooler_output": out.pooler_output})


if __name__ == "__main__":
    base()
    seqcls("roberta_seqcls", 3, torch.tensor([2, 0]), 1)
    seqcls("roberta_seqcls_regression", 1, torch.tensor([0.7, -1.3]), 2)
    seqcls("roberta_seqcls_multilabel", 3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), 3)
    tokcls()
    xlmr()
