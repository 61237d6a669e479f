// Training data as `peft train` reads it: read_rows (CSV, TSV, JSONL, a JSON array) or read_conll,
// then the rows tokenised for a task (build_dataset / build_token_dataset with the llama2.c
// fixture tokenizer), batched, collated and packed. Input: 4 control bytes, then the file.
//   byte 0: format (csv, tsv, jsonl, json, conll, csv or tsv without a header row)
//   byte 1: task (bits 0-1), skip_bad_rows, multi_label, regression, prompt+completion or text
//           pair, label_regex, add_eos
//   byte 2: which columns hold the text (bits 0-3) and the label or target (bits 4-7)
//   byte 3: max_length and the CoNLL tag column
// Any file must give rows or FormatError; building, ConfigError / FormatError naming the row.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "peft/core/error.h"
#include "peft/core/file_util.h"
#include "peft/io/tokenizer.h"
#include "peft/train/data.h"

namespace fs = std::filesystem;
using namespace peft::train;

namespace {

const peft::io::Tokenizer& tokenizer() {
  static const peft::io::Tokenizer tok = [] {
    const std::string dir = peft::fuzz::scratch_dir() + "/tokenizer";
    fs::create_directories(dir);
    const std::string fixtures = PEFT_SOURCE_DIR "/tests/fixtures/gguf/models/tiny_llama/hf/";
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(fixtures + f, dir + "/" + f);
    return peft::io::Tokenizer::from_pretrained(dir);
  }();
  return tok;
}

const char* const kExtensions[] = {".csv", ".tsv", ".jsonl", ".json", ".conll", ".csv", ".tsv"};

std::string pick(const std::vector<std::string>& names, unsigned i) {
  return names.empty() ? "text" : names[i % names.size()];
}

void use(const Dataset& d, bool causal, unsigned batch) {
  const auto batches = make_batches(d, 1 + batch % 4, /*shuffle=*/true, batch, /*group_by_length=*/batch & 4);
  std::size_t seen = 0;
  for (const auto& b : batches) {
    const Batch c = collate(d, b, /*pad_id=*/0, /*pad_to_multiple_of=*/batch & 8 ? 8 : 0);
    if (c.input_ids.size() != static_cast<std::size_t>(c.rows * c.cols)) std::abort();
    seen += b.size();
  }
  if (seen != d.examples.size()) std::abort();
  if (causal) (void)pack(d, 1 + batch % 16);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const unsigned fmt = data[0] % 7, flags = data[1], cols = data[2], len = data[3];
  const std::string path = peft::fuzz::write_scratch(std::string("data") + kExtensions[fmt],
                                                     peft::fuzz::as_text(data + 4, size - 4));
  DataOptions o;
  o.skip_bad_rows = flags & 4;
  o.max_length = 1 + len % 64;
  o.add_eos = flags & 128;
  try {
    if (fmt == 4) {
      const auto sents = read_conll(path, static_cast<int>(len % 5) - 1);
      for (const auto& s : sents)
        if (s.tokens.size() != s.tags.size() || s.tokens.empty()) std::abort();
      o.task = TaskFormat::TokenCls;
      o.add_prefix_space = flags & 32;
      use(build_token_dataset(sents, tokenizer(), o), false, flags);
      return 0;
    }
    const std::vector<std::string> header =
        fmt >= 5 ? std::vector<std::string>{"text", "label", "extra"} : std::vector<std::string>{};
    const auto rows = read_rows(path, header);
    std::vector<std::string> names;
    if (!rows.empty())
      for (const auto& [k, v] : rows.front().fields) names.push_back(k);
    const TaskFormat tasks[] = {TaskFormat::CausalLM, TaskFormat::SeqCls, TaskFormat::Seq2Seq, TaskFormat::SeqCls};
    o.task = tasks[flags % 4];
    o.text_column = pick(names, cols & 15);
    o.label_column = o.target_column = pick(names, cols >> 4);
    o.source_column = o.text_column;
    if (flags & 32) {
      if (o.task == TaskFormat::CausalLM) {
        o.prompt_column = o.text_column;
        o.completion_column = o.label_column;
        o.prompt_suffix = " ||";
      } else {
        o.text_pair_column = pick(names, (cols & 15) + 1);
      }
    }
    if (o.task == TaskFormat::SeqCls) {
      o.multi_label = flags & 8;
      if (flags & 16) o.label_names = {kRegressionLabel};
      if (flags & 64) o.label_regex = "familyFriendly\\[(\\w+)\\]";
    }
    use(build_dataset(rows, tokenizer(), o), o.task == TaskFormat::CausalLM, flags);
  } catch (const peft::FormatError&) {
  } catch (const peft::ConfigError&) {
  }
  return 0;
}
