#pragma once
// Dataset layer of the trainer (tier 0: torch-free): file readers (JSONL/JSON, CSV, TSV, CoNLL),
// tokenisation per task format (HF run_clm / run_glue / run_ner / run_summarization conventions),
// seeded batching (optionally grouped by length), dynamic-padding collation and causal-LM packing.
// Errors are peft::FormatError "[train::data] file:line: message"; bad arguments are peft::ConfigError.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "peft/io/tokenizer.h"

namespace peft::train {

/// One raw record: column -> value, with its source position for errors.
struct Row {
  std::map<std::string, std::string> fields;
  std::string file;
  int64_t line = 0;  ///< 1-based line where the record starts (JSON array files: 1-based element number)
};

/// What the readers do with bytes that are not UTF-8: an error naming file:line and the byte
/// (default), or each ill-formed sequence replaced by U+FFFD with a warning giving the count
/// (Python's errors="replace").
enum class InvalidUtf8 { Error, Replace };

/// Reads .jsonl/.json (one object per line, or a .json file holding one array of objects; blank lines
/// skipped; string values kept as is, null values leave the column absent, other values — numbers, bools,
/// lists, objects — are dumped as compact JSON text, so ["a","b"] stays `["a","b"]`), .csv (RFC 4180:
/// comma separated, "..." quoting with "" for a quote, quoted fields may hold commas and newlines; header row)
/// or .tsv (tab separated, no quoting; header row). For .csv/.tsv a non-empty `columns` means the file has
/// no header row and names its columns; it is ignored for JSON. The format is chosen by the extension
/// (.jsonl .json .csv .tsv, case-insensitive). A UTF-8 BOM and CRLF line ends are accepted. Empty files,
/// malformed lines and rows whose field count differs from the header → FormatError "file:line: ...".
std::vector<Row> read_rows(const std::string& path, const std::vector<std::string>& columns = {},
                           InvalidUtf8 invalid_utf8 = InvalidUtf8::Error);

/// CoNLL column format (token ... tag per line, whitespace separated, blank line between sentences,
/// -DOCSTART- lines skipped): tokens + tags per sentence.
struct TaggedSentence {
  std::vector<std::string> tokens, tags;
  std::string file;
  int64_t line = 0;  ///< line of the first token; token i is on line + i
};
/// `tag_column` is 0-based; -1 = the last column. No sentences → FormatError.
std::vector<TaggedSentence> read_conll(const std::string& path, int tag_column = -1 /* last */,
                                       InvalidUtf8 invalid_utf8 = InvalidUtf8::Error);

enum class TaskFormat { CausalLM, SeqCls, TokenCls, Seq2Seq };
/// "CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS", "SEQ_2_SEQ_LM" (PEFT's TaskType strings).
std::string to_string(TaskFormat t);
TaskFormat task_format_from_string(const std::string& s);  ///< throws ConfigError on an unknown name

/// The label_names value that selects regression (float labels) for SeqCls.
inline const char* const kRegressionLabel = "__regression__";

struct DataOptions {
  TaskFormat task = TaskFormat::CausalLM;
  std::string text_column = "text";             ///< CausalLM plain text; SeqCls first text
  std::string text_pair_column;                 ///< SeqCls optional second text
  std::string prompt_column, completion_column; ///< CausalLM prompt+completion (loss on completion only) when both set
  std::string label_column = "label";           ///< SeqCls label
  /// SeqCls: the label is the first capture group (or the whole match) of this regex searched in
  /// label_column (Python's re.search), e.g. "familyFriendly\\[(\\w+)\\]" on E2E's meaning
  /// representation; a row where it does not match is a bad row. Empty = the column as is.
  std::string label_regex;
  std::string source_column = "source", target_column = "target";  ///< Seq2Seq
  /// SeqCls/TokenCls label set; empty = collect from data (sorted; numerically when all are integers).
  /// SeqCls: a value not in the set is accepted as an integer index in range. {"__regression__"} = float labels.
  std::vector<std::string> label_names;
  /// SeqCls multi-label classification (transformers' problem_type multi_label_classification):
  /// label_column holds any number of label names, as a JSON list (["sports", "politics"], from a
  /// JSON file's list value or its text) or separated by ';' ("sports;politics"; spaces around a
  /// name are trimmed); "" and [] mean no label. Labels become float multi-hot rows.
  bool multi_label = false;
  /// Truncation (keeps the start and the tokenizer's special tokens; pairs: longest_first; for
  /// prompt+completion keeps the end of the completion, dropping tokens from the start of the prompt).
  int64_t max_length = 512;
  bool add_eos = true;          ///< CausalLM: append eos to the target text (unless the tokenizer already did)
  bool skip_bad_rows = false;   ///< bad row: error naming file:line, or skip and count
  // ---- additions
  std::string prompt_suffix;    ///< CausalLM prompt+completion: appended to the prompt text (e.g. " ||")
  int64_t max_target_length = 0;       ///< Seq2Seq target truncation; 0 = max_length
  int64_t decoder_start_token_id = -1; ///< Seq2Seq decoder_input_ids = [start] + labels[:-1]; -1 = pad id
  /// TokenCls: prepend a space to every word (HF is_split_into_words with add_prefix_space=True, needed
  /// for byte-level BPE such as GPT-2/RoBERTa; leave false for WordPiece).
  bool add_prefix_space = false;
};

/// A tokenised example; labels use -100 for positions without loss.
/// CausalLM/TokenCls: labels align with input_ids. Seq2Seq: labels are the target ids and
/// decoder_input_ids the shifted target. SeqCls: `label` (class index), `label_value` (regression)
/// or `label_set` (multi-label: the indices of the example's labels, sorted).
struct Example {
  std::vector<int64_t> input_ids, labels, token_type_ids, decoder_input_ids, label_set;
  int64_t label = -100;
  double label_value = 0;
  int64_t task = -1;  ///< multi-task data (merge_tasks): index into Dataset::tasks
  int64_t source = -1;  ///< the row (build_dataset) or sentence (build_token_dataset) it was built from
};
/// One task of a multi-task classification dataset: its classes are label_names[label_offset,
/// label_offset + num_labels) of the joined set, and its head is that slice of the classifier.
struct TaskSpan {
  std::string name;
  int64_t label_offset = 0;
  int64_t num_labels = 0;
  std::vector<std::string> label_names;  ///< the task's own label names, in order
};
struct Dataset {
  std::vector<Example> examples;
  std::vector<std::string> label_names;
  std::vector<TaskSpan> tasks;  ///< empty unless the data joins several tasks (merge_tasks)
  bool multi_label = false;     ///< SeqCls multi-label data (examples carry label_set)
  int64_t skipped = 0;
  std::vector<std::string> skipped_reasons;  ///< "file:line: message", one per skipped row
};
/// The problem type of a SeqCls dataset, as transformers names it: "regression" (label_names ==
/// {"__regression__"}), "multi_label_classification" or "single_label_classification".
std::string problem_type(const Dataset& d);

/// Tokenises rows for opt.task (CausalLM, SeqCls or Seq2Seq; TokenCls needs build_token_dataset).
Dataset build_dataset(const std::vector<Row>& rows, const io::Tokenizer& tok, const DataOptions& opt);
/// Labels aligned to sub-tokens: first piece gets the tag id, continuation pieces -100, special tokens
/// -100 (HF run_ner convention, label_all_tokens=False). Words are encoded one by one (is_split_into_words).
Dataset build_token_dataset(const std::vector<TaggedSentence>& s, const io::Tokenizer& tok, const DataOptions& opt);

/// Multi-task classification (P-Tuning v2's multi-task prompts): joins the classification datasets
/// of several tasks — all SeqCls (a class per example) or all TokenCls (a tag per token) — into one
/// whose label set is the tasks' sets one after another ("task:label"), so one classifier of
/// sum(num_labels) rows holds a head per task. Each example keeps its task index and its labels are
/// shifted by the task's offset (-100 stays); shuffled batches then mix the tasks. Names must be
/// unique and non-empty, no set a regression or causal-LM set, and the kinds not mixed → ConfigError.
Dataset merge_tasks(const std::vector<std::string>& names, const std::vector<Dataset>& sets);

/// Batching: indices of examples per batch. Shuffled with a seeded std::mt19937_64 (own Fisher-Yates, so
/// identical on every platform), optionally grouped by length (HF group_by_length: megabatches of
/// 50*batch_size sorted by input length, longest first; the longest example overall goes to the first batch).
std::vector<std::vector<int64_t>> make_batches(const Dataset& d, int64_t batch_size, bool shuffle, uint64_t seed,
                                               bool group_by_length, bool drop_last = false);

/// Padded batch as flat row-major arrays (dynamic padding to the longest row, optional pad_to_multiple_of,
/// right padding; labels padded with -100, attention_mask 0 on padding, token_type_ids 0 on padding).
/// labels/token_type_ids are empty when no example has them. Seq2Seq: labels and decoder_input_ids are
/// rows x decoder_cols (decoder_input_ids padded with pad_id). seq_labels (class indices) is filled for
/// SeqCls classification, seq_values for regression (label_names == {"__regression__"}), seq_multi_hot
/// for multi-label data (rows x label_names.size(), 0/1); otherwise empty.
struct Batch {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> input_ids, attention_mask, labels, token_type_ids, decoder_input_ids;
  int64_t decoder_cols = 0;
  std::vector<int64_t> seq_labels;
  std::vector<double> seq_values;
  std::vector<float> seq_multi_hot;
  std::vector<int64_t> seq_tasks;  ///< multi-task data: each row's task index; empty otherwise
  int64_t n_tokens = 0;        ///< non-padding input tokens (sum of attention_mask)
  int64_t n_label_tokens = 0;  ///< label positions != -100 (before any causal shift)
};
Batch collate(const Dataset& d, const std::vector<int64_t>& idx, int64_t pad_id, int64_t pad_to_multiple_of = 0);

/// Packing for causal LM: concatenates examples (with their eos) into blocks of block_size (HF group_texts;
/// the remainder is dropped). Labels are concatenated too, so prompt masking survives packing.
Dataset pack(const Dataset& d, int64_t block_size);

}  // namespace peft::train
