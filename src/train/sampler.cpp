// DistributedSampler: one order per epoch for all ranks, sliced per rank.
#include "peft/train/sampler.h"

#include <algorithm>

#include "peft/core/check.h"

namespace peft::train {

DistributedSampler::DistributedSampler(int64_t per_rank_batch, int rank, int world_size, bool shuffle, uint64_t seed,
                                       bool group_by_length)
    : batch_(per_rank_batch), rank_(rank), world_(world_size), shuffle_(shuffle), seed_(seed),
      group_by_length_(group_by_length) {
  PEFT_CHECK(per_rank_batch > 0, ConfigError, "[DistributedSampler] per-rank batch size must be > 0, got ", per_rank_batch);
  PEFT_CHECK(world_size > 0 && rank >= 0 && rank < world_size, ConfigError, "[DistributedSampler] rank ", rank,
             " is outside [0, ", world_size, ")");
}

std::vector<int64_t> DistributedSampler::epoch_order(const Dataset& d, int64_t epoch, int64_t order_batch) const {
  std::vector<int64_t> order;
  order.reserve(d.examples.size());
  for (const auto& b : make_batches(d, order_batch, shuffle_, seed_ + static_cast<uint64_t>(epoch), group_by_length_))
    order.insert(order.end(), b.begin(), b.end());
  return order;
}

std::vector<std::vector<int64_t>> DistributedSampler::rank_batches(const Dataset& d, int64_t epoch,
                                                                   int64_t order_batch, int64_t consumed) const {
  const std::vector<int64_t> order = epoch_order(d, epoch, order_batch);
  const auto n = static_cast<int64_t>(order.size());
  PEFT_CHECK(consumed >= 0 && consumed <= n, ConfigError, "[DistributedSampler] resume position ", consumed,
             " is outside the epoch of ", n, " examples");
  std::vector<std::vector<int64_t>> out;
  for (int64_t s = consumed; s < n; s += global_batch()) {
    const int64_t lo = std::min(n, s + rank_ * batch_), hi = std::min(n, s + (rank_ + 1) * batch_);
    out.emplace_back(order.begin() + lo, order.begin() + hi);
  }
  return out;
}

}  // namespace peft::train
