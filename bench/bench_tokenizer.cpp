// Tokenizer encode throughput (MB/s of UTF-8 input) on the fixture corpus, single thread.
// Compare with bench/python/bench_tokenizer.py (HF tokenizers, Rust).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "peft/io/tokenizer.h"

namespace {

std::string fixtures() {
#ifdef PEFT_FIXTURES_DIR
  return std::string(PEFT_FIXTURES_DIR) + "/tokenizers/";
#else
  return "tests/fixtures/tokenizers/";
#endif
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? std::string(argv[1]) + "/" : fixtures();
  std::vector<std::string> lines;
  std::ifstream f(dir + "corpus.jsonl");
  for (std::string l; std::getline(f, l);) {
    if (!l.empty()) lines.push_back(nlohmann::json::parse(l).get<std::string>());
  }
  std::size_t bytes = 0;
  for (auto& l : lines) bytes += l.size();
  if (lines.empty()) {
    std::fprintf(stderr, "bench_tokenizer: no corpus at %scorpus.jsonl\n", dir.c_str());
    return 1;
  }
  std::printf("corpus: %zu lines, %zu bytes\n", lines.size(), bytes);
  struct Case {
    const char* name;
    peft::io::Tokenizer tok;
  };
  std::vector<Case> cases;
  for (const char* n : {"gpt2", "bert", "llama2c", "unigram"}) {
    cases.push_back({n, peft::io::Tokenizer::from_file(dir + n + "/tokenizer.json")});
  }
  cases.push_back({"sentencepiece",
                   peft::io::Tokenizer::from_sentencepiece(dir + "sentencepiece/tokenizer.model")});
  for (auto& c : cases) {
    std::size_t n_tok = 0;
    for (auto& l : lines) n_tok += c.tok.encode(l).ids.size();  // warm-up (fills BPE cache)
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      for (auto& l : lines) n_tok += c.tok.encode(l).ids.size();
      best = std::min(best, seconds_since(t0));
    }
    std::printf("%-14s encode %7.2f MB/s  (%.1f ms per corpus pass)\n", c.name,
                static_cast<double>(bytes) / best / 1e6, best * 1e3);
  }
  return 0;
}
