#!/usr/bin/env python3
"""The `peft compare` configs run in Python PEFT, for the scores beside peft.cpp's.

    /root/peft-venv/bin/python tools/reference/compare_peft.py CONFIG [key=value ...] \
        [--methods lora,p_tuning_v2] [--out DIR] [--ours DIR]

CONFIG is a `peft compare` YAML file (examples/configs/compare_*.yaml): a `peft train` config shared
by every method plus a `compare:` section (methods, output_dir, per-method settings). Each method
runs in its own Python process (so peak RSS is per method) with transformers + PEFT, using the same
model folder, data files, templates, label set, truncation, batch size, steps, learning rate and
schedule: a plain PyTorch loop (forward, backward, clip_grad_norm_ 1.0, AdamW with transformers'
decay groups, transformers' get_scheduler; AdaLoRA's update_and_allocate after every step), the
model in train mode (its own dropout), evaluation before and after with the metrics peft.cpp
reports (eval_loss; accuracy and F1 (binary: of label 1, as sklearn) for seq_cls; accuracy and
seqeval precision/recall/F1 for token_cls; sacrebleu BLEU of greedy completions for causal_lm).

Written per method: DIR/<method>/results.json (the keys of peft.cpp's results.json, plus
train_cpu_seconds). Then DIR/compare.md: one row per method; with --ours (a `peft compare` output
folder) the two sides side by side. Default DIR: <compare.output_dir>-python.

Not reproducible across the two sides by construction: the random initialisation of new weights
(classifier heads, LoRA A, prompt tables), the shuffling order and dropout masks; compare the
end scores, not the trajectories. Settings PEFT has no field for (p_tuning_v2's prefix_dropout)
are reported and ignored.
"""
import argparse
import csv
import json
import math
import os
import random
import resource
import subprocess
import sys
import time

import yaml

# The settings `peft compare` gives each method unless the config says otherwise (cli/compare.cpp).
METHOD_DEFAULTS = {
    "prompt_tuning": {"num_virtual_tokens": 20, "learning_rate": 0.03},
    "p_tuning": {"num_virtual_tokens": 20, "encoder_hidden_size": 128, "learning_rate": 0.01},
    "prefix_tuning": {"num_virtual_tokens": 20, "prefix_projection": True, "encoder_hidden_size": 128,
                      "learning_rate": 0.01},
    "p_tuning_v2": {"num_virtual_tokens": 20, "learning_rate": 0.01},
}
ALL_METHODS = ["lora", "adalora", "qlora", "prefix_tuning", "p_tuning", "prompt_tuning", "p_tuning_v2", "full"]


def parse_value(s):
    v = yaml.safe_load(s)
    return v


def load_config(path, overrides):
    with open(path) as f:
        root = yaml.safe_load(f)
    cmp = root.pop("compare", {}) or {}
    for o in overrides:
        k, _, v = o.partition("=")
        root[k] = parse_value(v)
    return root, cmp


def method_config(root, cmp, method, overrides):
    c = dict(root)
    c.update(METHOD_DEFAULTS.get(method, {}))
    c.update(cmp.get(method, {}) or {})
    for o in overrides:
        k, _, v = o.partition("=")
        c[k] = parse_value(v)
    c["method"] = method
    return c


# ---------------------------------------------------------------------------------------------
# Data, as peft.cpp reads it (src/train/data.cpp, datasets.cpp)

def read_rows(path):
    if path.endswith(".jsonl"):
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    if path.endswith(".json"):
        with open(path) as f:
            return json.load(f)
    tsv = path.endswith(".tsv")
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
        header = next(reader)
        return [dict(zip(header, r)) for r in reader if r]


def read_conll(path, tag_column=-1):
    out, words, tags = [], [], []
    with open(path) as f:
        for line in f:
            cols = line.split()
            if not cols or cols[0] == "-DOCSTART-":
                if words:
                    out.append((words, tags))
                words, tags = [], []
                continue
            words.append(cols[0])
            tags.append(cols[tag_column])
    if words:
        out.append((words, tags))
    return out


def fill(template, row):
    out = template
    for k, v in row.items():
        out = out.replace("{" + k + "}", str(v))
    return out


def sorted_labels(seen):
    seen = list(seen)
    try:
        return sorted(seen, key=lambda s: int(s)) if all(s.lstrip("-").isdigit() for s in seen) else sorted(seen)
    except ValueError:
        return sorted(seen)


def take(items, limit):
    return items[:limit] if limit and limit > 0 else items


def build_data(c, tok):
    """(train examples, eval examples, eval rows, label names); an example is a dict of lists."""
    task, L = c["task"], int(c.get("max_length", 512))
    ntrain, neval = int(c.get("max_train_samples", 0) or 0), int(c.get("max_eval_samples", 0) or 0)
    if task == "token_cls":
        col = int(c.get("tag_column", -1))
        tr = take(read_conll(c["train_file"], col), ntrain)
        ev = take(read_conll(c["eval_file"], col), neval)
        labels = sorted_labels({t for _, tags in tr for t in tags})
        index = {l: i for i, l in enumerate(labels)}

        def enc(sent):
            words, tags = sent
            e = tok(words, is_split_into_words=True, truncation=True, max_length=L)
            lab, prev = [], None
            for w in e.word_ids():
                lab.append(-100 if w is None or w == prev else index.get(tags[w], -100))
                prev = w
            return {"input_ids": e["input_ids"], "token_type_ids": e.get("token_type_ids"), "labels": lab}
        return [enc(s) for s in tr], [enc(s) for s in ev], None, labels
    rows_tr = take(read_rows(c["train_file"]), ntrain)
    rows_ev = take(read_rows(c["eval_file"]), neval)
    if task == "seq_cls":
        lc, a, b = c.get("label_column", "label"), c.get("text_column", "text"), c.get("text_pair_column")
        labels = sorted_labels({r[lc] for r in rows_tr})
        index = {l: i for i, l in enumerate(labels)}

        def enc(r):
            e = tok(r[a], r[b], truncation=True, max_length=L) if b else tok(r[a], truncation=True, max_length=L)
            return {"input_ids": e["input_ids"], "token_type_ids": e.get("token_type_ids"), "labels": index[r[lc]]}
        return [enc(r) for r in rows_tr], [enc(r) for r in rows_ev], rows_ev, labels
    # causal_lm: prompt + completion, the loss on the completion (and eos) only; long examples
    # keep the end of the completion.
    pt, ct = c["prompt_template"], c.get("completion_template", "")

    def enc(r):
        p = tok(fill(pt, r))["input_ids"]
        comp = tok(fill(ct, r), add_special_tokens=False)["input_ids"]
        if not comp or comp[-1] != tok.eos_token_id:
            comp = comp + [tok.eos_token_id]
        ids, lab = p + comp, [-100] * len(p) + comp
        if len(ids) > L:
            ids, lab = ids[len(ids) - L:], lab[len(lab) - L:]
        return {"input_ids": ids, "token_type_ids": None, "labels": lab}
    return [enc(r) for r in rows_tr], [enc(r) for r in rows_ev], rows_ev, None


def collate(batch, pad, task):
    import torch
    n = max(len(e["input_ids"]) for e in batch)
    ids = torch.full((len(batch), n), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    out = {}
    for i, e in enumerate(batch):
        k = len(e["input_ids"])
        ids[i, :k] = torch.tensor(e["input_ids"])
        mask[i, :k] = 1
    out["input_ids"], out["attention_mask"] = ids, mask
    if batch[0]["token_type_ids"] is not None:
        tt = torch.zeros((len(batch), n), dtype=torch.long)
        for i, e in enumerate(batch):
            tt[i, :len(e["token_type_ids"])] = torch.tensor(e["token_type_ids"])
        out["token_type_ids"] = tt
    if task == "seq_cls":
        out["labels"] = torch.tensor([e["labels"] for e in batch])
    else:
        lab = torch.full((len(batch), n), -100, dtype=torch.long)
        for i, e in enumerate(batch):
            lab[i, :len(e["labels"])] = torch.tensor(e["labels"])
        out["labels"] = lab
    return out


# ---------------------------------------------------------------------------------------------
# Model and PEFT config

def peft_config(c, num_labels):
    import peft
    from dataclasses import fields
    m, task = c["method"], c["task"]
    task_type = {"seq_cls": "SEQ_CLS", "token_cls": "TOKEN_CLS", "causal_lm": "CAUSAL_LM"}[task]
    cls = {"lora": peft.LoraConfig, "qlora": peft.LoraConfig, "adalora": peft.AdaLoraConfig,
           "prefix_tuning": peft.PrefixTuningConfig, "p_tuning_v2": peft.PrefixTuningConfig,
           "p_tuning": peft.PromptEncoderConfig, "prompt_tuning": peft.PromptTuningConfig}[m]
    names = {f.name for f in fields(cls)} - {"peft_type", "task_type"}
    kw = {k: v for k, v in c.items() if k in names}
    if m == "qlora" and "target_modules" not in kw:
        kw["target_modules"] = "all-linear"
        if task == "token_cls":
            # PEFT's all-linear leaves out the head for SEQ_CLS only; for TOKEN_CLS it would wrap the
            # classifier that modules_to_save also claims ("modules_to_save cannot be applied to
            # modules of type lora.Linear"). peft.cpp leaves the head out for both.
            kw["exclude_modules"] = ["classifier"]
    if m == "p_tuning_v2":
        kw["prefix_projection"] = False
    if m == "adalora" and "total_step" not in kw:
        kw["total_step"] = int(c["max_steps"])
    ignored = [k for k in ("prefix_dropout",) if k in c and m == "p_tuning_v2"]
    if m == "p_tuning_v2" and "prefix_dropout" not in c:
        ignored.append("prefix_dropout (peft.cpp's p_tuning_v2 default 0.1)")
    return cls(task_type=task_type, **kw), ignored


def load_model(c, labels):
    import torch
    import transformers as T
    task, path = c["task"], c["model"]
    kw = {"attn_implementation": "eager"}
    if c["method"] == "qlora":
        kw["quantization_config"] = T.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=c.get("bnb_4bit_quant_type", "nf4"),
            bnb_4bit_use_double_quant=bool(c.get("bnb_4bit_use_double_quant", True)),
            bnb_4bit_compute_dtype=torch.float32,
            # the new head stays fp32, as peft.cpp keeps it (transformers would quantise it)
            llm_int8_skip_modules=["classifier", "score", "lm_head"] if task != "causal_lm" else None)
    if task == "seq_cls":
        return T.AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={l: i for i, l in enumerate(labels)}, **kw)
    if task == "token_cls":
        return T.AutoModelForTokenClassification.from_pretrained(
            path, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={l: i for i, l in enumerate(labels)}, **kw)
    return T.AutoModelForCausalLM.from_pretrained(path, **kw)


# ---------------------------------------------------------------------------------------------
# Evaluation

def evaluate(c, model, tok, ev, rows_ev, labels, pad):
    import numpy as np
    import torch
    task, bs = c["task"], int(c.get("per_device_eval_batch_size", 8))
    model.eval()
    loss_sum, weight = 0.0, 0
    preds, golds = [], []
    with torch.no_grad():
        for i in range(0, len(ev), bs):
            b = collate(ev[i:i + bs], pad, task)
            labels_b = b.pop("labels")
            out = model(**b)
            # The loss from the logits (the task's own loss, without AdaLoRA's orthogonal term
            # that PEFT adds to outputs.loss; prompt methods' virtual positions dropped).
            logits = out.logits if task == "seq_cls" else out.logits[:, -labels_b.shape[1]:]
            if task == "causal_lm":
                logits, tgt = logits[:, :-1], labels_b[:, 1:]
            else:
                tgt = labels_b
            w = int((tgt != -100).sum())
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tgt.reshape(-1),
                                                     ignore_index=-100, reduction="sum")
            loss_sum += float(loss)
            weight += w
            b["labels"] = labels_b
            if task == "seq_cls":
                preds += out.logits.argmax(-1).tolist()
                golds += b["labels"].tolist()
            elif task == "token_cls":
                p = out.logits[:, -b["labels"].shape[1]:].argmax(-1)
                for r in range(p.shape[0]):
                    keep = b["labels"][r] != -100
                    preds.append([labels[x] for x in p[r][keep].tolist()])
                    golds.append([labels[x] for x in b["labels"][r][keep].tolist()])
    m = {"eval_loss": loss_sum / max(weight, 1)}
    if task == "seq_cls":
        from sklearn.metrics import f1_score
        m["accuracy"] = float(np.mean(np.array(preds) == np.array(golds)))
        m["f1"] = float(f1_score(golds, preds, pos_label=1, average="binary") if len(labels) == 2
                        else f1_score(golds, preds, average="macro"))
    elif task == "token_cls":
        import seqeval.metrics as S
        flat_p = [x for s in preds for x in s]
        flat_g = [x for s in golds for x in s]
        m["accuracy"] = float(np.mean(np.array(flat_p) == np.array(flat_g)))
        m["precision"] = float(S.precision_score(golds, preds))
        m["recall"] = float(S.recall_score(golds, preds))
        m["f1"] = float(S.f1_score(golds, preds))
    elif int(c.get("eval_generate", 0)) > 0 and c.get("prompt_template"):
        m["bleu"] = generation_bleu(c, model, tok, rows_ev)
    model.train()
    return m


def generation_bleu(c, model, tok, rows):
    import sacrebleu
    import torch
    refs, prompts = {}, []
    for r in rows:
        p = fill(c["prompt_template"], r)
        ref = fill(c.get("completion_template", ""), r).lstrip(" ")
        if p not in refs:
            prompts.append(p)
            refs[p] = []
        refs[p].append(ref)
    prompts = prompts[:int(c["eval_generate"])]
    hyps = []
    for p in prompts:
        ids = torch.tensor([tok(p)["input_ids"]])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=int(c.get("max_new_tokens", 64)),
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
        text = tok.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True)
        hyps.append(text.split("\n")[0].lstrip(" "))
    n = max(len(refs[p]) for p in prompts)
    streams = [[refs[p][i] if i < len(refs[p]) else None for p in prompts] for i in range(n)]
    # sacrebleu takes one stream per reference position; missing references are None.
    return float(sacrebleu.corpus_bleu(hyps, streams).score)


# ---------------------------------------------------------------------------------------------
# One method, in its own process

def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(c, out_dir):
    import torch
    import transformers as T
    seed = int(c.get("seed", 42))
    random.seed(seed)
    torch.manual_seed(seed)
    tok = T.AutoTokenizer.from_pretrained(c["model"])
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    tr, ev, rows_ev, labels = build_data(c, tok)
    model = load_model(c, labels)
    if c["task"] != "causal_lm" and model.config.pad_token_id is None:
        model.config.pad_token_id = pad
    ignored = []
    if c["method"] == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        import peft
        cfg, ignored = peft_config(c, len(labels) if labels else 0)
        model = peft.get_peft_model(model, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if c["method"] != "full":
        trainable, total = model.get_nb_trainable_parameters()
    model.train()

    before = evaluate(c, model, tok, ev, rows_ev, labels, pad)
    print("before:", json.dumps(before), flush=True)

    bs, steps = int(c.get("per_device_train_batch_size", 8)), int(c.get("max_steps", 0) or 0)
    if steps <= 0:
        steps = math.ceil(len(tr) / bs) * int(c.get("num_train_epochs", 3))
    decay = set(T.trainer_pt_utils.get_parameter_names(model, [torch.nn.LayerNorm], ["bias", "layernorm", "rmsnorm"]))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    wd = float(c.get("weight_decay", 0.0))
    groups = [{"params": [p for n, p in named if n in decay], "weight_decay": wd},
              {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=float(c["learning_rate"]), betas=(float(c.get("adam_beta1", 0.9)),
                            float(c.get("adam_beta2", 0.999))), eps=float(c.get("adam_epsilon", 1e-8)))
    warm = int(c.get("warmup_steps", 0) or 0) or math.ceil(float(c.get("warmup_ratio", 0.0)) * steps)
    sched = T.get_scheduler(c.get("lr_scheduler_type", "linear"), opt, num_warmup_steps=warm,
                            num_training_steps=steps)
    g = torch.Generator().manual_seed(seed)
    order, pos, step, tokens, wall, cpu, losses = [], 0, 0, 0, 0.0, 0.0, []
    adalora = c["method"] == "adalora"
    while step < steps:
        if pos >= len(order):  # a new epoch; its last batch may be short, as the DataLoader's
            order, pos = torch.randperm(len(tr), generator=g).tolist(), 0
        idx = order[pos:pos + bs]
        pos += bs
        batch = collate([tr[i] for i in idx], pad, c["task"])
        t0, c0 = time.perf_counter(), time.process_time()
        if c["task"] == "token_cls" and c["method"] in ("prompt_tuning", "p_tuning"):
            # PEFT passes TOKEN_CLS labels unchanged while the logits carry the virtual tokens
            # first ("Expected input batch_size ... to match target"): the loss over the real positions.
            gold = batch.pop("labels")
            logits = model(**batch).logits[:, -gold.shape[1]:]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), gold.reshape(-1),
                                                     ignore_index=-100)
            batch["labels"] = gold
        else:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in named], float(c.get("max_grad_norm", 1.0)))
        opt.step()
        sched.step()
        step += 1
        if adalora:
            model.base_model.update_and_allocate(step)
        opt.zero_grad(set_to_none=True)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        tokens += int(batch["attention_mask"].sum())
        losses.append(loss.item())
        every = int(c.get("logging_steps", 50))
        if step % every == 0:
            print(f"step {step}/{steps}  loss {sum(losses[-every:]) / every:.4f}  {tokens / wall:.0f} tok/s", flush=True)
    after = evaluate(c, model, tok, ev, rows_ev, labels, pad)
    print("after:", json.dumps(after), flush=True)
    res = {"method": c["method"], "task": c["task"], "trainable_params": int(trainable), "all_params": int(total),
           "steps": step, "train_loss": sum(losses) / len(losses), "train_tokens": tokens,
           "train_seconds": wall, "train_cpu_seconds": cpu,
           "train_tokens_per_second": tokens / wall, "train_tokens_per_cpu_second": tokens / cpu,
           "peak_rss_mb": peak_rss_mb(), "metrics": after, "metrics_before": before,
           "torch_threads": torch.get_num_threads(), "ignored_settings": ignored}
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, "results.json"))


# ---------------------------------------------------------------------------------------------
# The table

def fmt(v, p):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{p}f}"


def load_results(d, m):
    p = os.path.join(d, m, "results.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def table(methods, py_dir, ours_dir):
    rows = {m: load_results(py_dir, m) for m in methods}
    ours = {m: load_results(ours_dir, m) for m in methods} if ours_dir else {}
    names = []
    for r in list(rows.values()) + list(ours.values()):
        for k in (r or {}).get("metrics", {}):
            if k not in names:
                names.append(k)
    names.sort(key=lambda k: k != "eval_loss")
    head = "| method | side | trainable % | peak RSS (MB) | tokens/s | tokens/CPU-s |" + "".join(
        f" {n} (before → after) |" for n in names)
    out = [head, "|---|---|---:|---:|---:|---:|" + "---:|" * len(names)]

    def line(m, side, r):
        if r is None:
            return f"| {m} | {side} | not run |" + " |" * (3 + len(names))
        pct = 100.0 * r["trainable_params"] / r["all_params"] if r.get("all_params") else float("nan")
        cps = r.get("train_tokens_per_cpu_second")
        if cps is None and r.get("train_cpu_seconds"):
            cps = r["train_tokens"] / r["train_cpu_seconds"]
        cells = [f"{fmt(r['metrics_before'].get(n), 4)} → {fmt(r['metrics'].get(n), 4)}" if n in r["metrics"] else "n/a"
                 for n in names]
        return (f"| {m} | {side} | {fmt(pct, 4)} | {fmt(r['peak_rss_mb'], 0)} | {fmt(r['train_tokens_per_second'], 0)} | "
                f"{fmt(cps, 0)} | " + " | ".join(cells) + " |")
    for m in methods:
        if ours_dir:
            out.append(line(m, "peft.cpp", ours.get(m)))
        out.append(line(m, "Python PEFT", rows[m]))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--methods")
    ap.add_argument("--out")
    ap.add_argument("--ours", help="a peft compare output folder, for the side-by-side table")
    ap.add_argument("--table-only", action="store_true", help="only (re)write compare.md from results present")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    root, cmp = load_config(a.config, a.overrides)
    methods = a.methods.split(",") if a.methods else (cmp.get("methods") or ALL_METHODS)
    out = a.out or ((cmp.get("output_dir") or "compare") + "-python")
    if a.worker:
        worker(method_config(root, cmp, a.worker, a.overrides), os.path.join(out, a.worker))
        return
    os.makedirs(out, exist_ok=True)
    for m in methods if not a.table_only else []:
        d = os.path.join(out, m)
        os.makedirs(d, exist_ok=True)
        cmd = [sys.executable, os.path.abspath(__file__), a.config, *a.overrides, "--worker", m, "--out", out]
        print(f"[compare_peft] {m}: log {d}/train.log", flush=True)
        with open(os.path.join(d, "train.log"), "w") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
        print(f"[compare_peft] {m}: {'done' if rc == 0 else f'FAILED (exit {rc})'}", flush=True)
    t = table(methods, out, a.ours)
    with open(os.path.join(out, "compare.md"), "w") as f:
        f.write(f"# {a.config} in Python PEFT\n\n" + t)
    print(t)


if __name__ == "__main__":
    main()
