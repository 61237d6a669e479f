"""T5 fixtures: tiny random T5ForConditionalGeneration (original relu + tied lm_head, and T5 v1.1
gated-gelu + untied lm_head).

    /root/peft-venv/bin/python tools/reference/gen_models_t5.py

Weights are rounded to bfloat16-representable float32 values and stored as bfloat16 (exact), which
halves model.safetensors; every expected value is computed in float32 from those weights.
"""
import os

import torch
from transformers import DynamicCache, EncoderDecoderCache, T5Config, T5ForConditionalGeneration
from transformers.masking_utils import create_bidirectional_mask

from model_fixtures import MODELS, grads_of, pattern, save_case

CFG = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
           relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.1,
           layer_norm_epsilon=1e-6, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)

# Encoder inputs (row 1 right padded) and labels with -100 (shifted right into decoder inputs).
IDS = torch.tensor([[5, 17, 33, 9, 41, 12, 7, 22, 1], [23, 8, 50, 3, 19, 1, 0, 0, 0]])
MASK = (IDS != 0).long()
MASK[0] = 1
LABELS = torch.tensor([[12, 7, 40, 61, 1], [33, 9, 1, -100, -100]])
P = 3  # prefix length


def make_model(cfg_kwargs, seed, gain=1.5):
    """A random model whose greedy output is not degenerate (transformers' T5 init makes a tiny model
    repeat one token), with bfloat16-representable float32 weights."""
    # Eager attention: modeling_t5's reference formula (SDPA is checked against it below).
    model = T5ForConditionalGeneration._from_config(T5Config(**cfg_kwargs), attn_implementation="eager").eval()
    if not cfg_kwargs.get("tie_word_embeddings", True):
        # transformers 5.x turns tie_word_embeddings=False into scale_decoder_outputs=False and still ties
        # lm_head to shared; untie it as loading a transformers 4.x checkpoint with its own lm_head does.
        model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.shared.weight))
        model.config.tie_word_embeddings = False
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "layer_norm" in n:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif n.endswith(".q.weight"):  # T5 has no 1/sqrt(d_kv) on the scores: fold it into q
                p.normal_(0, gain / (p.shape[1] * cfg_kwargs["d_kv"]) ** 0.5)
            elif "relative_attention_bias" in n:
                p.normal_(0, 0.5)
            elif p.dim() == 2 and "shared" not in n:
                p.normal_(0, gain / p.shape[1] ** 0.5)
            else:
                p.normal_(0, 1.0)
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    return model


def prefix_kv(cfg, layers, phase):
    keys = [pattern((2, cfg.num_heads, P, cfg.d_kv), 0.5, phase=phase + i) for i in range(layers)]
    vals = [pattern((2, cfg.num_heads, P, cfg.d_kv), 0.5, phase=phase + 10 + i) for i in range(layers)]
    return keys, vals


def encoder_with_prefix(model, ids, mask, keys, vals):
    """T5Stack.forward for the encoder with a cache of P entries per layer. transformers drops
    past_key_values in the encoder stack, so the blocks are called directly: the prefix is
    concatenated before the new keys, the mask is extended by P ones and the relative position bias
    is computed for the full key length with the queries at positions P.. (T5Attention.compute_bias
    with past_seen_tokens=P), exactly what T5Attention does when handed a cache of P entries."""
    enc = model.encoder
    cache = DynamicCache()
    for i, (k, v) in enumerate(zip(keys, vals)):
        cache.update(k.clone(), v.clone(), i)
    h = enc.embed_tokens(ids)
    pmask = torch.cat([torch.ones(ids.shape[0], P, dtype=mask.dtype), mask], 1)
    # A [B, P+T] bidirectional mask over [B, T] queries.
    m = create_bidirectional_mask(config=enc.config, inputs_embeds=h,
                                  attention_mask=pmask, encoder_hidden_states=torch.zeros(ids.shape[0], P + ids.shape[1], 1))
    pos = None
    for blk in enc.block:
        h, pos, _ = blk(h, m, pos, None, None, None, past_key_values=cache)
    return enc.final_layer_norm(h)


def prefix_cases(model, eager, cfg, t, dec_ids):
    # Decoder self-attention prefix: what PEFT's prefix tuning hands T5 (an EncoderDecoderCache whose
    # self-attention cache holds P entries per layer and whose cross-attention cache is empty).
    dkeys, dvals = prefix_kv(cfg, cfg.num_decoder_layers, phase=20.0)
    for i, (k, v) in enumerate(zip(dkeys, dvals)):
        t[f"decoder_prefix_key.{i}"] = k
        t[f"decoder_prefix_value.{i}"] = v

    def dec_cache():
        self_c = DynamicCache()
        for i, (k, v) in enumerate(zip(dkeys, dvals)):
            self_c.update(k.clone(), v.clone(), i)
        return EncoderDecoderCache(self_c, DynamicCache())

    ref = model(input_ids=IDS, attention_mask=MASK, decoder_input_ids=dec_ids, past_key_values=dec_cache(),
                use_cache=True).logits
    ref_e = eager(input_ids=IDS, attention_mask=MASK, decoder_input_ids=dec_ids, past_key_values=dec_cache(),
                  use_cache=True).logits
    print("decoder prefix sdpa vs eager", (ref - ref_e).abs().max().item(), ref.abs().max().item())
    assert torch.allclose(ref, ref_e, atol=1e-4, rtol=1e-5), (ref - ref_e).abs().max()
    t["logits_decoder_prefix"] = ref

    # Encoder self-attention prefix (computed as documented in encoder_with_prefix), then both.
    ekeys, evals = prefix_kv(cfg, cfg.num_layers, phase=0.0)
    for i, (k, v) in enumerate(zip(ekeys, evals)):
        t[f"prefix_key.{i}"] = k
        t[f"prefix_value.{i}"] = v
    enc_h = encoder_with_prefix(model, IDS, MASK, ekeys, evals)
    enc_h_e = encoder_with_prefix(eager, IDS, MASK, ekeys, evals)
    assert torch.allclose(enc_h, enc_h_e, atol=1e-5, rtol=1e-5), (enc_h - enc_h_e).abs().max()
    t["encoder_last_hidden_state_prefix"] = enc_h
    t["logits_prefix"] = model(encoder_outputs=(enc_h,), attention_mask=MASK, decoder_input_ids=dec_ids,
                               past_key_values=dec_cache(), use_cache=True).logits


def build(name, cfg_kwargs, seed, gain, eos, with_prefix, grad_filter=None, notes=None):
    model = make_model(cfg_kwargs, seed, gain)
    cfg = model.config
    t = {"input_ids": IDS, "attention_mask": MASK, "labels": LABELS}
    captured = {}
    hook = model.decoder.register_forward_hook(lambda m, a, o: captured.__setitem__("dec", o.last_hidden_state))
    out = model(input_ids=IDS, attention_mask=MASK, labels=LABELS)
    hook.remove()
    t["decoder_input_ids"] = model._shift_right(LABELS)
    t["logits"] = out.logits
    t["encoder_last_hidden_state"] = out.encoder_last_hidden_state
    t["last_hidden_state"] = captured["dec"]  # decoder final_layer_norm output, before the lm_head scaling
    t["loss"] = out.loss.reshape(1)
    out.loss.backward()
    t.update({k: v for k, v in grads_of(model).items() if grad_filter is None or grad_filter(k[len("grad."):])})
    model.zero_grad()

    with torch.no_grad():
        # SDPA (transformers' default) as a cross-check of the eager attention used for the expected values.
        eager = T5ForConditionalGeneration.from_pretrained(None, config=cfg, state_dict=model.state_dict(),
                                                           attn_implementation="sdpa").eval()
        ref_e = eager(input_ids=IDS, attention_mask=MASK, labels=LABELS).logits
        assert torch.allclose(t["logits"], ref_e, atol=1e-5, rtol=1e-5), (t["logits"] - ref_e).abs().max()

        emb = pattern((2, IDS.shape[1], cfg.d_model), 0.8)
        demb = pattern((2, LABELS.shape[1], cfg.d_model), 0.6, phase=1.0)
        t["inputs_embeds"] = emb
        t["decoder_inputs_embeds"] = demb
        t["logits_embeds"] = model(inputs_embeds=emb, attention_mask=MASK, decoder_inputs_embeds=demb).logits

        # Greedy generation from the padded batch: 8 new tokens, stopping per row at `eos` (a token the
        # tiny model does produce, so that a row finishes early), and without EOS.
        t["generated"] = model.generate(input_ids=IDS, attention_mask=MASK, max_new_tokens=8, do_sample=False,
                                        eos_token_id=eos, pad_token_id=0, decoder_start_token_id=0)
        t["generated_noeos"] = model.generate(input_ids=IDS, attention_mask=MASK, max_new_tokens=8,
                                              do_sample=False, eos_token_id=None, pad_token_id=0,
                                              decoder_start_token_id=0)
        if with_prefix:
            prefix_cases(model, eager, cfg, t, t["decoder_input_ids"])

    # An untied model is saved with tie_word_embeddings=False (set in make_model) so that lm_head.weight
    # is written, as in checkpoints saved by transformers 4.x (e.g. google/flan-t5-*).
    model.to(torch.bfloat16)
    meta = {"weights": "bfloat16-representable values stored as bfloat16; expected values computed in float32",
            "generation_eos_token_id": eos,
            "attention": "eager (modeling_t5.eager_attention_forward); SDPA agrees within 1e-5"}
    if with_prefix:
        meta["encoder_prefix"] = " ".join(encoder_with_prefix.__doc__.split())
        meta["decoder_prefix"] = ("EncoderDecoderCache(self-attention DynamicCache holding P=3 entries per layer, "
                                  "empty cross-attention cache), as PEFT's prefix tuning builds it")
    meta.update(notes or {})
    save_case(name, model, t, meta)
    folder = os.path.join(MODELS, name)
    # Round trip: transformers reloads the folder to the same logits.
    with torch.no_grad():
        back = T5ForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
        again = back(input_ids=IDS, attention_mask=MASK, labels=LABELS).logits
        assert torch.allclose(again, t["logits"], atol=1e-5, rtol=1e-5), (again - t["logits"]).abs().max()
    print(name, "max |logits|", t["logits"].abs().max().item(), "generated", t["generated"].tolist())


def gated_grad_filter(name):
    # Keeps the fixture under 250 KB: the attention projections of blocks other than block 0 (and the
    # cross-attention) are covered by t5_seq2seq's full gradient set.
    if "SelfAttention" in name or "EncDecAttention" in name:
        return name.startswith(("encoder.block.0.", "decoder.block.0.")) and "EncDecAttention" not in name
    return True


if __name__ == "__main__":
    build("t5_seq2seq", dict(CFG, feed_forward_proj="relu", tie_word_embeddings=True), seed=3, gain=1.5, eos=51,
          with_prefix=False)
    build("t5_gated", dict(CFG, feed_forward_proj="gated-gelu", tie_word_embeddings=False), seed=0, gain=1.0, eos=2,
          with_prefix=True,
          grad_filter=gated_grad_filter,
          notes={"gradients": "block-0 self-attention, feed-forward, norms, shared, lm_head (size cap); "
                              "t5_seq2seq holds every parameter's gradient"})
