"""BERT fixtures: tiny random BertModel / BertForSequenceClassification / BertForTokenClassification
(+ a BertForPreTraining checkpoint whose cls.* keys the C++ loader must report).

    /root/peft-venv/bin/python tools/reference/gen_models_bert.py

The key/value prefix case (the P-Tuning v2 seam) is computed by transformers itself: BertModel
accepts `past_key_values` as an encoder (is_decoder=False), concatenates the cached keys/values
before the softmax and takes a [B, P + T] padding mask. Its default positions then start at P, so
the fixture passes them explicitly (`prefix_position_ids`). The result is cross-checked against a
small explicit eager re-implementation below (`manual_bert`) before it is written.
"""
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import (BertConfig, BertForPreTraining, BertForSequenceClassification,
                          BertForTokenClassification, BertModel, DynamicCache)

from model_fixtures import MODELS, grads_of, pattern, save_case

CFG = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
           hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
           max_position_embeddings=32, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0)

# A sentence pair ([CLS] a [SEP] b [SEP]) and a shorter right-padded one.
IDS = torch.tensor([[2, 17, 33, 9, 3, 41, 12, 7, 3], [2, 23, 8, 50, 3, 19, 3, 0, 0]])
TYPES = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1, 0, 0]])
MASK = (IDS != 0).long()
P = 3


def perturb(model):
    """HF's init leaves biases at 0 and LayerNorms at (1, 0); move every parameter off those
    values deterministically so that each one is exercised."""
    with torch.no_grad():
        for i, (_, p) in enumerate(model.named_parameters()):
            p.add_(pattern(p.shape, 0.05, phase=0.37 * i))


def prefix_kv(cfg, B=2):
    H, D = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    keys = [pattern((B, H, P, D), 0.5, phase=i) for i in range(cfg.num_hidden_layers)]
    vals = [pattern((B, H, P, D), 0.5, phase=10 + i) for i in range(cfg.num_hidden_layers)]
    return keys, vals


def manual_bert(bert, ids, types, mask, pos, keys, vals):
    """Explicit eager BERT encoder with a per-layer key/value prefix (mask covers P + T)."""
    c = bert.config
    H, D = c.num_attention_heads, c.hidden_size // c.num_attention_heads
    e = bert.embeddings
    h = e.word_embeddings(ids) + e.token_type_embeddings(types) + e.position_embeddings(pos)
    h = e.LayerNorm(h)
    B, T, _ = h.shape
    bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    for i, layer in enumerate(bert.encoder.layer):
        a = layer.attention.self
        split = lambda x: x.view(B, T, H, D).transpose(1, 2)
        q, k, v = split(a.query(h)), split(a.key(h)), split(a.value(h))
        k = torch.cat([keys[i], k], 2)
        v = torch.cat([vals[i], v], 2)
        s = torch.softmax(q @ k.transpose(2, 3) / D ** 0.5 + bias, -1)
        o = (s @ v).transpose(1, 2).reshape(B, T, -1)
        o = layer.attention.output.LayerNorm(layer.attention.output.dense(o) + h)
        f = layer.output.LayerNorm(layer.output.dense(layer.intermediate(o)) + o)
        h = f
    return h, torch.tanh(bert.pooler.dense(h[:, 0]))


def base():
    torch.manual_seed(0)
    cfg = BertConfig(**CFG)
    model = BertModel(cfg).eval()
    perturb(model)
    t = {"input_ids": IDS, "token_type_ids": TYPES, "attention_mask": MASK}
    out = model(input_ids=IDS, token_type_ids=TYPES, attention_mask=MASK)
    t["last_hidden_state"] = out.last_hidden_state
    t["pooler_output"] = out.pooler_output
    # A scalar of both outputs for the gradients of every parameter.
    wh = pattern(out.last_hidden_state.shape, 1.0, phase=3.0)
    wp = pattern(out.pooler_output.shape, 1.0, phase=5.0)
    t["loss_weight_hidden"], t["loss_weight_pooler"] = wh, wp
    loss = (out.last_hidden_state * wh).sum() + (out.pooler_output * wp).sum()
    t["loss"] = loss.reshape(1)
    loss.backward()
    t.update(grads_of(model))
    model.zero_grad()
    with torch.no_grad():
        emb = pattern((2, 9, cfg.hidden_size), 0.8)
        t["inputs_embeds"] = emb
        o = model(inputs_embeds=emb, attention_mask=MASK)  # token_type_ids default to zeros
        t["last_hidden_state_embeds"], t["pooler_output_embeds"] = o.last_hidden_state, o.pooler_output

        keys, vals = prefix_kv(cfg)
        cache = DynamicCache()
        for i, (k, v) in enumerate(zip(keys, vals)):
            cache.update(k, v, i)
            t[f"prefix_key.{i}"] = k
            t[f"prefix_value.{i}"] = v
        pmask = torch.cat([torch.ones(2, P, dtype=MASK.dtype), MASK], 1)
        pos = torch.arange(P, P + IDS.shape[1]).unsqueeze(0).expand(2, -1)
        t["prefix_position_ids"] = pos
        o = model(input_ids=IDS, token_type_ids=TYPES, attention_mask=pmask, past_key_values=cache, position_ids=pos)
        mh, mp = manual_bert(model, IDS, TYPES, pmask, pos, keys, vals)
        dh = (mh - o.last_hidden_state).abs().max().item()
        dp = (mp - o.pooler_output).abs().max().item()
        assert dh < 1e-5 and dp < 1e-5, (dh, dp)
        t["last_hidden_state_prefix"], t["pooler_output_prefix"] = o.last_hidden_state, o.pooler_output
    save_case("bert_base", model, t, {
        "prefix_note": "prefix outputs from transformers BertModel(past_key_values=DynamicCache of the prefix, "
                       "attention_mask over P+T, position_ids=P..P+T-1); cross-checked against an explicit eager "
                       f"re-implementation (max |diff| hidden {dh:.2e}, pooler {dp:.2e})",
        "loss_note": "base loss = sum(last_hidden_state * loss_weight_hidden) + sum(pooler_output * loss_weight_pooler)"})


def seqcls(name, num_labels, labels):
    torch.manual_seed(1)
    cfg = BertConfig(**CFG, num_labels=num_labels)
    model = BertForSequenceClassification(cfg).eval()
    perturb(model)
    out = model(input_ids=IDS, token_type_ids=TYPES, attention_mask=MASK, labels=labels)
    out.loss.backward()
    t = {"input_ids": IDS, "token_type_ids": TYPES, "attention_mask": MASK, "labels": labels,
         "logits": out.logits, "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    with torch.no_grad():
        b = model.bert(input_ids=IDS, token_type_ids=TYPES, attention_mask=MASK)
        t["last_hidden_state"], t["pooler_output"] = b.last_hidden_state, b.pooler_output
    save_case(name, model, t, {"problem_type": model.config.problem_type})


def tokcls():
    torch.manual_seed(2)
    cfg = BertConfig(**CFG, num_labels=5)
    model = BertForTokenClassification(cfg).eval()
    perturb(model)
    labels = torch.tensor([[-100, 1, 2, 3, -100, 0, 1, 4, -100], [-100, 2, 2, 1, -100, 0, -100, -100, -100]])
    out = model(input_ids=IDS, token_type_ids=TYPES, attention_mask=MASK, labels=labels)
    out.loss.backward()
    t = {"input_ids": IDS, "token_type_ids": TYPES, "attention_mask": MASK, "labels": labels,
         "logits": out.logits, "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    save_case("bert_tokcls", model, t)


def pretraining():
    """A BertForPreTraining checkpoint (cls.* heads) with the legacy persistent
    bert.embeddings.position_ids buffer added, as older hub checkpoints carry it."""
    torch.manual_seed(3)
    cfg = BertConfig(**CFG)
    model = BertForPreTraining(cfg).eval()
    perturb(model)
    with torch.no_grad():
        b = model.bert(input_ids=IDS, token_type_ids=TYPES, attention_mask=MASK)
    t = {"input_ids": IDS, "token_type_ids": TYPES, "attention_mask": MASK,
         "last_hidden_state": b.last_hidden_state, "pooler_output": b.pooler_output}
    save_case("bert_pretraining", model, t, {"note": "model.safetensors also carries bert.embeddings.position_ids"})
    path = os.path.join(MODELS, "bert_pretraining", "model.safetensors")
    w = load_file(path)
    w["bert.embeddings.position_ids"] = torch.arange(cfg.max_position_embeddings).unsqueeze(0)
    save_file(w, path, metadata={"format": "pt"})


if __name__ == "__main__":
    base()
    seqcls("bert_seqcls", 3, torch.tensor([2, 0]))
    seqcls("bert_seqcls_regression", 1, torch.tensor([0.7, -1.3]))
    # Float multi-hot labels: transformers picks multi_label_classification (BCE with logits).
    seqcls("bert_seqcls_multilabel", 3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    tokcls()
    pretraining()
