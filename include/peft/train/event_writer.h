#pragma once
// TensorBoard scalar logging without TensorFlow or protobuf (tier 0: torch-free).
//
// The file is a TFRecord stream of hand-encoded `tensorflow.Event` messages:
//   record = uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
// (all little-endian). The first record holds file_version "brain.Event:2"; each add_scalar
// appends Event{wall_time=1, step=2, summary=5 -> Summary.value=1 -> {tag=1, simple_value=2}}.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace peft::train {

/// CRC-32C (Castagnoli), as used by TFRecord. crc32c("123456789") == 0xE3069283.
uint32_t crc32c(const void* data, std::size_t n, uint32_t crc = 0);

/// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(const void* data, std::size_t n);

/// Writes `<log_dir>/events.out.tfevents.<unix time>.<host>.<pid>.<n>` (the torch.utils.tensorboard
/// naming; <n> counts writers in this process so two writers never share a file). Creates
/// log_dir. Records are buffered and reach the disk on flush(), every few seconds during
/// add_scalar, and in the destructor. Thread-safe.
class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::string& log_dir);
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;
  TensorBoardWriter(TensorBoardWriter&&) noexcept;
  TensorBoardWriter& operator=(TensorBoardWriter&&) noexcept;
  ~TensorBoardWriter();

  /// Logs one scalar (stored as float32, as TensorBoard does). wall_time < 0 means now.
  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time = -1);
  /// Pushes buffered records to the file (fflush).
  void flush();
  /// The event file being written.
  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace peft::train
