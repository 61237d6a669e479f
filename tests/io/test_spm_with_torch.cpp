// LibTorch (which loads the system libprotobuf) and SentencePiece (whose library embeds its own
// protobuf-lite) in one process: the tokenizer loads libsentencepiece through the isolated
// peft_spm module, so neither binds to the other's protobuf.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "peft/io/tokenizer.h"
#include "test_utils.h"

namespace {

using peft::io::TokenId;
using peft::io::Tokenizer;

TEST(SentencePieceWithTorch, TensorThenSentencePieceModel) {
  const at::Tensor t = torch::arange(6, torch::kFloat32).reshape({2, 3});
  EXPECT_EQ(t.sum().item<float>(), 15.0f);

  auto tok = Tokenizer::from_sentencepiece(
      peft::test::fixture("tokenizers/sentencepiece/tokenizer.model"));
  // tests/fixtures/tokenizers/sentencepiece/expected.jsonl, line 0 of corpus.jsonl.
  const std::string line =
      "There is a place in the city centre, Alimentum, that is not family-friendly.";
  auto e = tok.encode(line, /*add_special_tokens=*/false);
  ASSERT_GE(e.ids.size(), 5u);
  EXPECT_EQ(std::vector<TokenId>(e.ids.begin(), e.ids.begin() + 5),
            (std::vector<TokenId>{293, 267, 282, 259, 290}));
  EXPECT_EQ(e.ids.size(), 37u);
  EXPECT_EQ(tok.decode(e.ids), line);
  EXPECT_EQ(tok.encode("Once").ids.front(), 1);  // BOS

  // And LibTorch still works afterwards, on the ids.
  const at::Tensor ids = torch::tensor(std::vector<int64_t>(e.ids.begin(), e.ids.end()));
  EXPECT_EQ(ids.numel(), 37);
  EXPECT_EQ(ids[0].item<int64_t>(), 293);
}

}  // namespace
