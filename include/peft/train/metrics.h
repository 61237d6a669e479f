#pragma once
// Evaluation metrics, each matching one Python reference implementation exactly (tier 0:
// torch-free). Golden values: tests/fixtures/metrics/metrics.json (tools/reference/gen_metrics.py).
//
// Every function that takes two parallel inputs throws std::invalid_argument naming both sizes
// when they differ. Empty inputs throw too (the references raise or return NaN there), except
// entity_f1, which returns all zeros like seqeval.
#include <cstdint>
#include <string>
#include <vector>

namespace peft::train {

/// Fraction of positions where pred == gold (sklearn.metrics.accuracy_score), in [0, 1].
double accuracy(const std::vector<int64_t>& pred, const std::vector<int64_t>& gold);

/// sklearn.metrics.f1_score(gold, pred, average="macro", zero_division=0): the unweighted mean of
/// the per-label F1 over the union of labels present in gold and pred, in [0, 1].
double macro_f1(const std::vector<int64_t>& pred, const std::vector<int64_t>& gold);

/// sklearn.metrics.f1_score(gold, pred, pos_label=positive, average="binary", zero_division=0): the
/// F1 of the positive class, as GLUE reports it for MRPC and QQP, in [0, 1].
double binary_f1(const std::vector<int64_t>& pred, const std::vector<int64_t>& gold, int64_t positive = 1);

/// sklearn.metrics.mean_squared_error(gold, pred).
double mean_squared_error(const std::vector<double>& pred, const std::vector<double>& gold);
/// scipy.stats.pearsonr(pred, gold)[0]; NaN when either input is constant (scipy warns and returns NaN).
double pearson(const std::vector<double>& pred, const std::vector<double>& gold);
/// scipy.stats.spearmanr(pred, gold)[0]: Pearson of the ranks, tied values getting their average rank.
double spearman(const std::vector<double>& pred, const std::vector<double>& gold);

/// Multi-label scores over 0/1 indicator rows (one row per example, one column per label), as
/// sklearn computes them on indicator matrices with zero_division=0: micro F1 (tp, fp, fn summed
/// over all cells), macro F1 (mean over every column, a column with no gold and no predicted 1
/// counting 0) and subset accuracy (accuracy_score: the fraction of rows predicted exactly).
struct MultiLabelScores {
  double micro_f1 = 0, macro_f1 = 0, subset_accuracy = 0;
};
MultiLabelScores multi_label_scores(const std::vector<std::vector<int64_t>>& pred,
                                    const std::vector<std::vector<int64_t>>& gold);

/// Entity-level scores (micro-averaged over entity types).
struct EntityScores {
  double precision = 0, recall = 0, f1 = 0;
  int64_t n_pred = 0, n_gold = 0, n_correct = 0;
};

/// seqeval.metrics.{precision,recall,f1}_score with the default (non-strict, conlleval-compatible)
/// chunking: IOB1/IOB2/IOE/IOBES tags "B-PER", "I-LOC", "O", ... are read leniently (an I- after O
/// or after another type starts an entity). Sentences are joined with an "O" between them, as
/// seqeval does. gold[i] and pred[i] must have the same length. Scores are in [0, 1].
EntityScores entity_f1(const std::vector<std::vector<std::string>>& gold,
                       const std::vector<std::vector<std::string>>& pred);

/// sacrebleu.corpus_bleu(hyps, refs) with the defaults (13a tokenizer, case-sensitive, exp
/// smoothing, 4-grams), in [0, 100]. refs_per_hyp[i] holds the references of hyps[i] (at least
/// one; counts may differ between hypotheses). Text is UTF-8.
double corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::vector<std::string>>& refs_per_hyp);

/// rouge_score.RougeScorer(["rougeL"]) F-measure (default tokenizer: lowercase, every run of
/// characters outside [a-z0-9] is a separator, no stemming), taking the best reference per
/// hypothesis (score_multi), averaged over hypotheses and scaled to [0, 100].
double rouge_l(const std::vector<std::string>& hyps, const std::vector<std::vector<std::string>>& refs_per_hyp);

/// exp(mean_loss): the perplexity for a mean token cross-entropy in nats (inf on overflow).
double perplexity(double mean_loss);

namespace detail {
/// sacrebleu's 13a tokenisation of one segment (after rstrip), tokens joined by single spaces.
std::string tokenize_13a(const std::string& line);
/// rouge_score's default tokenisation.
std::vector<std::string> tokenize_rouge(const std::string& text);
}  // namespace detail

}  // namespace peft::train
