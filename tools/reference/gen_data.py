"""Expectations for the dataset layer (tests/train/test_data.cpp) from Python `csv` and `transformers`.

Writes tests/fixtures/data/expected.json:
  csv        - tests/fixtures/data/reader.csv as parsed by Python's csv.DictReader (RFC 4180 quoting)
  token_cls  - HF run_ner `tokenize_and_align_labels` (is_split_into_words, word_ids(), label_all_tokens=False)
               on tests/fixtures/data/ner.conll, for BERT (WordPiece) and GPT-2 (add_prefix_space=True)
  seq_cls    - BERT pair encodings with truncation=True (longest_first) at a small max_length
  causal     - GPT-2 `tokenizer(text).input_ids + [eos]`, and prompt/completion ids
Usage: /root/peft-venv/bin/python tools/reference/gen_data.py
"""
import csv
import json
import os

from tokenizers import pre_tokenizers
from transformers import BertTokenizerFast, GPT2TokenizerFast

from common import FIXTURES, write_manifest

DATA = os.path.join(FIXTURES, "data")
TOK = os.path.join(FIXTURES, "tokenizers")


def read_conll(path):
    sents, cur = [], ([], [])
    with open(path, encoding="utf-8") as f:
        for line in f:
            cols = line.split()
            if not cols or cols[0] == "-DOCSTART-":
                if cur[0]:
                    sents.append(cur)
                cur = ([], [])
                continue
            cur[0].append(cols[0])
            cur[1].append(cols[-1])
    if cur[0]:
        sents.append(cur)
    return sents


def align(tok, sents, label_to_id, max_length):
    # transformers/examples/pytorch/token-classification/run_ner.py: tokenize_and_align_labels
    enc = tok([s[0] for s in sents], truncation=True, max_length=max_length, is_split_into_words=True)
    out = []
    for i, (_, tags) in enumerate(sents):
        prev, labels = None, []
        for w in enc.word_ids(batch_index=i):
            if w is None:
                labels.append(-100)
            elif w != prev:
                labels.append(label_to_id[tags[w]])
            else:
                labels.append(-100)
            prev = w
        out.append({"input_ids": enc["input_ids"][i], "labels": labels})
    return out


def main():
    out = {}
    with open(os.path.join(DATA, "reader.csv"), newline="", encoding="utf-8") as f:
        out["csv"] = [dict(r) for r in csv.DictReader(f)]

    bert = BertTokenizerFast(tokenizer_file=os.path.join(TOK, "bert", "tokenizer.json"))
    # transformers 5.x ignores add_prefix_space=True when GPT2TokenizerFast is built from a tokenizer_file
    # (the backend keeps ByteLevel(add_prefix_space=False)), so set it on the backend tokenizer directly:
    # that is what add_prefix_space=True means for is_split_into_words (every word gets a leading "G-dot").
    gpt2 = GPT2TokenizerFast(tokenizer_file=os.path.join(TOK, "gpt2", "tokenizer.json"))
    gpt2.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    assert gpt2(["EU"], is_split_into_words=True).tokens() == ["\u0120EU"]
    gpt2_plain = GPT2TokenizerFast(tokenizer_file=os.path.join(TOK, "gpt2", "tokenizer.json"))

    sents = read_conll(os.path.join(DATA, "ner.conll"))
    label_list = sorted({t for s in sents for t in s[1]})
    l2i = {l: i for i, l in enumerate(label_list)}
    out["token_cls"] = {
        "label_list": label_list,
        "bert": align(bert, sents, l2i, 512),
        "bert_max8": align(bert, sents, l2i, 8),
        "gpt2_prefix_space": align(gpt2, sents, l2i, 512),
    }

    pairs = [["The quick brown fox jumps over the lazy dog.", "A short one."],
             ["Short.", "This second sentence is much longer than the first one, so it loses tokens."],
             ["equal length words here", "equal length words here"],
             # Both cut, 9 content tokens to share: the longer text keeps 5, the second on a tie.
             ["one two three four five six", "seven eight nine ten eleven twelve"],
             ["alpha beta gamma delta epsilon", "one two three four five six seven"],
             ["one two three four five six seven", "alpha beta gamma delta epsilon"]]
    out["seq_cls"] = {"max_length": 12, "pairs": pairs, "bert": []}
    for a, b in pairs:
        e = bert(a, b, truncation=True, max_length=12)
        out["seq_cls"]["bert"].append({"input_ids": e["input_ids"], "token_type_ids": e["token_type_ids"]})
    single = "Unaffable tokenization of a rather long sentence for truncation."
    e = bert(single, truncation=True, max_length=8)
    out["seq_cls"]["single"] = {"text": single, "max_length": 8, "input_ids": e["input_ids"]}

    texts = ["Hello world, this is GPT-2.", " leading space and caf\u00e9"]
    eos = gpt2_plain.eos_token_id
    out["causal"] = {"eos": eos, "texts": texts,
                     "ids": [gpt2_plain(t)["input_ids"] + [eos] for t in texts],
                     "prompt": "name[The Vaults], eatType[pub] ||", "completion": " The Vaults is a pub.",
                     "prompt_ids": gpt2_plain("name[The Vaults], eatType[pub] ||")["input_ids"],
                     "completion_ids": gpt2_plain(" The Vaults is a pub.", add_special_tokens=False)["input_ids"]}

    with open(os.path.join(DATA, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    write_manifest(DATA)


if __name__ == "__main__":
    main()
