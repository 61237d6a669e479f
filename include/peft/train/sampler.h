#pragma once
// DistributedSampler (tier 0: torch-free): every rank draws the same per-epoch order and takes its
// slice of each global batch, so N ranks with batch b see exactly the batches of one process with
// batch N*b (mirrors torch.utils.data.DistributedSampler's contract: same seed and epoch on every
// rank, a disjoint shard per rank).
#include <cstdint>
#include <vector>

#include "peft/train/data.h"

namespace peft::train {

class DistributedSampler {
 public:
  DistributedSampler(int64_t per_rank_batch, int rank, int world_size, bool shuffle, uint64_t seed,
                     bool group_by_length);

  int64_t global_batch() const { return batch_ * world_; }

  /// The example order of `epoch`, the same on every rank: make_batches(d, order_batch, shuffle,
  /// seed + epoch, group_by_length) flattened. `order_batch` is the global batch the epoch began with
  /// (group_by_length's megabatches depend on it), so a resume with another world size keeps the order.
  std::vector<int64_t> epoch_order(const Dataset& d, int64_t epoch, int64_t order_batch) const;

  /// This rank's batches of `epoch`, after the first `consumed` examples of the order: global batch k
  /// is order[consumed + k*G, consumed + (k+1)*G) with G = global_batch(), and this rank gets its
  /// [rank*b, (rank+1)*b) part. A short last global batch can leave a rank an empty batch.
  std::vector<std::vector<int64_t>> rank_batches(const Dataset& d, int64_t epoch, int64_t order_batch,
                                                 int64_t consumed) const;

 private:
  int64_t batch_;
  int rank_, world_;
  bool shuffle_;
  uint64_t seed_;
  bool group_by_length_;
};

}  // namespace peft::train
