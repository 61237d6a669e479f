#pragma once
// Process-wide start-up: thread counts and the BLAS sanity probe (tier 0 header; the
// implementation lives in the LibTorch library).
#include <string>

namespace peft {

struct RuntimeInfo {
  std::string blas_library;  ///< shared object that provides sgemm_ ("" when unknown)
  bool reference_blas = false;
  int intra_op_threads = 1;
  std::string blas_core;     ///< OpenBLAS's kernel family ("Haswell", "SkylakeX", ...); "" when not OpenBLAS
};

/// The OPENBLAS_CORETYPE that suits a CPU when OpenBLAS's kernel family `core` is a generic
/// pre-AVX2 one although the CPU has AVX2 + FMA ("Haswell") or AVX-512 F/CD/BW/DQ/VL
/// ("SkylakeX"); "" otherwise. OpenBLAS 0.3.21 (Debian 12) does not recognise recent Xeons and
/// falls back to its SSE3 "Prescott" kernels, which run fp32 GEMM 2-4x slower.
std::string advise_blas_coretype(const std::string& core, bool avx2_fma, bool avx512);

/// advise_blas_coretype for this process (OpenBLAS's openblas_get_corename, the CPU's flags); ""
/// when the BLAS is not OpenBLAS, when OPENBLAS_CORETYPE is already set, or when nothing is wrong.
/// The CLI restarts itself with this OPENBLAS_CORETYPE (unless PEFT_KEEP_BLAS_CORE is set);
/// init_runtime warns programs that link the library.
std::string blas_coretype_advice();

/// For a program's main(), first thing: when blas_coretype_advice() names a value and
/// PEFT_KEEP_BLAS_CORE is unset, sets OPENBLAS_CORETYPE and executes the program again
/// (/proc/self/exe, same arguments), so OpenBLAS loads its right kernels. Returns when there is
/// nothing to do or the exec failed (then nothing has changed). The `peft` CLI and the benchmarks
/// call it; tests do not (they run with the environment's BLAS as it is).
void restart_with_suitable_blas(char** argv);

/// Sets the threads: one pool of workers for everything. LibTorch's intra-op pool gets `threads`
/// (threads <= 0: OMP_NUM_THREADS, else one per usable core). Where fp32 GEMM runs on OpenBLAS's
/// own pthreads (Debian's LibTorch), two pools of spinning workers would fight over the cores, so
/// OpenBLAS gets one thread and the library's large fp32 products split their rows across
/// LibTorch's pool instead (gemm_rows_split() is then true) — unless OPENBLAS_NUM_THREADS or
/// GOTO_NUM_THREADS is set, which keeps OpenBLAS's own threads and gives LibTorch one thread (or
/// `threads`). With MKL (PyPI's LibTorch) GEMM already runs on LibTorch's pool. Also
/// checks which BLAS serves fp32 GEMM and warns once on stderr when it is the slow reference BLAS.
/// Also keeps malloc blocks up to 256 MB out of fresh mmaps (see runtime.cpp) unless
/// MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ is set. Idempotent; the CLI calls it first thing.
RuntimeInfo init_runtime(int threads = 0);

/// Whether the library splits the rows of its large fp32 matrix products across LibTorch's
/// intra-op threads (init_runtime decides; false until it runs). set_gemm_rows_split overrides it,
/// for tests and benchmarks that compare both ways.
bool gemm_rows_split();
void set_gemm_rows_split(bool on);

/// This process's peak resident set in MiB (Linux VmHWM; 0 where unavailable). Unlike
/// getrusage's ru_maxrss it starts afresh at exec, so a child of a large parent reports its own peak.
double peak_rss_mb();

/// The CPU's model name (/proc/cpuinfo; "unknown CPU" where unavailable) and the 1/5/15-minute
/// load averages ("0.52 / 0.61 / 0.70"; "n/a"): timings are reported with both.
std::string cpu_model_name();
std::string load_average();

}  // namespace peft
