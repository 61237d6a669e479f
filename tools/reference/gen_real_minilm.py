"""Real-model fixture: all-MiniLM-L6-v2 (BertModel, 6 layers, hidden 384) on the first 200 sentence
pairs of GLUE RTE dev, for tests/models/test_real_models.cpp (RealMiniLM.*).

    /root/peft-venv/bin/python tools/reference/gen_real_minilm.py [MODEL_DIR] [--rte FILE]

MODEL_DIR defaults to build/models/all-MiniLM-L6-v2 (scripts/fetch_models.sh); the RTE file to
../shared/data/glue/RTE/dev.tsv relative to the repository (columns index, sentence1, sentence2,
label). Writes tests/fixtures/models/real_minilm/:
  pairs.json           the 200 pairs (index, sentence1, sentence2) with the ids and token_type_ids of
                       the transformers fast tokenizer (tokenizer(s1, s2, truncation=True,
                       max_length=128): longest_first over the pair)
  expected.safetensors fp32 transformers BertModel (eager attention, eval) run on each pair alone
                       (batch 1, no padding, all-ones mask):
                         cls          [200, 384]  last_hidden_state[:, 0]
                         mean         [200, 384]  mean of last_hidden_state over the tokens
                                                  (sentence-transformers' mean pooling; unpadded,
                                                  so every token counts)
                         full.<i>     [T_i, 384]  the whole last_hidden_state of pairs 0..3
                         hidden_cls   [7, 64, 384] CLS row of hidden_states[0..6]
                                                  (output_hidden_states=True) for pairs 0..63
                                                  (all 200 pairs would take 2.15 MB and the fixture
                                                  past its budget)
  manifest.json        versions, the batch layout, transformers' own padded-vs-unpadded max diffs
"""
import argparse
import hashlib
import json
import os

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertModel

from common import FIXTURES, ROOT, write_manifest

N_PAIRS = 200
MAX_LENGTH = 128
N_FULL = 4
N_LAYER_PAIRS = 64
OUT = os.path.join(FIXTURES, "models", "real_minilm")


def read_rte(path, n):
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        assert header[:3] == ["index", "sentence1", "sentence2"], f"{path}: unexpected header {header}"
        for line in f:
            cols = line.rstrip("\n").split("\t")
            assert len(cols) == len(header), f"{path}: {len(cols)} fields in row {len(rows)}"
            rows.append({"index": int(cols[0]), "sentence1": cols[1], "sentence2": cols[2]})
            if len(rows) == n:
                break
    assert len(rows) == n, f"{path}: only {len(rows)} rows"
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", nargs="?", default=os.path.join(ROOT, "build", "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--rte", default=os.path.join(ROOT, "..", "shared", "data", "glue", "RTE", "dev.tsv"))
    args = ap.parse_args()
    torch.manual_seed(0)  # nothing random runs in eval; fixed anyway
    torch.set_num_threads(1)

    rows = read_rte(args.rte, N_PAIRS)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    assert tok.is_fast, "expected the fast (tokenizer.json) tokenizer"
    model = BertModel.from_pretrained(args.model_dir, attn_implementation="eager", dtype=torch.float32).eval()

    cls, mean, full, layer_cls = [], [], {}, []
    n_truncated = 0
    with torch.no_grad():
        for i, r in enumerate(rows):
            enc = tok(r["sentence1"], r["sentence2"], truncation=True, max_length=MAX_LENGTH)
            r["input_ids"] = enc["input_ids"]
            r["token_type_ids"] = enc["token_type_ids"]
            untruncated = len(tok(r["sentence1"], r["sentence2"])["input_ids"])
            n_truncated += untruncated > MAX_LENGTH
            ids = torch.tensor([enc["input_ids"]])
            out = model(input_ids=ids, token_type_ids=torch.tensor([enc["token_type_ids"]]),
                        attention_mask=torch.ones_like(ids), output_hidden_states=True)
            h = out.last_hidden_state[0]
            assert torch.equal(out.hidden_states[-1][0], h)
            cls.append(h[0])
            mean.append(h.mean(0))
            if i < N_FULL:
                full[f"full.{i}"] = h.clone()
            if i < N_LAYER_PAIRS:
                layer_cls.append(torch.stack([s[0, 0] for s in out.hidden_states]))

        # transformers' own fp32 difference between one padded batch of all pairs and the pairs alone.
        batch = tok([r["sentence1"] for r in rows], [r["sentence2"] for r in rows], truncation=True,
                    max_length=MAX_LENGTH, padding=True, return_tensors="pt")
        pb = model(**batch).last_hidden_state
        m = batch["attention_mask"].unsqueeze(-1).float()
        pad_cls = (pb[:, 0] - torch.stack(cls)).abs().max().item()
        pad_mean = ((pb * m).sum(1) / m.sum(1) - torch.stack(mean)).abs().max().item()

    tensors = {"cls": torch.stack(cls), "mean": torch.stack(mean),
               "hidden_cls": torch.stack(layer_cls, 1).contiguous(), **full}
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.float().contiguous() for k, v in tensors.items()}, os.path.join(OUT, "expected.safetensors"))
    with open(os.path.join(OUT, "pairs.json"), "w", encoding="utf-8") as f:
        json.dump({"max_length": MAX_LENGTH, "truncation": "longest_first", "pairs": rows}, f,
                  ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    lengths = [len(r["input_ids"]) for r in rows]
    with open(os.path.join(args.model_dir, "model.safetensors"), "rb") as f:
        weights_sha256 = hashlib.sha256(f.read()).hexdigest()
    write_manifest(OUT, model="sentence-transformers/all-MiniLM-L6-v2", model_safetensors_sha256=weights_sha256,
                   n_pairs=N_PAIRS, max_length=MAX_LENGTH,
                   layout="each pair alone: batch 1, no padding, attention_mask all ones",
                   attn_implementation="eager", dtype="float32", atol=1e-5,
                   token_lengths={"min": min(lengths), "max": max(lengths), "total": sum(lengths)},
                   pairs_truncated=int(n_truncated),
                   transformers_padded_batch_vs_alone={"cls": pad_cls, "mean": pad_mean})
    print(f"pairs {N_PAIRS}, tokens {sum(lengths)} (min {min(lengths)}, max {max(lengths)}), "
          f"truncated {n_truncated}; transformers padded-vs-alone max diff cls {pad_cls:.3g} mean {pad_mean:.3g}")


if __name__ == "__main__":
    main()
