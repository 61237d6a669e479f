#pragma once
// Checks shared by the decoder-only model tests (Llama, GPT-2) on a causal fixture with a
// left-padded batch of 2 × 7 (row 1 has 2 padding positions).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "golden.h"
#include "peft/models/generation.h"
#include "peft/models/model.h"

namespace peft::test {

/// A 4-token prefill then one token at a time through the KV cache equals one full forward.
inline void check_incremental_decoding(models::PretrainedModel& m, const GoldenCase& c) {
  torch::NoGradGuard ng;
  const at::Tensor ids = c["input_ids"], mask = c["attention_mask"];
  const at::Tensor pos_all = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1);
  models::ModelInputs full;
  full.input_ids = ids;
  full.attention_mask = mask;
  full.position_ids = pos_all;
  const at::Tensor ref = m.forward(full).logits;
  models::KVCache cache;
  for (int64_t t0 : {0, 4, 5, 6}) {
    const int64_t len = t0 == 0 ? 4 : 1;
    models::ModelInputs s;
    s.input_ids = ids.narrow(1, t0, len);
    s.attention_mask = mask.narrow(1, 0, t0 + len);
    s.position_ids = pos_all.narrow(1, t0, len);
    s.cache = &cache;
    const at::Tensor got = m.forward(s).logits;
    // Row 1 is left-padded; compare only its real positions.
    EXPECT_TRUE(close(got.select(0, 0), ref.select(0, 0).narrow(0, t0, len), c.atol));
    const int64_t real0 = std::max<int64_t>(t0, 2);
    if (real0 < t0 + len)
      EXPECT_TRUE(close(got.select(0, 1).narrow(0, real0 - t0, t0 + len - real0),
                        ref.select(0, 1).narrow(0, real0, t0 + len - real0), c.atol));
  }
  EXPECT_EQ(cache.length(), 7);
}

/// Greedy generation of 8 tokens on the left-padded batch equals transformers' generate.
inline void check_greedy_generation(models::PretrainedModel& m, const GoldenCase& c) {
  models::GenerationConfig g;
  g.max_new_tokens = 8;
  g.pad_token_id = 0;
  const at::Tensor out = models::generate(m, c["input_ids"], c["attention_mask"], g);
  EXPECT_TRUE(torch::equal(out, c["generated"])) << out << "\nvs\n" << c["generated"];
}

}  // namespace peft::test
