#include "peft/train/event_writer.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <system_error>

#include "peft/core/check.h"

namespace peft::train {

namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected Castagnoli
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

// ---- protobuf wire format (just what Event needs)
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
template <typename T>
void put_le(std::string& out, T v) {  // fixed-width little-endian
  unsigned char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  std::reverse(b, b + sizeof(T));
#endif
  out.append(reinterpret_cast<const char*>(b), sizeof(T));
}
void put_key(std::string& out, uint32_t field, uint32_t wire_type) { put_varint(out, (field << 3) | wire_type); }
void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}

/// Event{wall_time, step (omitted when 0, as proto3 does), <extra field bytes>}.
std::string encode_event(double wall_time, int64_t step, const std::string& tail) {
  std::string ev;
  put_key(ev, 1, 1);  // wall_time: double
  put_le(ev, wall_time);
  if (step != 0) {
    put_key(ev, 2, 0);  // step: int64 varint (two's complement, 10 bytes when negative)
    put_varint(ev, static_cast<uint64_t>(step));
  }
  ev += tail;
  return ev;
}

double now_seconds() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count() / 1e6;
}

std::atomic<int> g_writer_count{0};

}  // namespace

uint32_t crc32c(const void* data, std::size_t n, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = kCrc32cTable[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, std::size_t n) {
  const uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

struct TensorBoardWriter::Impl {
  std::string path;
  std::FILE* f = nullptr;
  std::mutex mu;
  double last_flush = 0;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    if (f) std::fclose(f);  // fclose flushes; errors cannot be reported from a destructor
  }

  void write_record(const std::string& data) {
    std::string rec;
    rec.reserve(data.size() + 16);
    put_le<uint64_t>(rec, data.size());
    put_le<uint32_t>(rec, masked_crc32c(rec.data(), 8));
    rec += data;
    put_le<uint32_t>(rec, masked_crc32c(data.data(), data.size()));
    PEFT_CHECK(std::fwrite(rec.data(), 1, rec.size(), f) == rec.size(), std::runtime_error,
               "[train::TensorBoardWriter] write to '", path, "' failed: ", std::strerror(errno));
  }
  void flush_locked() {
    PEFT_CHECK(std::fflush(f) == 0, std::runtime_error, "[train::TensorBoardWriter] flush of '", path,
               "' failed: ", std::strerror(errno));
    last_flush = now_seconds();
  }
};

TensorBoardWriter::TensorBoardWriter(const std::string& log_dir) : impl_(std::make_unique<Impl>()) {
  PEFT_CHECK(!log_dir.empty(), std::invalid_argument, "[train::TensorBoardWriter] log_dir is empty.");
  std::error_code ec;
  std::filesystem::create_directories(log_dir, ec);
  PEFT_CHECK(!ec, std::runtime_error, "[train::TensorBoardWriter] cannot create log_dir '", log_dir,
             "': ", ec.message());
  char host[256] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  const double t = now_seconds();
  char name[512];
  std::snprintf(name, sizeof(name), "events.out.tfevents.%010lld.%s.%d.%d", static_cast<long long>(t), host,
                static_cast<int>(::getpid()), g_writer_count.fetch_add(1));
  impl_->path = (std::filesystem::path(log_dir) / name).string();
  impl_->f = std::fopen(impl_->path.c_str(), "wb");
  PEFT_CHECK(impl_->f != nullptr, std::runtime_error, "[train::TensorBoardWriter] cannot open '", impl_->path,
             "' for writing: ", std::strerror(errno));
  std::string tail;
  put_bytes(tail, 3, "brain.Event:2");  // file_version
  impl_->write_record(encode_event(t, 0, tail));
  impl_->flush_locked();
}

TensorBoardWriter::TensorBoardWriter(TensorBoardWriter&&) noexcept = default;
TensorBoardWriter& TensorBoardWriter::operator=(TensorBoardWriter&&) noexcept = default;

TensorBoardWriter::~TensorBoardWriter() = default;

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  PEFT_CHECK(impl_, std::logic_error, "[train::TensorBoardWriter::add_scalar] writer was moved from.");
  std::string val;  // Summary.Value
  put_bytes(val, 1, tag);
  put_key(val, 2, 5);  // simple_value: float (fixed32)
  put_le(val, static_cast<float>(value));
  std::string summary;
  put_bytes(summary, 1, val);  // Summary.value (repeated)
  std::string tail;
  put_bytes(tail, 5, summary);  // Event.summary
  const double now = now_seconds();
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->write_record(encode_event(wall_time < 0 ? now : wall_time, step, tail));
  if (now - impl_->last_flush >= 5.0) impl_->flush_locked();
}

void TensorBoardWriter::flush() {
  PEFT_CHECK(impl_, std::logic_error, "[train::TensorBoardWriter::flush] writer was moved from.");
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->flush_locked();
}

const std::string& TensorBoardWriter::path() const {
  PEFT_CHECK(impl_, std::logic_error, "[train::TensorBoardWriter::path] writer was moved from.");
  return impl_->path;
}

}  // namespace peft::train
