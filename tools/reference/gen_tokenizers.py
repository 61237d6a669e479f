#!/usr/bin/env python3
"""Golden fixtures for the C++ tokenizers: writes tests/fixtures/tokenizers/.

Per tokenizer (gpt2, bert, llama2c, unigram): tokenizer.json, expected.jsonl (one record per corpus
line: ids; offsets (byte offsets) for the first OFFSET_LINES lines; "decoded" only when
decode(ids, skip_special_tokens=True) differs from the line), pairs.jsonl and batches.jsonl.
Also a tiny SentencePiece tokenizer.model with its expected ids, and roberta/ (a trained byte-level
BPE with RobertaProcessing: single, pair and pre-tokenized encodings; see gen_roberta).

Run: /root/peft-venv/bin/python tools/reference/gen_tokenizers.py [OUT_DIR] [--retrain]
(the trained unigram / bpe_suffix_misc / sentencepiece models are reused unless --retrain;
--roberta-only regenerates roberta/ alone from the stored corpus.jsonl).
"""
import csv
import json
import re
import os
import struct
import sys

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # deterministic training
import sentencepiece as spm
import tokenizers
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import UnigramTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = "/work/shared"
ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
OUT = ARGS[0] if ARGS else os.path.join(ROOT, "tests/fixtures/tokenizers")
OFFSET_LINES = 100
MAX_CHARS = 120
DECODE_LINES = {"bert": 300}

HAND_WRITTEN = [
    "Hello, world!", "  leading and trailing spaces  ", "multiple     spaces\tand\ttabs",
    "line one\nline two\r\nline three", "\n\n\n", " ", "a", "Don't you'll we've they're I'm he'd",
    "Café déjà vu, naïve façade, Ångström, São Paulo, Zürich", "ÉCOLE NORMALE SUPÉRIEURE",
    "e\u0301 combining acute vs é precomposed", "ﬁ ﬂ ligatures and ＦＵＬＬＷＩＤＴＨ ａｂｃ １２３",
    "İstanbul ıi Straße ΣΊΣΥΦΟΣ σς", "中文分词测试：我爱北京天安门。", "日本語のテキスト、カタカナとひらがな。",
    "한국어 텍스트 입니다", "Русский текст, ёлка и Ёж.", "العربية نص تجريبي", "हिन्दी पाठ परीक्षण",
    "ไทยภาษา ทดสอบ", "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️", "math: ∑ x² ≤ ∞, π≈3.14159, ½ ¾",
    "control\u0000char\u0007bell\u001bescape", "zero\u200bwidth\u200djoiner\ufeffbom",
    "nbsp\u00a0here and\u3000ideographic space", "tab\t\t\tafter", "trailing newline\n",
    "price: £30, €25, $1,000.50, ¥500", "email me: someone@example.com http://x.y/z?q=1&r=2",
    "numbers 1234567890 0.5 -12 3e10 ٣٤٥", "CamelCaseWordsAndALLCAPS snake_case_words",
    "Special <|endoftext|> token inside", "[CLS] bracketed [SEP] tokens [MASK]", "<s> and </s> tags",
    "<unk> literal", "repeated!!!??? ... --- ***", "\"quoted\" 'single' «guillemets» „low“",
    "a\u0300\u0301\u0302 stacked marks", "Ǆ ǅ ǆ titlecase digraphs", "ẞ capital sharp s",
    "mixed 中文 and English 混合 text", "🙂", "x" * 120, "supercalifragilisticexpialidocious" * 3,
    "end with space ", "\tstarts with tab", "a\u2028b\u2029c line separators", "soft\u00adhyphen",
    "Ω ohm sign vs Ω omega, Å angstrom sign", "Ｈｅｌｌｏ，ｗｏｒｌｄ！", "①②③ circled", "x\u0085nel",
    "ŉ ǰ ΐ special casing", "don't stop believin'", "it's 5 o'clock", "The year 1999 and 2000s.",
    "Once upon a time", "Once upon a time, there was a little girl named Lily.",
]


def e2e_lines():
    with open(f"{SHARED}/data/e2e_nlg/devset.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    refs = [r["ref"] for r in rows if len(r["ref"]) <= MAX_CHARS][::6][:550]
    seen, mrs = set(), []
    for r in rows:
        if r["mr"] not in seen and len(r["mr"]) <= MAX_CHARS:
            seen.add(r["mr"])
            mrs.append(r["mr"])
    return refs, mrs[::4][:100]


def sst2_lines():
    with open(f"{SHARED}/data/glue/SST-2/dev.tsv", encoding="utf-8") as f:
        rows = [l.rstrip("\n").split("\t") for l in f][1:]
    return [r[0] for r in rows if len(r[0]) <= MAX_CHARS][:500]


def tinystories_lines():
    out = []
    with open(f"{SHARED}/data/tinystories/tinystories_validation_prefix.txt", encoding="utf-8") as f:
        for line in f:
            for sent in re.split(r"(?<=[.!?])\s+", line.strip()):
                if 0 < len(sent) <= MAX_CHARS:
                    out.append(sent)
    return out[::5][:650]


def dart_lines():
    with open(f"{SHARED}/data/dart/dart-v1.1.1-full-dev.json", encoding="utf-8") as f:
        d = json.load(f)
    texts = [a["text"] for e in d for a in e["annotations"][:1] if len(a["text"]) <= MAX_CHARS]
    return texts[::4][:500]


# ------------------------------------------------------------------ llama2.c tok512 -> HF json
def read_llama2c_bin(path):
    data = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", data, 0)
    pos, pieces, scores = 4, [], []
    while pos < len(data):
        score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        pieces.append(data[pos:pos + n].decode("utf-8"))
        scores.append(score)
        pos += n
    return max_len, pieces, scores


def llama2c_to_json(path):
    """Same conversion as peft::io::write_llama2c_tokenizer_json (HF LlamaConverter semantics)."""
    _, pieces, scores = read_llama2c_bin(path)
    pieces = [p.replace(" ", "\u2581") for p in pieces]
    pieces[0], pieces[1], pieces[2] = "<unk>", "<s>", "</s>"
    vocab = {}
    for i, p in enumerate(pieces):
        vocab.setdefault(p, i)
    merges = []
    for piece, pid in vocab.items():
        for k in range(1, len(piece)):
            l, r = piece[:k], piece[k:]
            if l in vocab and r in vocab:
                merges.append((scores[pid], vocab[l], vocab[r], l, r))
    merges.sort(key=lambda m: (-m[0], m[1], m[2]))
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i, t in enumerate(["<unk>", "<s>", "</s>"])],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "ignore_merges": False, "vocab": vocab,
                  "merges": [[m[3], m[4]] for m in merges]},
    }


def llama2c_encode(text, pieces, scores):
    """llama2.c's own encode (run.c), BOS + dummy prefix; the reference for the converter."""
    lookup = {p: i for i, p in enumerate(pieces)}
    ids = [1]
    toks = [lookup[" "]] if text else []
    for ch in text:
        if ch in lookup:
            toks.append(lookup[ch])
        else:
            toks.extend(b + 3 for b in ch.encode("utf-8"))
    while True:
        best, best_i = -1e10, -1
        for i in range(len(toks) - 1):
            s = pieces[toks[i]] + pieces[toks[i + 1]]
            if s in lookup and scores[lookup[s]] > best:
                best, best_i = scores[lookup[s]], i
        if best_i < 0:
            break
        toks[best_i:best_i + 2] = [lookup[pieces[toks[best_i]] + pieces[toks[best_i + 1]]]]
    return ids + toks


# ------------------------------------------------------------------ tokenizers
def build_bert():
    vocab = {}
    with open(f"{SHARED}/models/bert-uncased-wordpiece-vocab/vocab.txt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\n")] = i
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return tok


RETRAIN = "--retrain" in sys.argv  # training is not deterministic: reuse stored models by default


def load_stored(rel):
    path = os.path.join(OUT, rel)
    if not RETRAIN and os.path.exists(path):
        return Tokenizer.from_file(path)
    return None


def build_unigram(train_lines):
    stored = load_stored("unigram/tokenizer.json")
    if stored is not None:
        return stored
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    trainer = UnigramTrainer(vocab_size=500, special_tokens=["<pad>", "</s>", "<unk>"],
                             unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(train_lines, trainer=trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A:0 </s>:0", pair="$A:0 </s>:0 $B:1 </s>:1", special_tokens=[("</s>", eos)])
    return tok


def byte_offsets(text, offsets):
    cum = [0]
    for ch in text:
        cum.append(cum[-1] + len(ch.encode("utf-8")))
    return [[cum[a], cum[b]] for a, b in offsets]


BATCH_CONFIGS = [
    {"padding": "longest", "padding_side": "right"},
    {"padding": "longest", "padding_side": "left"},
    {"padding": "max_length", "max_length": 24, "truncation": True, "padding_side": "right"},
    {"padding": "longest", "pad_to_multiple_of": 8, "padding_side": "right"},
    {"padding": "none", "truncation": True, "max_length": 10, "truncation_side": "left"},
    {"padding": "max_length", "max_length": 12, "truncation": True, "truncation_side": "right",
     "padding_side": "left"},
]


def encode_batch(tok, texts, cfg, pad_id, pad_token):
    tok = Tokenizer.from_str(tok.to_str())
    tok.no_padding()
    tok.no_truncation()
    if cfg.get("truncation"):
        tok.enable_truncation(max_length=cfg["max_length"],
                              direction=cfg.get("truncation_side", "right"))
    if cfg["padding"] != "none":
        tok.enable_padding(direction=cfg.get("padding_side", "right"), pad_id=pad_id,
                           pad_token=pad_token,
                           length=cfg["max_length"] if cfg["padding"] == "max_length" else None,
                           pad_to_multiple_of=cfg.get("pad_to_multiple_of"))
    encs = tok.encode_batch(texts)
    return {"ids": [e.ids for e in encs], "attention_mask": [e.attention_mask for e in encs],
            "type_ids": [e.type_ids for e in encs],
            "special_tokens_mask": [e.special_tokens_mask for e in encs]}


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")


def gen_one(name, tok, lines, pad_id, pad_token, check=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(tok.to_str())
    recs, mismatches = [], 0
    for i, line in enumerate(lines):
        e = tok.encode(line)
        rec = {"ids": e.ids}
        if i < OFFSET_LINES:
            rec["offsets"] = byte_offsets(line, e.offsets)
        dec = tok.decode(e.ids, skip_special_tokens=True)
        if dec != line and i < DECODE_LINES.get(name, len(lines)):
            rec["decoded"] = dec
        if check is not None and check(line) != e.ids:
            mismatches += 1
            print(f"{name}: reference mismatch on line {i}: {line!r}", file=sys.stderr)
        recs.append(rec)
    write_jsonl(os.path.join(d, "expected.jsonl"), recs)
    pairs = []
    for i in range(0, 200, 2):
        e = tok.encode(lines[i], lines[i + 1])
        pairs.append({"a": i, "b": i + 1, "ids": e.ids, "type_ids": e.type_ids,
                      "special_tokens_mask": e.special_tokens_mask})
    write_jsonl(os.path.join(d, "pairs.jsonl"), pairs)
    batches = []
    for k, cfg in enumerate(BATCH_CONFIGS):
        idx = list(range(100 + 8 * k, 108 + 8 * k)) + [len(lines) - 1 - k]
        out = encode_batch(tok, [lines[j] for j in idx], cfg, pad_id, pad_token)
        batches.append({"config": cfg, "lines": idx, **out})
    write_jsonl(os.path.join(d, "batches.jsonl"), batches)
    return {"lines": len(lines), "pairs": len(pairs), "batches": len(batches),
            "offsets_lines": min(OFFSET_LINES, len(lines)),
            "decode_lines": DECODE_LINES.get(name, len(lines)),
            "reference_mismatches": mismatches if check else None}


def gen_sentencepiece(train_lines, lines):
    d = os.path.join(OUT, "sentencepiece")
    os.makedirs(d, exist_ok=True)
    if RETRAIN or not os.path.exists(os.path.join(d, "tokenizer.model")):
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(train_lines), model_prefix=os.path.join(d, "tokenizer"),
            vocab_size=400, model_type="bpe", byte_fallback=True, character_coverage=0.9995,
            bos_id=1, eos_id=2, unk_id=0, pad_id=-1, normalization_rule_name="identity",
            num_threads=1, minloglevel=2)
        os.remove(os.path.join(d, "tokenizer.vocab"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
    recs = []
    for line in lines:
        ids = sp.encode(line)
        rec = {"ids": ids}
        dec = sp.decode(ids)
        if dec != line:
            rec["decoded"] = dec
        recs.append(rec)
    write_jsonl(os.path.join(d, "expected.jsonl"), recs)
    return {"lines": len(lines), "vocab_size": sp.get_piece_size()}


# ------------------------------------------------------------------ component coverage
def build_misc(train_lines, bert_vocab_tok, gpt2, uni):
    """Small tokenizers that exercise the components the four main ones do not use."""
    from tokenizers import AddedToken
    from tokenizers.trainers import BpeTrainer
    out = {}
    # WordPiece + NFD/StripAccents/Lowercase/Strip/Replace(regex), Split/Punctuation/Digits,
    # BertProcessing, added tokens with single_word / lstrip / rstrip.
    t = Tokenizer.from_str(bert_vocab_tok.to_str())
    t.normalizer = normalizers.Sequence([
        normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase(),
        normalizers.Strip(left=True, right=True), normalizers.Replace(Regex("[0-9]{3,}"), "0")])
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\s+"), behavior="removed"),
        pre_tokenizers.Punctuation(behavior="merged_with_previous"),
        pre_tokenizers.Digits(individual_digits=True)])
    t.post_processor = processors.BertProcessing(("[SEP]", 102), ("[CLS]", 101))
    t.add_tokens([AddedToken("time", single_word=True), AddedToken("upon", lstrip=True, rstrip=True)])
    t.add_special_tokens([AddedToken("[MASK]", lstrip=True, special=True)])
    out["wordpiece_misc"] = ("bert", t)
    # Byte-level BPE without regex after Split/Digits, NFKC, RobertaProcessing, added token.
    t = Tokenizer.from_str(gpt2.to_str())
    t.normalizer = normalizers.NFKC()
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(" ", behavior="merged_with_next"),
        pre_tokenizers.Split(Regex("[a-z]+"), behavior="isolated", invert=True),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)])
    t.post_processor = processors.RobertaProcessing(("<|endoftext|>", 50256), ("<|endoftext|>", 50256),
                                                    trim_offsets=True, add_prefix_space=True)
    t.add_tokens([AddedToken(" restaurant", rstrip=True, normalized=False)])
    out["bytelevel_misc"] = ("gpt2", t)
    # Unigram + NFD/NFC, Whitespace + Punctuation(contiguous) + Metaspace(first, no split).
    t = Tokenizer.from_str(uni.to_str())
    t.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.NFC(), normalizers.NFKD(),
                                         normalizers.NFKC(), normalizers.Lowercase()])
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation(behavior="contiguous"),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)])
    t.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    t.post_processor = None
    out["unigram_misc"] = (None, t)
    # Trained BPE with continuing_subword_prefix / end_of_word_suffix / unk + BPEDecoder.
    stored = load_stored("misc/bpe_suffix_misc.json")
    if stored is not None:
        out["bpe_suffix_misc"] = (None, stored)
        return out
    t = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##",
                             end_of_word_suffix="</w>", fuse_unk=True))
    t.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Lowercase()])
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                               pre_tokenizers.Punctuation()])
    t.train_from_iterator(train_lines, BpeTrainer(
        vocab_size=400, special_tokens=["[UNK]", "<cls>"], continuing_subword_prefix="##",
        end_of_word_suffix="</w>", limit_alphabet=40, show_progress=False))
    t.decoder = decoders.BPEDecoder(suffix="</w>")
    t.post_processor = processors.TemplateProcessing(
        single="<cls>:0 $A:0", pair="<cls>:0 $A:0 <cls>:1 $B:1",
        special_tokens=[("<cls>", t.token_to_id("<cls>"))])
    out["bpe_suffix_misc"] = (None, t)
    return out


def gen_misc(toks, lines, idx):
    d = os.path.join(OUT, "misc")
    os.makedirs(d, exist_ok=True)
    summary = {}
    for name, (base, tok) in toks.items():
        with open(os.path.join(d, name + ".json"), "w", encoding="utf-8") as f:
            if base is None:
                f.write(tok.to_str())
            else:  # the base fixture's tokenizer.json with these top-level keys replaced
                full = json.loads(tok.to_str())
                keys = ["added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder"]
                json.dump({"base": base, "patch": {k: full[k] for k in keys}}, f,
                          ensure_ascii=False, indent=1)
        recs = []
        for i in idx:
            e = tok.encode(lines[i])
            rec = {"i": i, "ids": e.ids, "offsets": byte_offsets(lines[i], e.offsets)}
            dec = tok.decode(e.ids, skip_special_tokens=True)
            if dec != lines[i]:
                rec["decoded"] = dec
            recs.append(rec)
        write_jsonl(os.path.join(d, name + ".expected.jsonl"), recs)
        summary[name] = len(recs)
    return summary


def gen_roberta(lines):
    """A RoBERTa-style tokenizer.json: byte-level BPE (1,000 entries, trained here on the corpus) with
    RoBERTa's special tokens (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4 with lstrip) and the
    RobertaProcessing post-processor (<s> A </s> and <s> A </s></s> B </s>, type ids all 0). Writes
    roberta/{tokenizer.json, expected.jsonl}: single lines (ids, byte offsets, type ids, special
    mask), pairs (the same), and word lists encoded pre-tokenized with a prefix space (ids, word ids),
    as token classification encodes them."""
    from tokenizers import AddedToken
    from tokenizers.trainers import BpeTrainer
    d = os.path.join(OUT, "roberta")
    os.makedirs(d, exist_ok=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(lines[:1500], BpeTrainer(
        vocab_size=1000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    t.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                    add_prefix_space=False)
    assert [t.token_to_id(x) for x in specials] == [0, 1, 2, 3, 4]
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(t.to_str())
    n_single, n_pairs, n_words = 0, 0, 0
    recs = []
    sel = list(range(0, 1500, 10)) + list(range(len(lines) - len(HAND_WRITTEN), len(lines))) + [len(lines) - 1]
    for i in sel:
        e = t.encode(lines[i])
        recs.append({"kind": "single", "a": i, "ids": e.ids, "type_ids": e.type_ids,
                     "special_tokens_mask": e.special_tokens_mask, "offsets": byte_offsets(lines[i], e.offsets)})
        n_single += 1
    for i in range(1, 1500, 30):
        e = t.encode(lines[i], lines[i + 1])
        # offsets of the pair: each side's own byte offsets (sequence ids tell which side).
        offs = [byte_offsets(lines[i] if s == 0 else lines[i + 1], [o])[0] if s is not None else [0, 0]
                for s, o in zip(e.sequence_ids, e.offsets)]
        recs.append({"kind": "pair", "a": i, "b": i + 1, "ids": e.ids, "type_ids": e.type_ids,
                     "special_tokens_mask": e.special_tokens_mask, "offsets": offs,
                     "sequence_ids": [-1 if s is None else s for s in e.sequence_ids]})
        n_pairs += 1
    for i in range(2, 1500, 30):
        words = lines[i].split()[:12]
        if not words:
            continue
        e = t.encode([" " + w for w in words], is_pretokenized=True, add_special_tokens=True)
        recs.append({"kind": "words", "words": words, "ids": e.ids,
                     "word_ids": [-1 if w is None else w for w in e.word_ids]})
        n_words += 1
    write_jsonl(os.path.join(d, "expected.jsonl"), recs)
    return {"singles": n_single, "pairs": n_pairs, "word_lists": n_words, "vocab": t.get_vocab_size()}


def main():
    os.makedirs(OUT, exist_ok=True)
    if "--roberta-only" in sys.argv:  # regenerate roberta/ alone from the stored corpus
        with open(os.path.join(OUT, "corpus.jsonl"), encoding="utf-8") as f:
            lines = [json.loads(x) for x in f]
        with open(os.path.join(OUT, "manifest.json")) as f:
            manifest = json.load(f)
        manifest["fixtures"]["roberta"] = gen_roberta(lines)
        with open(os.path.join(OUT, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2)
        print(manifest["fixtures"]["roberta"])
        return
    refs, mrs = e2e_lines()
    sst, ts, dart = sst2_lines(), tinystories_lines(), dart_lines()
    lines = refs + mrs + sst + ts + dart + HAND_WRITTEN
    sources = {"e2e_nlg devset.csv ref": len(refs), "e2e_nlg devset.csv mr": len(mrs),
               "glue SST-2 dev.tsv": len(sst), "tinystories validation prefix": len(ts),
               "dart v1.1.1 full dev": len(dart), "hand-written": len(HAND_WRITTEN)}
    write_jsonl(os.path.join(OUT, "corpus.jsonl"), lines)

    manifest = {"generator": "tools/reference/gen_tokenizers.py", "tokenizers": tokenizers.__version__,
                "transformers": transformers.__version__, "sentencepiece": spm.__version__,
                "corpus": {"lines": len(lines), "sources": sources}, "fixtures": {}}

    gpt2 = Tokenizer.from_file(f"{SHARED}/models/gpt2-bpe-tokenizer/tokenizer.json")
    manifest["fixtures"]["gpt2"] = gen_one("gpt2", gpt2, lines, 50256, "<|endoftext|>")

    bert = build_bert()
    manifest["fixtures"]["bert"] = gen_one("bert", bert, lines, 0, "[PAD]")

    tok512 = f"{SHARED}/models/stories260K/tok512.bin"
    _, pieces, scores = read_llama2c_bin(tok512)
    llama = Tokenizer.from_str(json.dumps(llama2c_to_json(tok512)))
    manifest["fixtures"]["llama2c"] = gen_one(
        "llama2c", llama, lines, 0, "<unk>", check=lambda t: llama2c_encode(t, pieces, scores))

    uni = build_unigram(refs + sst + ts)
    manifest["fixtures"]["unigram"] = gen_one("unigram", uni, lines, 0, "<pad>")

    manifest["fixtures"]["sentencepiece"] = gen_sentencepiece(refs + sst + ts, lines)
    idx = list(range(150)) + list(range(len(lines) - len(HAND_WRITTEN), len(lines)))
    manifest["fixtures"]["misc"] = gen_misc(build_misc(refs + sst + ts, bert, gpt2, uni), lines, idx)
    manifest["fixtures"]["roberta"] = gen_roberta(lines)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
