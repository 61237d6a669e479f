#!/usr/bin/env python3
"""Golden values for src/train/metrics.cpp -> tests/fixtures/metrics/metrics.json.

References: sacrebleu (corpus BLEU, 13a), rouge-score (rougeL), seqeval (entity P/R/F1, default
mode), scikit-learn (accuracy, macro F1, binary F1,
multi-label micro/macro F1 and subset accuracy, MSE), scipy (Pearson, Spearman). BLEU/ROUGE inputs are real E2E NLG dev-set references
(CC BY-SA 4.0, see tests/fixtures/metrics/SOURCE.txt); tag sequences and class labels are made up
here with a fixed seed.

Usage: /root/peft-venv/bin/python tools/reference/gen_metrics.py [--e2e /work/shared/data/e2e_nlg/devset.csv]
"""
import argparse
import collections
import csv
import json
import math
import os
import random
import warnings

import rouge_score
import sacrebleu
import seqeval
import scipy
import sklearn
from rouge_score import rouge_scorer
from rouge_score import tokenize as rouge_tokenize
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from seqeval.metrics import f1_score as seq_f1, precision_score as seq_p, recall_score as seq_r
from seqeval.metrics.sequence_labeling import get_entities
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error

from common import FIXTURES, write_manifest

N_MRS = 50


def load_e2e(path):
    groups = collections.OrderedDict()
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            groups.setdefault(row["mr"], []).append(row["ref"])
    # Every 9th MR with >= 3 references, to spread over the file (the dev set is sorted by MR).
    multi = [(mr, refs) for mr, refs in groups.items() if len(refs) >= 3]
    picked = multi[::max(1, len(multi) // N_MRS)][:N_MRS]
    assert len(picked) == N_MRS, len(picked)
    return picked


def perturb(text, rng):
    words = text.split()
    kind = rng.randrange(6)
    if kind == 0 and len(words) > 3:  # drop a few words
        for _ in range(max(1, len(words) // 5)):
            del words[rng.randrange(len(words))]
    elif kind == 1:  # swap adjacent words
        for _ in range(2):
            if len(words) > 2:
                i = rng.randrange(len(words) - 1)
                words[i], words[i + 1] = words[i + 1], words[i]
    elif kind == 2:  # truncate (brevity penalty)
        words = words[: max(1, len(words) // 2)]
    elif kind == 3:  # case change (BLEU is case-sensitive, ROUGE is not)
        words = [w.upper() if rng.random() < 0.3 else w for w in words]
    elif kind == 4:  # punctuation and entity noise
        words = [w + ("," if rng.random() < 0.2 else "") for w in words] + ["&amp;", "more..."]
    else:  # replace words
        vocab = ["restaurant", "food", "the", "cheap", "coffee", "shop", "Italian", "near", "£20-25", "5-star"]
        words = [rng.choice(vocab) if rng.random() < 0.3 else w for w in words]
    return " ".join(words)


def bleu(hyps, refs_per_hyp):
    n = max(len(r) for r in refs_per_hyp)
    streams = [[r[k] if k < len(r) else None for r in refs_per_hyp] for k in range(n)]
    return sacrebleu.corpus_bleu(hyps, streams).score


_SCORER = rouge_scorer.RougeScorer(["rougeL"])


def rouge_l(hyps, refs_per_hyp):
    fs = [_SCORER.score_multi(refs, h)["rougeL"].fmeasure for h, refs in zip(hyps, refs_per_hyp)]
    return 100.0 * sum(fs) / len(fs)


def text_cases(e2e, rng):
    ref_hyps = [refs[0] for _, refs in e2e]
    others = [refs[1:] for _, refs in e2e]
    pert = [perturb(h, rng) for h in ref_hyps]
    cases = [
        ("e2e_ref_as_hyp", ref_hyps, others),
        ("e2e_perturbed", pert, others),
        ("e2e_single_ref", ref_hyps, [[o[0]] for o in others]),
        ("e2e_perturbed_vs_all", pert, [refs for _, refs in e2e]),
        ("e2e_mixed_first10", ref_hyps[:5] + pert[5:10], others[:10]),
    ]
    handmade = [
        ("no_match", ["completely unrelated words"], [["The Vaults is a pub."]]),
        ("short_no_4grams", ["a pub", "cheap food ."], [["a pub in town"], ["cheap food and drinks ."]]),
        ("numbers_and_dashes", ["It costs 3.5 - 1,000 pounds, 5-star rated; 2-3 km."],
         [["It costs 3.5-1,000 pounds, a 5-star rating; 2-3 km away."]]),
        ("html_entities", ["Fish &amp; Chips &lt;b&gt; &quot;hot&quot; <skipped> end"],
         [['Fish & Chips <b> "hot" end', "fish and chips"]]),
        ("unicode", ["Le Café serves £20-25 food near the Rainbow Vegetarian Café."],
         [["Le Café serves food for £20-25, near Rainbow Vegetarian Café."]]),
        ("brevity", ["The Vaults"], [["The Vaults is a pub with high prices near Café Adriatic."]]),
        ("hyp_longer", ["The Vaults is a pub , a pub , a pub near Café Adriatic with prices high high"],
         [["The Vaults is a pub.", "The Vaults is a pub near Café Adriatic."]]),
        ("empty_hyp", ["", "The Vaults is a pub."], [["The Vaults is a pub."], ["The Vaults is a pub."]]),
        ("whitespace_and_newlines", ["  The  Vaults\tis a\npub -\n nearby.  \n"], [["The Vaults is a pub nearby."]]),
        ("periods_commas", ["a.b, c.,d 1.5, 2,5 x. y,"], [["a . b , c ., d 1.5 , 2,5 x . y ,"]]),
        ("tie_closest_len", ["one two three four five six"], [["one two three four five", "one two three four five six seven"]]),
    ]
    out = []
    for name, hyps, refs in cases + handmade:
        assert len(hyps) == len(refs), name
        out.append({"name": name, "hyps": hyps, "refs": refs, "bleu": bleu(hyps, refs), "rouge_l": rouge_l(hyps, refs)})
    # Single-hypothesis corpora for the first 12 perturbed E2E pairs.
    for i in range(12):
        h, r = pert[i], others[i]
        out.append({"name": f"e2e_single_sentence_{i}", "hyps": [h], "refs": [r], "bleu": bleu([h], [r]),
                    "rouge_l": rouge_l([h], [r])})

    tok = Tokenizer13a()
    tricky = [h for _, hyps, refs in handmade for h in hyps + [r for rs in refs for r in rs]] + ["x--y", "5-star, 10-12.", "a&b &amp;amp; c", "end-\n", "(a) [b] {c} ~d^e`f'g\"h",
                                                          "A.B.C. 1.2.3 ,.,.", "naïve café — déjà vu…", "\u00a0nbsp\u2003em\u3000ideo"]
    tok13a = [{"in": s, "out": tok(s.rstrip())} for s in ref_hyps + pert + tricky]
    tokrouge = [{"in": s, "out": rouge_tokenize.tokenize(s, None)}
                for s in ref_hyps[:10] + pert[:10] + tricky + ["İstanbul KELVIN \u212a x", "don't stop-me_now 3.5"]]
    return out, tok13a, tokrouge


TYPES = ["PER", "LOC", "ORG", "MISC"]


def random_tags(rng, n):
    tags = []
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            tags.append("O")
        elif r < 0.7:
            tags.append("B-" + rng.choice(TYPES))
        else:
            tags.append("I-" + rng.choice(TYPES))  # lenient IOB1: may follow O or another type
    return tags


def noisy_copy(rng, gold):
    pred = list(gold)
    for i in range(len(pred)):
        if rng.random() < 0.15:
            pred[i] = random_tags(rng, 1)[0]
    return pred


def entity_case(name, gold, pred):
    warnings.simplefilter("ignore")
    g = set(get_entities(gold))
    p = set(get_entities(pred))
    return {"name": name, "gold": gold, "pred": pred,
            "precision": seq_p(gold, pred), "recall": seq_r(gold, pred), "f1": seq_f1(gold, pred),
            "n_gold": len(g), "n_pred": len(p), "n_correct": len(g & p)}


def entity_cases(rng):
    cases = [
        entity_case("iob2_simple", [["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]]),
        entity_case("iob1_lenient", [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], ["O", "I-MISC"]],
                    [["B-PER", "I-PER", "O", "I-LOC", "I-LOC"], ["I-MISC", "I-MISC"]]),
        entity_case("type_switch", [["B-PER", "I-LOC", "I-LOC", "O"]], [["B-PER", "I-PER", "I-LOC", "O"]]),
        entity_case("sentence_boundary", [["O", "B-ORG"], ["I-ORG", "O"]], [["O", "B-ORG"], ["I-ORG", "O"]]),
        entity_case("iobes", [["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "E-ORG"]],
                    [["S-PER", "B-LOC", "E-LOC", "E-LOC", "O", "S-ORG"]]),
        entity_case("bare_and_odd_tags", [["B", "I", "O", "B-X-Y", "I-X-Y", "."]], [["B", "I", "O", "B-X-Y", "I-X", "."]]),
        entity_case("all_O", [["O", "O"], ["O"]], [["O", "O"], ["O"]]),
        entity_case("no_gold_entities", [["O", "O", "O"]], [["B-PER", "O", "I-LOC"]]),
        entity_case("no_pred_entities", [["B-PER", "O", "I-LOC"]], [["O", "O", "O"]]),
        entity_case("empty_sentences", [[], ["B-PER"], []], [[], ["B-PER"], []]),
    ]
    gold = [random_tags(rng, rng.randrange(1, 25)) for _ in range(200)]
    pred = [noisy_copy(rng, s) for s in gold]
    cases.append(entity_case("random_200_sentences", gold, pred))
    gold = [random_tags(rng, rng.randrange(1, 12)) for _ in range(30)]
    pred = [random_tags(rng, len(s)) for s in gold]
    cases.append(entity_case("random_unrelated", gold, pred))
    return cases


def label_cases(rng):
    cases = []
    specs = [
        ("binary", [1, 0, 1, 1, 0, 1], [1, 1, 1, 0, 0, 1]),
        ("pred_only_label", [0, 1, 2, 2], [0, 1, 2, 7]),
        ("gold_only_label", [5, 5, 5, 5], [5, 5, 3, 5]),
        ("negative_and_large", [-1, 10**12, -1, 4, 4], [-1, 10**12, 4, 4, -1]),
        ("all_correct", [3, 1, 2], [3, 1, 2]),
        ("all_wrong", [0, 0, 0], [1, 1, 1]),
    ]
    for k, n in ((3, 100), (5, 1000), (11, 257)):
        gold = [rng.randrange(k) for _ in range(n)]
        pred = [g if rng.random() < 0.6 else rng.randrange(k + 1) for g in gold]
        specs.append((f"random_{k}_classes_{n}", gold, pred))
    for name, gold, pred in specs:
        cases.append({"name": name, "gold": gold, "pred": pred,
                      "accuracy": float(accuracy_score(gold, pred)),
                      "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0))})
    return cases


def binary_cases(rng):
    # GLUE MRPC/QQP report the F1 of the positive class (label 1).
    specs = [("mrpc_like", [1, 0, 1, 1, 0, 1], [1, 1, 1, 0, 0, 1]), ("no_positive_pred", [1, 0, 1], [0, 0, 0]),
             ("no_positive_at_all", [0, 0], [0, 0]), ("all_positive", [1, 1, 1], [1, 1, 0])]
    gold = [rng.randrange(2) for _ in range(300)]
    specs.append(("random_300", gold, [g if rng.random() < 0.7 else 1 - g for g in gold]))
    return [{"name": n, "gold": g, "pred": p, "f1": float(f1_score(g, p, pos_label=1, average="binary", zero_division=0))}
            for n, g, p in specs]


def regression_cases(rng):
    # STS-B reports Pearson and Spearman (scipy: average ranks for ties) and the loss is MSE.
    specs = [("linear", [0.0, 1.0, 2.0, 3.0, 4.0], [0.1, 0.9, 2.2, 2.9, 4.5]),
             ("ties", [1.0, 2.0, 2.0, 3.0, 5.0, 5.0, 5.0], [1.5, 1.5, 2.0, 4.0, 3.0, 3.0, 6.0]),
             ("anti", [5.0, 4.0, 3.0, 2.0], [0.0, 1.0, 1.0, 3.0])]
    gold = [round(rng.uniform(0, 5), 1) for _ in range(200)]
    specs.append(("stsb_like_200", gold, [round(g + rng.gauss(0, 1), 2) for g in gold]))
    out = []
    for name, gold, pred in specs:
        out.append({"name": name, "gold": gold, "pred": pred, "mse": float(mean_squared_error(gold, pred)),
                    "pearson": float(pearsonr(pred, gold)[0]), "spearman": float(spearmanr(pred, gold)[0])})
    return out


def multilabel_cases(rng):
    specs = [("small", [[1, 0, 1], [0, 1, 0], [1, 1, 0]], [[1, 0, 0], [0, 1, 0], [1, 1, 0]]),
             ("unused_label", [[1, 0, 0], [0, 1, 0]], [[1, 0, 0], [1, 1, 0]]),
             ("empty_rows", [[0, 0], [1, 0]], [[0, 0], [0, 1]])]
    gold = [[int(rng.random() < 0.3) for _ in range(6)] for _ in range(150)]
    pred = [[g if rng.random() < 0.8 else 1 - g for g in row] for row in gold]
    specs.append(("random_150x6", gold, pred))
    out = []
    for name, gold, pred in specs:
        out.append({"name": name, "gold": gold, "pred": pred,
                    "micro_f1": float(f1_score(gold, pred, average="micro", zero_division=0)),
                    "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
                    "subset_accuracy": float(accuracy_score(gold, pred))})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--e2e", default="/work/shared/data/e2e_nlg/devset.csv")
    args = ap.parse_args()
    rng = random.Random(1234)
    e2e = load_e2e(args.e2e)
    texts, tok13a, tokrouge = text_cases(e2e, rng)
    data = {
        "text": texts,
        "tokenize_13a": tok13a,
        "tokenize_rouge": tokrouge,
        "entity_f1": entity_cases(rng),
        "labels": label_cases(rng),
        "binary_f1": binary_cases(rng),
        "regression": regression_cases(rng),
        "multi_label": multilabel_cases(rng),
        "perplexity": [{"loss": x, "expected": math.exp(x)} for x in (0.0, 0.5, 2.302585092994046, 3.7, 10.25, -0.1)],
    }
    folder = os.path.join(FIXTURES, "metrics")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")
    write_manifest(folder, e2e_source=args.e2e, n_mrs=N_MRS,
                   metric_versions={"sacrebleu": sacrebleu.__version__, "rouge_score": getattr(rouge_score, "__version__", "0.1.2"),
                                    "seqeval": getattr(seqeval, "__version__", "1.2.2"), "sklearn": sklearn.__version__,
                                    "scipy": scipy.__version__})
    print("wrote", os.path.join(folder, "metrics.json"),
          {k: len(v) for k, v in data.items()})


if __name__ == "__main__":
    main()
