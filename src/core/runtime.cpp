#include "peft/core/runtime.h"

#include "gemm_rows.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <sched.h>
#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>
#include <iostream>
#include <mutex>

namespace peft {

namespace {

// Which shared object answers for sgemm_? LibTorch on Debian links libblas.so.3, and the
// alternatives system decides whether that is OpenBLAS or the ~15x slower reference BLAS.
std::string sgemm_provider() {
  void* sym = ::dlsym(RTLD_DEFAULT, "sgemm_");
  if (sym == nullptr) return "";
  Dl_info info{};
  if (::dladdr(sym, &info) == 0 || info.dli_fname == nullptr) return "";
  char buf[4096];
  if (::realpath(info.dli_fname, buf) != nullptr) return buf;
  return info.dli_fname;
}

bool is_fast_blas(const std::string& lib) {
  for (const char* k : {"openblas", "mkl", "blis", "atlas", "accelerate", "armpl"})
    if (lib.find(k) != std::string::npos) return true;
  return false;
}

// OpenBLAS's kernel family, "" when sgemm_ is not OpenBLAS's.
std::string openblas_core() {
  using Fn = char* (*)();
  auto fn = reinterpret_cast<Fn>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* name = fn ? fn() : nullptr;
  return name ? name : "";
}

// The CPUs this process may run on (its affinity mask), at least 1.
int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
}

}  // namespace

std::string advise_blas_coretype(const std::string& core, bool avx2_fma, bool avx512) {
  // OpenBLAS's x86 families without AVX2 kernels.
  static const char* kGeneric[] = {"Katmai", "Coppermine", "Northwood", "Prescott", "Banias", "Atom",
                                   "Core2", "Penryn", "Dunnington", "Nehalem", "Sandybridge"};
  bool generic = false;
  for (const char* g : kGeneric) generic = generic || core == g;
  if (!generic || !avx2_fma) return "";
  return avx512 ? "SkylakeX" : "Haswell";
}

std::string blas_coretype_advice() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return "";
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl");
  return advise_blas_coretype(openblas_core(), avx2_fma, avx512);
#else
  return "";
#endif
}

void restart_with_suitable_blas(char** argv) {
  if (std::getenv("PEFT_KEEP_BLAS_CORE") != nullptr) return;
  const std::string core = blas_coretype_advice();
  if (core.empty() || ::setenv("OPENBLAS_CORETYPE", core.c_str(), 0) != 0) return;
  ::execv("/proc/self/exe", argv);
  ::unsetenv("OPENBLAS_CORETYPE");  // exec failed: go on with the detected kernels
}

namespace {
std::atomic<bool> g_gemm_rows_split{false};

// OpenBLAS's thread count setter when OpenBLAS is loaded, else null.
using SetThreadsFn = void (*)(int);
SetThreadsFn openblas_set_threads() {
  return reinterpret_cast<SetThreadsFn>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
}

// Below this many multiply-adds a product stays whole: a fork costs a few microseconds, and
// OpenBLAS's packing overhead grows as the parts shrink.
constexpr int64_t kSplitMinMacs = int64_t{1} << 21;
constexpr int64_t kSplitMinRows = 16;
}  // namespace

bool gemm_rows_split() { return g_gemm_rows_split.load(std::memory_order_relaxed); }
void set_gemm_rows_split(bool on) { g_gemm_rows_split.store(on, std::memory_order_relaxed); }

bool gemm_rows_worth_splitting(int64_t M, int64_t N, int64_t K) {
  return M >= 2 * kSplitMinRows && M * N * K >= kSplitMinMacs;
}

void mm_rows(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, float beta, float alpha) {
  const int64_t M = out.size(0), N = out.size(1), K = a.size(1);
  auto part = [&](int64_t r0, int64_t r1) {
    // Grad mode is thread-local and on in a fresh worker: these products are never recorded.
    const c10::AutoGradMode no_grad(false);
    at::Tensor o = out.narrow(0, r0, r1 - r0);
    const at::Tensor ap = a.narrow(0, r0, r1 - r0);
    if (K == 0) {
      if (beta == 0.0f) o.zero_();
      else o.mul_(beta);
    } else if (beta == 0.0f && alpha == 1.0f) {
      at::mm_out(o, ap, b);
    } else {
      o.addmm_(ap, b, beta, alpha);
    }
  };
  const int64_t threads = at::get_num_threads();
  if (!gemm_rows_split() || threads < 2 || at::in_parallel_region() || !gemm_rows_worth_splitting(M, N, K)) {
    if (M > 0) part(0, M);
    return;
  }
  const int64_t parts = std::min(threads, M / kSplitMinRows);
  at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) part(M * p / parts, M * (p + 1) / parts);
  });
}

RuntimeInfo init_runtime(int threads) {
  static std::once_flag once;
  static RuntimeInfo info;
  std::call_once(once, [&] {
    // Debian's LibTorch runs fp32 GEMM on OpenBLAS's own pthreads; LibTorch's OpenMP workers
    // busy-wait beside them, and on small models two pools made training ~2x slower (measured
    // on stories260K: 15.6 s vs 7.2 s for 20 LoRA steps). So one pool: OpenBLAS one thread, and
    // the library's large products (linear layers and their backward, the chunked loss) split
    // their rows over LibTorch's threads. An OPENBLAS_NUM_THREADS / GOTO_NUM_THREADS in the
    // environment keeps OpenBLAS's threads as asked, and LibTorch then gets one thread unless
    // told otherwise. PyPI's LibTorch runs GEMM on MKL inside its own OpenMP pool already.
    const SetThreadsFn set_blas_threads = at::hasMKL() ? nullptr : openblas_set_threads();
    const bool blas_env = std::getenv("OPENBLAS_NUM_THREADS") != nullptr || std::getenv("GOTO_NUM_THREADS") != nullptr;
    const bool split = set_blas_threads != nullptr && !blas_env;
    if (threads <= 0 && std::getenv("OMP_NUM_THREADS") == nullptr) threads = at::hasMKL() || split ? usable_cores() : 1;
    if (threads > 0) at::set_num_threads(threads);
    if (split) {
      set_blas_threads(1);
      set_gemm_rows_split(true);
    }
    info.intra_op_threads = at::get_num_threads();
    // glibc serves blocks above 32 MB with fresh mmaps, so a large output allocated every call
    // (GPT-2's [4, 128, 50257] logits: 103 MB) page-faults in full each time: ~5% of that
    // forward pass. Keep blocks up to 256 MB in the heap instead, unless the environment tunes
    // malloc itself (MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_).
    if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr && std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr) {
      ::mallopt(M_MMAP_THRESHOLD, 256 << 20);
      ::mallopt(M_TRIM_THRESHOLD, 512 << 20);
    }
    info.blas_library = sgemm_provider();
    // Only a generic libblas (Debian's libblas3, netlib) is the slow reference; a LibTorch that
    // carries its own GEMM (the pip wheels link MKL into libtorch_cpu.so) is not.
    info.reference_blas = !info.blas_library.empty() && !is_fast_blas(info.blas_library) &&
                          (info.blas_library.find("libblas") != std::string::npos ||
                           info.blas_library.find("librefblas") != std::string::npos);
    if (info.reference_blas)
      std::cerr << "warning: fp32 matrix products use the reference BLAS (" << info.blas_library
                << "), about 15x slower than OpenBLAS. Run scripts/install_deps.sh or "
                   "'update-alternatives --set libblas.so.3-x86_64-linux-gnu "
                   "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3'.\n";
    info.blas_core = openblas_core();
    if (const std::string t = blas_coretype_advice(); !t.empty())
      std::cerr << "warning: OpenBLAS does not recognise this CPU and runs its generic " << info.blas_core
                << " kernels (fp32 matrix products 2-4x slower); the CPU has "
                << (t == "SkylakeX" ? "AVX-512" : "AVX2") << ": set OPENBLAS_CORETYPE=" << t
                << " in the environment before the program starts.\n";
  });
  return info;
}

double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // "VmHWM:  1234 kB"
  return 0;
}

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      std::string v = line.substr(line.find(':') + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return "unknown CPU";
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  if (!(f >> a >> b >> c)) return "n/a";
  return a + " / " + b + " / " + c;
}

}  // namespace peft
