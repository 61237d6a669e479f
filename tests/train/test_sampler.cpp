// The data-parallel sampler: N ranks with batch b see the batches of one process with batch N*b,
// and a resume with another world size continues the same order.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "peft/core/error.h"
#include "peft/train/data.h"
#include "peft/train/sampler.h"
#include "test_utils.h"

namespace {

peft::train::Dataset dataset() { return peft::test::tiny_causal_dataset(); }

TEST(DistributedSampler, RanksShareTheSingleProcessBatches) {
  const auto d = dataset();
  for (bool group : {false, true}) {
    const peft::train::DistributedSampler one(6, 0, 1, true, 42, group), r0(3, 0, 2, true, 42, group), r1(3, 1, 2, true, 42, group);
    const auto whole = peft::train::make_batches(d, 6, true, 42 + 1, group);
    const auto b = one.rank_batches(d, 1, 6, 0), b0 = r0.rank_batches(d, 1, 6, 0), b1 = r1.rank_batches(d, 1, 6, 0);
    ASSERT_EQ(b, whole);
    ASSERT_EQ(b0.size(), whole.size());
    ASSERT_EQ(b1.size(), whole.size());
    for (std::size_t k = 0; k < whole.size(); ++k) {
      std::vector<int64_t> u = b0[k];
      u.insert(u.end(), b1[k].begin(), b1[k].end());
      EXPECT_EQ(u, whole[k]) << "global batch " << k;
    }
    EXPECT_EQ(b1.back().size(), 1u);  // 22 = 3*6 + 4: rank 1 gets one example of the last batch
    // Resume after 12 examples with 3 ranks x 2: the rest of the same order.
    const peft::train::DistributedSampler r3(2, 2, 3, true, 42, group);
    const auto rest = r3.rank_batches(d, 1, 6, 12);
    const auto order = one.epoch_order(d, 1, 6);
    ASSERT_EQ(rest.size(), 2u);
    EXPECT_EQ(rest[0], std::vector<int64_t>(order.begin() + 16, order.begin() + 18));
  }
  peft::test::expect_throw_with<peft::ConfigError>([] { peft::train::DistributedSampler(2, 2, 2, true, 0, false); },
                                                   {"rank 2", "[0, 2)"});
}

}  // namespace
