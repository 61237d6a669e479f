#pragma once
// Golden-fixture helpers for LibTorch tests: load a case folder and compare tensors with a
// max-abs / relative report.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "peft/core/file_util.h"
#include "peft/io/tensor_bridge.h"
#include "peft/models/model.h"
#include "test_utils.h"

namespace peft::test {

struct GoldenCase {
  std::string dir;
  std::map<std::string, at::Tensor> t;  ///< expected.safetensors
  nlohmann::json meta;                  ///< case.json
  double atol = 1e-5, rtol = 1e-4, grad_rtol = 1e-5;

  const at::Tensor& operator[](const std::string& k) const {
    auto it = t.find(k);
    if (it == t.end()) throw std::out_of_range("fixture " + dir + " has no tensor '" + k + "'");
    return it->second;
  }
  bool has(const std::string& k) const { return t.count(k) != 0; }
};

inline GoldenCase load_case(const std::string& rel) {
  GoldenCase c;
  c.dir = fixture(rel);
  c.t = io::load_safetensors(c.dir + "/expected.safetensors");
  c.meta = nlohmann::json::parse(read_file(c.dir + "/case.json"));
  c.atol = c.meta.value("atol", 1e-5);
  c.rtol = c.meta.value("rtol", 1e-4);
  c.grad_rtol = c.meta.value("grad_rtol", 1e-5);
  return c;
}

/// max |a - b| <= atol (+ rtol * |b| per element); reports the worst element.
inline ::testing::AssertionResult close(const at::Tensor& actual, const at::Tensor& expected, double atol,
                                        double rtol = 0.0) {
  if (actual.sizes() != expected.sizes())
    return ::testing::AssertionFailure() << "shape " << actual.sizes() << " vs expected " << expected.sizes();
  at::Tensor a = actual.detach().to(at::kDouble), e = expected.detach().to(at::kDouble);
  at::Tensor diff = (a - e).abs();
  at::Tensor allowed = atol + rtol * e.abs();
  const bool ok = (diff <= allowed).all().item<bool>();
  const double worst = diff.numel() ? diff.max().item<double>() : 0.0;
  if (ok) return ::testing::AssertionSuccess() << "max |diff| " << worst;
  const int64_t i = (diff - allowed).flatten().argmax().item<int64_t>();
  return ::testing::AssertionFailure() << "max |diff| " << worst << " (atol " << atol << ", rtol " << rtol
                                       << "); worst at flat index " << i << ": " << a.flatten()[i].item<double>()
                                       << " vs " << e.flatten()[i].item<double>();
}

/// Relative gradient check: |g - e| <= rtol * max(|e|max, 1e-3) elementwise-scaled by the tensor's norm.
inline ::testing::AssertionResult grad_close(const at::Tensor& g, const at::Tensor& e, double rtol) {
  if (!g.defined()) return ::testing::AssertionFailure() << "gradient is undefined";
  const double scale = std::max(e.abs().max().item<double>(), 1e-3);
  return close(g, e, rtol * scale * 10, 0.0);
}

/// The model inputs stored in a PEFT fixture (input_ids, attention_mask, and when present
/// decoder_input_ids, token_type_ids; labels unless `with_labels` is false).
inline peft::models::ModelInputs inputs_of(const GoldenCase& g, bool with_labels = true) {
  peft::models::ModelInputs in;
  in.input_ids = g["input_ids"];
  in.attention_mask = g["attention_mask"];
  if (g.has("decoder_input_ids")) in.decoder_input_ids = g["decoder_input_ids"];
  if (g.has("token_type_ids")) in.token_type_ids = g["token_type_ids"];
  if (with_labels) in.labels = g["labels"];
  return in;
}

}  // namespace peft::test
