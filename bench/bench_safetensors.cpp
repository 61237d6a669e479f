// safetensors load throughput: validate + map, and validate + copy into at::Tensor.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>

#include "peft/io/safetensors.h"
#include "peft/io/tensor_bridge.h"

namespace {

const std::string& bench_file() {
  static const std::string path = [] {
    auto p = (std::filesystem::temp_directory_path() / "peft_bench.safetensors").string();
    std::map<std::string, at::Tensor> ts;
    for (int i = 0; i < 64; ++i) ts["layer." + std::to_string(i) + ".weight"] = torch::randn({512, 512});
    peft::io::save_safetensors(p, ts);
    return p;
  }();
  return path;
}

void BM_open_validate(benchmark::State& st) {
  for (auto _ : st) benchmark::DoNotOptimize(peft::io::SafetensorsFile::open(bench_file()).size());
}
BENCHMARK(BM_open_validate);

void BM_load_copy(benchmark::State& st) {
  const auto bytes = std::filesystem::file_size(bench_file());
  for (auto _ : st) benchmark::DoNotOptimize(peft::io::load_safetensors(bench_file()).size());
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * bytes));
}
BENCHMARK(BM_load_copy);

}  // namespace

BENCHMARK_MAIN();
