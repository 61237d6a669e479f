// Blockwise 4-bit quantisation. Mirrors bitsandbytes 0.50.2: backends/default/ops.py
// (quantize_4bit: x * (1/absmax), clamp, bucketize on code midpoints, high nibble first),
// functional.py (quantize_4bit with compress_statistics, create_dynamic_map, get_4bit_type,
// QuantState.as_dict) and csrc/cpu_ops.cpp (CPU quantize_blockwise: x * (1/absmax) through a
// 65,536-bin lookup table of nearest codes).
#include "peft/quant/quantize.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cfloat>
#include <nlohmann/json.hpp>
#include <numeric>

#include "peft/core/check.h"
#include "peft/core/json_file.h"

namespace peft::quant {

namespace {

constexpr std::array<float, 16> kNF4 = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// Sign bit + 3 bits {0, 0.0625, 8, 12, 4, 6, 2, 3}, normalised by 12.
constexpr std::array<float, 16> kFP4 = {
    0.0f, 0.0052083334885537624f, 0.6666666865348816f, 1.0f,
    0.3333333432674408f, 0.5f, 0.1666666716337204f, 0.25f,
    0.0f, -0.0052083334885537624f, -0.6666666865348816f, -1.0f,
    -0.3333333432674408f, -0.5f, -0.1666666716337204f, -0.25f};

// create_dynamic_map(signed=True) as bitsandbytes computes it in fp32 (sorted).
constexpr std::array<float, 256> kDynamic = {
-9.929687381e-01f, -9.789062738e-01f, -9.648437500e-01f, -9.507812262e-01f,
    -9.367187619e-01f, -9.226562381e-01f, -9.085937738e-01f, -8.945312500e-01f,
    -8.804687262e-01f, -8.664062619e-01f, -8.523437381e-01f, -8.382812738e-01f,
    -8.242187500e-01f, -8.101562262e-01f, -7.960937619e-01f, -7.820312381e-01f,
    -7.679687738e-01f, -7.539062500e-01f, -7.398437262e-01f, -7.257812619e-01f,
    -7.117187977e-01f, -6.976562738e-01f, -6.835937500e-01f, -6.695312262e-01f,
    -6.554687619e-01f, -6.414062977e-01f, -6.273437738e-01f, -6.132812500e-01f,
    -5.992187262e-01f, -5.851562619e-01f, -5.710937977e-01f, -5.570312738e-01f,
    -5.429687500e-01f, -5.289062262e-01f, -5.148437023e-01f, -5.007812381e-01f,
    -4.867187142e-01f, -4.726562500e-01f, -4.585937262e-01f, -4.445312619e-01f,
    -4.304687381e-01f, -4.164062440e-01f, -4.023437500e-01f, -3.882812262e-01f,
    -3.742187619e-01f, -3.601562381e-01f, -3.460937440e-01f, -3.320312500e-01f,
    -3.179687262e-01f, -3.039062619e-01f, -2.898437381e-01f, -2.757812738e-01f,
    -2.617187500e-01f, -2.476562411e-01f, -2.335937470e-01f, -2.195312530e-01f,
    -2.054687440e-01f, -1.914062500e-01f, -1.773437560e-01f, -1.632812470e-01f,
    -1.492187530e-01f, -1.351562440e-01f, -1.210937500e-01f, -1.070312560e-01f,
    -9.859374911e-02f, -9.578125924e-02f, -9.296875447e-02f, -9.015624970e-02f,
    -8.734375238e-02f, -8.453124762e-02f, -8.171875775e-02f, -7.890625298e-02f,
    -7.609374821e-02f, -7.328125089e-02f, -7.046874613e-02f, -6.765625626e-02f,
    -6.484375149e-02f, -6.203125045e-02f, -5.921875313e-02f, -5.640624836e-02f,
    -5.359375104e-02f, -5.078125000e-02f, -4.796874896e-02f, -4.515625164e-02f,
    -4.234374687e-02f, -3.953124955e-02f, -3.671875224e-02f, -3.390625119e-02f,
    -3.109375015e-02f, -2.828125097e-02f, -2.546874993e-02f, -2.265625075e-02f,
    -1.984375156e-02f, -1.703125052e-02f, -1.421875041e-02f, -1.140625030e-02f,
    -9.718749672e-03f, -9.156249464e-03f, -8.593750186e-03f, -8.031249978e-03f,
    -7.468749769e-03f, -6.906250026e-03f, -6.343749817e-03f, -5.781250075e-03f,
    -5.218750332e-03f, -4.656249657e-03f, -4.093749914e-03f, -3.531249706e-03f,
    -2.968749963e-03f, -2.406249987e-03f, -1.843750011e-03f, -1.281249919e-03f,
    -9.437500848e-04f, -8.312499849e-04f, -7.187500596e-04f, -6.062500761e-04f,
    -4.937500344e-04f, -3.812500217e-04f, -2.687500382e-04f, -1.562500111e-04f,
    -8.874999912e-05f, -6.625000242e-05f, -4.374999844e-05f, -2.124999810e-05f,
    -7.749999895e-06f, -3.250000191e-06f, -5.500000384e-07f, 0.000000000e+00f,
    5.500000384e-07f, 3.250000191e-06f, 7.749999895e-06f, 2.124999810e-05f,
    4.374999844e-05f, 6.625000242e-05f, 8.874999912e-05f, 1.562500111e-04f,
    2.687500382e-04f, 3.812500217e-04f, 4.937500344e-04f, 6.062500761e-04f,
    7.187500596e-04f, 8.312499849e-04f, 9.437500848e-04f, 1.281249919e-03f,
    1.843750011e-03f, 2.406249987e-03f, 2.968749963e-03f, 3.531249706e-03f,
    4.093749914e-03f, 4.656249657e-03f, 5.218750332e-03f, 5.781250075e-03f,
    6.343749817e-03f, 6.906250026e-03f, 7.468749769e-03f, 8.031249978e-03f,
    8.593750186e-03f, 9.156249464e-03f, 9.718749672e-03f, 1.140625030e-02f,
    1.421875041e-02f, 1.703125052e-02f, 1.984375156e-02f, 2.265625075e-02f,
    2.546874993e-02f, 2.828125097e-02f, 3.109375015e-02f, 3.390625119e-02f,
    3.671875224e-02f, 3.953124955e-02f, 4.234374687e-02f, 4.515625164e-02f,
    4.796874896e-02f, 5.078125000e-02f, 5.359375104e-02f, 5.640624836e-02f,
    5.921875313e-02f, 6.203125045e-02f, 6.484375149e-02f, 6.765625626e-02f,
    7.046874613e-02f, 7.328125089e-02f, 7.609374821e-02f, 7.890625298e-02f,
    8.171875775e-02f, 8.453124762e-02f, 8.734375238e-02f, 9.015624970e-02f,
    9.296875447e-02f, 9.578125924e-02f, 9.859374911e-02f, 1.070312560e-01f,
    1.210937500e-01f, 1.351562440e-01f, 1.492187530e-01f, 1.632812470e-01f,
    1.773437560e-01f, 1.914062500e-01f, 2.054687440e-01f, 2.195312530e-01f,
    2.335937470e-01f, 2.476562411e-01f, 2.617187500e-01f, 2.757812738e-01f,
    2.898437381e-01f, 3.039062619e-01f, 3.179687262e-01f, 3.320312500e-01f,
    3.460937440e-01f, 3.601562381e-01f, 3.742187619e-01f, 3.882812262e-01f,
    4.023437500e-01f, 4.164062440e-01f, 4.304687381e-01f, 4.445312619e-01f,
    4.585937262e-01f, 4.726562500e-01f, 4.867187142e-01f, 5.007812381e-01f,
    5.148437023e-01f, 5.289062262e-01f, 5.429687500e-01f, 5.570312738e-01f,
    5.710937977e-01f, 5.851562619e-01f, 5.992187262e-01f, 6.132812500e-01f,
    6.273437738e-01f, 6.414062977e-01f, 6.554687619e-01f, 6.695312262e-01f,
    6.835937500e-01f, 6.976562738e-01f, 7.117187977e-01f, 7.257812619e-01f,
    7.398437262e-01f, 7.539062500e-01f, 7.679687738e-01f, 7.820312381e-01f,
    7.960937619e-01f, 8.101562262e-01f, 8.242187500e-01f, 8.382812738e-01f,
    8.523437381e-01f, 8.664062619e-01f, 8.804687262e-01f, 8.945312500e-01f,
    9.085937738e-01f, 9.226562381e-01f, 9.367187619e-01f, 9.507812262e-01f,
    9.648437500e-01f, 9.789062738e-01f, 9.929687381e-01f, 1.000000000e+00f,
};

// Bucket boundaries (midpoints of the sorted code) and the sorted-position -> index map:
// bitsandbytes' _get_4bit_quantize_bounds (identity order for NF4).
struct Bounds {
  std::array<float, 15> mid;
  std::array<uint8_t, 16> order;
};

Bounds make_bounds(const std::array<float, 16>& code) {
  Bounds b;
  std::array<int, 16> idx;
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int x, int y) { return code[x] < code[y]; });
  for (int i = 0; i < 16; ++i) b.order[i] = static_cast<uint8_t>(idx[i]);
  for (int i = 0; i < 15; ++i) b.mid[i] = (code[idx[i]] + code[idx[i + 1]]) / 2.0f;
  return b;
}

const Bounds& bounds(QuantType t) {
  static const Bounds nf4 = make_bounds(kNF4), fp4 = make_bounds(kFP4);
  return t == QuantType::NF4 ? nf4 : fp4;
}

// torch.bucketize(right=False): the number of boundaries strictly below x.
inline uint8_t bucket(const Bounds& b, float x) {
  int k = 0;
  for (int i = 0; i < 15; ++i) k += b.mid[i] < x;
  return b.order[k];
}

void check_blocksize(int64_t bs, const char* what) {
  PEFT_CHECK(bs >= 32 && bs <= 4096 && (bs & (bs - 1)) == 0, ConfigError, "[quantize_4bit] ", what, " ", bs,
             " is not one of 32, 64, 128, 256, 512, 1024, 2048, 4096");
}

// torch's cascade sum of an fp32 sequence (aten/src/ATen/native/cpu/SumKernel.cpp, row_sum with
// four interleaved accumulators and multi-level partial sums of 2^level_power rows each).
template <typename Get>
float cascade_row_sum(Get get, int64_t size) {
  constexpr int64_t kIlp = 4, kLevels = 4;
  const int64_t rows = size / kIlp;
  int64_t ceil_log2 = 1;
  if (rows > 2) {
    ceil_log2 = 0;
    for (uint64_t v = static_cast<uint64_t>(rows) - 1; v; v >>= 1) ++ceil_log2;
  }
  const int64_t level_power = std::max<int64_t>(4, ceil_log2 / kLevels);
  const int64_t step = int64_t{1} << level_power, mask = step - 1;
  float acc[kLevels][kIlp] = {};
  int64_t i = 0;
  while (i + step <= rows) {
    for (int64_t j = 0; j < step; ++j, ++i)
      for (int64_t k = 0; k < kIlp; ++k) acc[0][k] += get(i * kIlp + k);
    for (int64_t j = 1; j < kLevels; ++j) {
      for (int64_t k = 0; k < kIlp; ++k) {
        acc[j][k] += acc[j - 1][k];
        acc[j - 1][k] = 0.0f;
      }
      if ((i & (mask << (j * level_power))) != 0) break;
    }
  }
  for (; i < rows; ++i)
    for (int64_t k = 0; k < kIlp; ++k) acc[0][k] += get(i * kIlp + k);
  for (int64_t j = 1; j < kLevels; ++j)
    for (int64_t k = 0; k < kIlp; ++k) acc[0][k] += acc[j][k];
  for (int64_t r = rows * kIlp; r < size; ++r) acc[0][0] += get(r);
  for (int64_t k = 1; k < kIlp; ++k) acc[0][0] += acc[0][k];
  return acc[0][0];
}

}  // namespace

float torch_mean(const float* x, int64_t n, int64_t lanes) {
  if (n == 0) return 0.0f;
  float sum;
  if (n < lanes) {
    sum = cascade_row_sum([&](int64_t i) { return x[i]; }, n);
  } else {
    // Vectorised inner sum: each SIMD lane runs the cascade over its strided elements; the
    // scalar tail is summed first, then the lanes in order.
    const int64_t vecs = n / lanes;
    sum = 0.0f;
    for (int64_t i = vecs * lanes; i < n; ++i) sum += x[i];
    for (int64_t l = 0; l < lanes; ++l) sum += cascade_row_sum([&](int64_t v) { return x[v * lanes + l]; }, vecs);
  }
  return sum / static_cast<float>(n);
}

QuantType parse_quant_type(const std::string& s) {
  if (s == "nf4") return QuantType::NF4;
  if (s == "fp4") return QuantType::FP4;
  throw ConfigError("[quantize_4bit] quant_type '" + s + "' is not one of nf4, fp4");
}

std::string to_string(QuantType t) { return t == QuantType::NF4 ? "nf4" : "fp4"; }

const std::array<float, 16>& code_4bit(QuantType t) { return t == QuantType::NF4 ? kNF4 : kFP4; }
const std::array<float, 256>& dynamic_map() { return kDynamic; }

int64_t QuantState4::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::vector<float> QuantState4::block_scales() const {
  if (!nested) return absmax;
  std::vector<float> out(absmax_codes.size());
  dequantize_blockwise_8bit(absmax_codes.data(), nested_absmax.data(), static_cast<int64_t>(out.size()),
                            nested_blocksize, out.data());
  for (auto& v : out) v += offset;
  return out;
}

int64_t QuantState4::state_bytes() const {
  if (!nested) return static_cast<int64_t>(absmax.size() * sizeof(float));
  return static_cast<int64_t>(absmax_codes.size() + nested_absmax.size() * sizeof(float) + sizeof(float));
}

std::vector<float> block_absmax(const float* w, int64_t n, int64_t blocksize) {
  std::vector<float> am(static_cast<std::size_t>((n + blocksize - 1) / blocksize));
  for (std::size_t b = 0; b < am.size(); ++b) {
    const int64_t lo = static_cast<int64_t>(b) * blocksize, hi = std::min(n, lo + blocksize);
    float m = 0.0f;
    for (int64_t i = lo; i < hi; ++i) m = std::max(m, std::fabs(w[i]));
    am[b] = m;
  }
  return am;
}

Quantized4 quantize_4bit(const float* w, const std::vector<int64_t>& shape, const Quant4Options& opts,
                         std::optional<float> offset) {
  check_blocksize(opts.blocksize, "blocksize");
  Quantized4 q;
  q.state.quant_type = opts.quant_type;
  q.state.blocksize = opts.blocksize;
  q.state.shape = shape;
  for (auto d : shape) PEFT_CHECK(d >= 0, ConfigError, "[quantize_4bit] negative dimension ", d);
  const int64_t n = q.state.numel();
  const int64_t bs = opts.blocksize;
  const int64_t full = n - n % bs;
  std::vector<float> am = block_absmax(w, n, bs);
  const Bounds& bd = bounds(opts.quant_type);
  q.packed.assign(static_cast<std::size_t>((n + 1) / 2), 0);
  auto code_at = [&](int64_t i) -> uint8_t {
    if (i >= n) return bucket(bd, 0.0f);  // odd count: bitsandbytes pads with a zero
    const float a = std::max(am[static_cast<std::size_t>(i / bs)], 1e-38f);
    // Full blocks multiply by the reciprocal, the tail block divides (as bitsandbytes does).
    const float s = i < full ? w[i] * (1.0f / a) : w[i] / a;
    return bucket(bd, std::min(1.0f, std::max(-1.0f, s)));
  };
  for (int64_t p = 0; p < (n + 1) / 2; ++p)
    q.packed[static_cast<std::size_t>(p)] = static_cast<uint8_t>((code_at(2 * p) << 4) | code_at(2 * p + 1));

  if (!opts.double_quant) {
    q.state.absmax = std::move(am);
    return q;
  }
  const float off = offset ? *offset : torch_mean(am.data(), static_cast<int64_t>(am.size()));
  std::vector<float> centred(am.size());
  for (std::size_t i = 0; i < am.size(); ++i) centred[i] = am[i] - off;
  q.state.nested = true;
  q.state.offset = off;
  q.state.nested_blocksize = 256;
  q.state.absmax_codes.resize(am.size());
  q.state.nested_absmax.resize((am.size() + 255) / 256);
  quantize_blockwise_8bit(centred.data(), static_cast<int64_t>(am.size()), 256, q.state.absmax_codes.data(),
                          q.state.nested_absmax.data());
  return q;
}

void dequantize_4bit(const Quantized4& q, float* out) {
  const int64_t n = q.numel();
  PEFT_CHECK(static_cast<int64_t>(q.packed.size()) == (n + 1) / 2, FormatError, "[dequantize_4bit] ",
             q.packed.size(), " packed bytes for ", n, " values, expected ", (n + 1) / 2);
  const std::vector<float> scales = q.state.block_scales();
  PEFT_CHECK(static_cast<int64_t>(scales.size()) == q.state.num_blocks(), FormatError, "[dequantize_4bit] ",
             scales.size(), " block constants for ", q.state.num_blocks(), " blocks");
  const auto& code = code_4bit(q.state.quant_type);
  const int64_t bs = q.state.blocksize;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t byte = q.packed[static_cast<std::size_t>(i / 2)];
    const uint8_t c = (i & 1) ? (byte & 0x0F) : (byte >> 4);
    out[i] = code[c] * scales[static_cast<std::size_t>(i / bs)];
  }
}

namespace {

// bitsandbytes' CPU quantize_blockwise (0.50) does not search the code book per value: it maps
// v in [-1, 1] to one of 65,536 evenly spaced bins and reads the bin's code from a table built
// once per code book, holding the code nearest to the bin's centre (decided on the midpoints
// between neighbouring codes). Near 0, where the dynamic map's codes lie closer together than a
// bin, the result can be a few codes away from the nearest one; we reproduce the table, not the
// ideal, so that the stored bytes are theirs.
constexpr int kLutSize = 65536;

const std::array<uint8_t, kLutSize>& dynamic_lut() {
  static const std::array<uint8_t, kLutSize> lut = [] {
    std::array<float, 255> mid{};
    for (int i = 0; i < 255; ++i) mid[i] = 0.5f * (kDynamic[i] + kDynamic[i + 1]);
    std::array<uint8_t, kLutSize> t{};
    int code = 0;
    for (int i = 0; i < kLutSize; ++i) {
      const float val = -1.0f + (2.0f * static_cast<float>(i)) / static_cast<float>(kLutSize - 1);
      while (code < 255 && mid[code] < val) ++code;
      t[i] = static_cast<uint8_t>(code);
    }
    return t;
  }();
  return lut;
}

// The bin of a normalised value: (clamp(v) + 1) * 0.5 * 65535 + 0.5, truncated. Whether the last
// multiply-add is fused (bitsandbytes' x86 build may fuse it) changes no code: over 10^8 random
// values the two roundings never picked different codes.
inline uint16_t lut_index(float v) {
  v = std::min(1.0f, std::max(-1.0f, v));
  return static_cast<uint16_t>((v + 1.0f) * 0.5f * static_cast<float>(kLutSize - 1) + 0.5f);
}

}  // namespace

void quantize_blockwise_8bit(const float* x, int64_t n, int64_t blocksize, uint8_t* out, float* absmax) {
  const auto& lut = dynamic_lut();
  for (int64_t lo = 0, b = 0; lo < n; lo += blocksize, ++b) {
    const int64_t hi = std::min(n, lo + blocksize);
    float m = 0.0f;
    for (int64_t i = lo; i < hi; ++i) m = std::max(m, std::fabs(x[i]));
    absmax[b] = m;
    if (m == 0.0f) {  // an all-zero block stores code 0, as bitsandbytes does
      std::fill(out + lo, out + hi, uint8_t{0});
      continue;
    }
    const float inv = 1.0f / m;
    for (int64_t i = lo; i < hi; ++i) out[i] = lut[lut_index(x[i] * inv)];
  }
}

void dequantize_blockwise_8bit(const uint8_t* q, const float* absmax, int64_t n, int64_t blocksize, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = kDynamic[q[i]] * absmax[i / blocksize];
}

std::string quant_state_json(const QuantState4& s) {
  // Key order and separators of Python's json.dumps, as bitsandbytes writes it.
  std::string j = "{\"quant_type\": \"" + to_string(s.quant_type) + "\", \"blocksize\": " +
                  std::to_string(s.blocksize) + ", \"dtype\": \"" + s.dtype + "\", \"shape\": [";
  for (std::size_t i = 0; i < s.shape.size(); ++i) j += (i ? ", " : "") + std::to_string(s.shape[i]);
  j += "]";
  if (s.nested) {
    j += ", \"nested_blocksize\": " + std::to_string(s.nested_blocksize) +
         ", \"nested_dtype\": \"float32\", \"nested_offset\": " + nlohmann::json(static_cast<double>(s.offset)).dump();
  }
  return j + "}";
}

void read_quant_state_json(const std::string& text, QuantState4& s, const std::string& where) {
  const nlohmann::json j = parse_json(text, "[quant_state] " + where);
  auto need = [&](const char* k) -> const nlohmann::json& {
    PEFT_CHECK(j.contains(k), FormatError, "[quant_state] ", where, ": missing field '", k, "'");
    return j.at(k);
  };
  try {
    s.quant_type = parse_quant_type(need("quant_type").get<std::string>());
    s.blocksize = need("blocksize").get<int64_t>();
    s.dtype = need("dtype").get<std::string>();
    s.shape = need("shape").get<std::vector<int64_t>>();
    s.nested = j.contains("nested_offset");
    if (s.nested) {
      s.nested_blocksize = need("nested_blocksize").get<int64_t>();
      s.offset = need("nested_offset").get<float>();
    }
  } catch (const nlohmann::json::exception& e) {
    throw FormatError("[quant_state] " + where + ": " + e.what());
  }
  check_blocksize(s.blocksize, "blocksize");
  PEFT_CHECK(!s.nested || s.nested_blocksize > 0, FormatError, "[quant_state] ", where, ": nested_blocksize ",
             s.nested_blocksize);
}

}  // namespace peft::quant
