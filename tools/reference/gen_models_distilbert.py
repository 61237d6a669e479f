"""DistilBERT fixtures: tiny random DistilBertModel, DistilBertForSequenceClassification
(single-label, regression, multi-label), DistilBertForTokenClassification.

    /root/peft-venv/bin/python tools/reference/gen_models_distilbert.py

transformers' DistilBERT takes no past_key_values, so the key/value prefix case comes from the
explicit eager re-implementation below (`manual_distilbert`, first checked to equal transformers
without a prefix): per layer the prefix keys/values go before the real ones, the mask covers
P + T, positions stay 0..T-1. The base case also holds the sinusoidal position table that
DistilBertModel(sinusoidal_pos_embds=True) initialises.
"""
import torch
from transformers import (DistilBertConfig, DistilBertForSequenceClassification, DistilBertForTokenClassification,
                          DistilBertModel)

from model_fixtures import grads_of, pattern, save_case

CFG = dict(vocab_size=64, dim=32, n_layers=2, n_heads=4, hidden_dim=37, activation="gelu", dropout=0.1,
           attention_dropout=0.1, seq_classif_dropout=0.2, max_position_embeddings=20, pad_token_id=0)

# [CLS] a [SEP] b [SEP] and a shorter right-padded one.
IDS = torch.tensor([[2, 17, 33, 9, 3, 41, 12, 7, 3], [2, 23, 8, 50, 3, 19, 3, 0, 0]])
MASK = (IDS != 0).long()
P = 3


def perturb(model):
    with torch.no_grad():
        for i, (_, p) in enumerate(model.named_parameters()):
            p.add_(pattern(p.shape, 0.05, phase=0.37 * i))


def manual_distilbert(m, ids, mask, keys=None, vals=None):
    """Explicit eager DistilBERT encoder; mask covers P + T when keys are given."""
    c = m.config
    H, D = c.n_heads, c.dim // c.n_heads
    e = m.embeddings
    B, T = ids.shape
    h = e.LayerNorm(e.word_embeddings(ids) + e.position_embeddings(torch.arange(T).unsqueeze(0)))
    bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    for i, layer in enumerate(m.transformer.layer):
        a = layer.attention
        split = lambda x: x.view(B, T, H, D).transpose(1, 2)
        q, k, v = split(a.q_lin(h)), split(a.k_lin(h)), split(a.v_lin(h))
        if keys is not None:
            k, v = torch.cat([keys[i], k], 2), torch.cat([vals[i], v], 2)
        s = torch.softmax(q @ k.transpose(2, 3) / D ** 0.5 + bias, -1)
        o = a.out_lin((s @ v).transpose(1, 2).reshape(B, T, -1))
        o = layer.sa_layer_norm(o + h)
        h = layer.output_layer_norm(layer.ffn.lin2(torch.nn.functional.gelu(layer.ffn.lin1(o))) + o)
    return h


def base():
    torch.manual_seed(0)
    cfg = DistilBertConfig(**CFG)
    model = DistilBertModel(cfg).eval()
    perturb(model)
    t = {"input_ids": IDS, "attention_mask": MASK}
    out = model(input_ids=IDS, attention_mask=MASK)
    t["last_hidden_state"] = out.last_hidden_state
    wh = pattern(out.last_hidden_state.shape, 1.0, phase=3.0)
    t["loss_weight_hidden"] = wh
    loss = (out.last_hidden_state * wh).sum()
    t["loss"] = loss.reshape(1)
    loss.backward()
    t.update(grads_of(model))
    model.zero_grad()
    with torch.no_grad():
        emb = pattern((2, IDS.shape[1], cfg.dim), 0.8)
        t["inputs_embeds"] = emb
        t["last_hidden_state_embeds"] = model(inputs_embeds=emb, attention_mask=MASK).last_hidden_state
        d0 = (manual_distilbert(model, IDS, MASK) - out.last_hidden_state).abs().max().item()
        assert d0 < 1e-5, d0
        H, D = cfg.n_heads, cfg.dim // cfg.n_heads
        keys = [pattern((2, H, P, D), 0.5, phase=i) for i in range(cfg.n_layers)]
        vals = [pattern((2, H, P, D), 0.5, phase=10 + i) for i in range(cfg.n_layers)]
        for i in range(cfg.n_layers):
            t[f"prefix_key.{i}"], t[f"prefix_value.{i}"] = keys[i], vals[i]
        pmask = torch.cat([torch.ones(2, P, dtype=MASK.dtype), MASK], 1)
        t["last_hidden_state_prefix"] = manual_distilbert(model, IDS, pmask, keys, vals)
        sin = DistilBertModel(DistilBertConfig(**CFG, sinusoidal_pos_embds=True))
        t["sinusoidal_position_embeddings"] = sin.embeddings.position_embeddings.weight
    save_case("distilbert_base", model, t, {
        "prefix_note": "transformers' DistilBERT takes no past_key_values: the prefix outputs come from an explicit "
                       f"eager re-implementation (equal to transformers without a prefix: max |diff| {d0:.2e}); "
                       "positions stay 0..T-1",
        "loss_note": "base loss = sum(last_hidden_state * loss_weight_hidden)"})


def seqcls(name, num_labels, labels, seed):
    torch.manual_seed(seed)
    model = DistilBertForSequenceClassification(DistilBertConfig(**CFG, num_labels=num_labels)).eval()
    perturb(model)
    out = model(input_ids=IDS, attention_mask=MASK, labels=labels)
    out.loss.backward()
    t = {"input_ids": IDS, "attention_mask": MASK, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    with torch.no_grad():
        t["last_hidden_state"] = model.distilbert(input_ids=IDS, attention_mask=MASK).last_hidden_state
    save_case(name, model, t, {"problem_type": model.config.problem_type})


def tokcls():
    torch.manual_seed(4)
    model = DistilBertForTokenClassification(DistilBertConfig(**CFG, num_labels=5)).eval()
    perturb(model)
    labels = torch.tensor([[-100, 1, 2, 3, -100, 0, 1, 4, -100], [-100, 2, 2, 1, -100, 0, -100, -100, -100]])
    out = model(input_ids=IDS, attention_mask=MASK, labels=labels)
    out.loss.backward()
    t = {"input_ids": IDS, "attention_mask": MASK, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    t.update(grads_of(model))
    save_case("distilbert_tokcls", model, t)


if __name__ == "__main__":
    base()
    seqcls("distilbert_seqcls", 3, torch.tensor([2, 0]), 1)
    seqcls("distilbert_seqcls_regression", 1, torch.tensor([0.7, -1.3]), 2)
    seqcls("distilbert_seqcls_multilabel", 3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), 3)
    tokcls()
