// Kernel benchmarks: packed codebook GEMV/GEMM per bit width, dense f32/bf16 GEMV and the
// memory read bandwidth, on 4096x4096 and the SmolLM2-135M shapes, with 1 and 2 threads.
// Counters: GB/s = weight bytes read per second (packed bytes incl. group parameters for
// the packed kernels), Gw/s = 1e9 weights per second.
//
// "hot" runs reuse one matrix (it may sit in the last-level cache); "cold" runs
// rotate over copies totalling >= 768 MiB so every pass streams from memory, which is what
// the bandwidth comparison is about. Run with
//   bench_kernels --benchmark_repetitions=5 --benchmark_report_aggregates_only
// and --target=AVX2 (a Highway target name) to measure the kernels a CPU with only that
// target would run (on x86 without AVX-512 VBMI: the integer kernel's and the LUT kernel's
// AVX2 forms).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "lcq/kernels/codebook_layer.h"
#include "lcq/kernels/dense.h"
#include "lcq/kernels/lut_codebook.h"
#include "lcq/kernels/membw.h"
#include "lcq/kernels/packed_codebook.h"
#include "lcq/kernels/synthetic.h"

namespace {

using lcq::kernels::KernelPath;
using lcq::kernels::PackedCodebookMatrix;

constexpr size_t kColdBytes = size_t(768) << 20;  // beyond the 300 MiB L3 one of our VMs reports

struct Shape {
  const char* name;
  int64_t rows, cols;
};

const Shape kShapes[] = {
    {"4096x4096", 4096, 4096}, {"576x576", 576, 576},     {"192x576", 192, 576},
    {"1536x576", 1536, 576},   {"576x1536", 576, 1536},   {"49152x576", 49152, 576},
    {"512x4096", 512, 4096},  // rows of 4096x4096 that stay in a 1 MiB L2: the kernels' compute speed
};

// The matrices of the benchmark that ran last (benchmarks of one shape and width run
// consecutively, so this avoids repacking without holding every matrix at once).
struct PackedSet {
  std::string key;
  std::vector<PackedCodebookMatrix> copies;  // copies[0] is the hot matrix
};

const std::vector<PackedCodebookMatrix>& packed(const Shape& sh, int bits, int rank, bool cold) {
  static PackedSet set;
  const std::string key = std::string(sh.name) + "/" + std::to_string(bits) + "/" + std::to_string(rank);
  if (set.key != key) {
    set.copies.clear();
    set.copies.push_back(PackedCodebookMatrix::pack(lcq::kernels::synthetic_codebook_layer(sh.rows, sh.cols, bits, rank)));
    set.key = key;
  }
  const size_t want = cold ? std::max<size_t>(2, kColdBytes / set.copies[0].nbytes() + 1) : 1;
  while (set.copies.size() < want) set.copies.push_back(set.copies[0].clone());
  return set.copies;
}

void set_counters(benchmark::State& state, double bytes_per_iter, double weights_per_iter) {
  state.counters["GB/s"] = benchmark::Counter(bytes_per_iter * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["Gw/s"] = benchmark::Counter(weights_per_iter * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

void packed_gemv(benchmark::State& state, Shape sh, int bits, int rank, int threads, bool cold, KernelPath path) {
  omp_set_num_threads(threads);
  const auto& ms = packed(sh, bits, rank, cold);
  const size_t use = cold ? ms.size() : 1;
  std::vector<float> x(size_t(sh.cols), 0.5f), y(size_t(sh.rows));
  size_t k = 0;
  for (auto _ : state) {
    ms[k].gemv(x.data(), y.data(), path);
    k = k + 1 == use ? 0 : k + 1;
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, double(ms[0].nbytes()), double(sh.rows) * double(sh.cols));
  state.counters["bpw"] = ms[0].bits_per_weight();
}

// The look-up-table kernel (2, 3 and 4 bits, its own tile layout), matrices kept like packed()'s.
void lut_gemv(benchmark::State& state, Shape sh, int bits, int rank, int threads, bool cold, int group = 128) {
  using lcq::kernels::LutCodebookMatrix;
  static std::string key;
  static std::vector<LutCodebookMatrix> ms;
  const std::string k0 =
      std::string(sh.name) + "/" + std::to_string(bits) + "/" + std::to_string(rank) + "/" + std::to_string(group);
  if (key != k0) {
    ms.clear();
    ms.push_back(
        LutCodebookMatrix::pack(lcq::kernels::synthetic_codebook_layer(sh.rows, sh.cols, bits, rank, group)));
    key = k0;
  }
  const size_t want = cold ? std::max<size_t>(2, kColdBytes / ms[0].nbytes() + 1) : 1;
  while (ms.size() < want) ms.push_back(ms[0].clone());
  omp_set_num_threads(threads);
  std::vector<float> x(size_t(sh.cols), 0.5f), y(size_t(sh.rows));
  size_t k = 0;
  for (auto _ : state) {
    ms[k].gemv(x.data(), y.data());
    k = k + 1 == want ? 0 : k + 1;
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, double(ms[0].nbytes()), double(sh.rows) * double(sh.cols));
  state.counters["bpw"] = ms[0].bits_per_weight();
}

// The LUT layout's rows back to floats, 32 rows per call into a panel of 256 rows (as a
// prompt's panel product fills its panels), over the whole matrix per iteration; one thread.
void lut_dequantize(benchmark::State& state, Shape sh, int bits, int rank, int group) {
  const auto m =
      lcq::kernels::LutCodebookMatrix::pack(lcq::kernels::synthetic_codebook_layer(sh.rows, sh.cols, bits, rank, group));
  constexpr int64_t kPanel = 256, kChunk = 32;
  std::vector<float> panel(size_t(kPanel * sh.cols));
  for (auto _ : state) {
    for (int64_t r0 = 0; r0 < sh.rows; r0 += kChunk)
      m.dequantize_rows(r0, std::min(sh.rows, r0 + kChunk), panel.data() + (r0 % kPanel) * sh.cols);
    benchmark::DoNotOptimize(panel.data());
  }
  set_counters(state, double(m.nbytes()), double(sh.rows) * double(sh.cols));
}

void packed_gemm(benchmark::State& state, Shape sh, int bits, int rank, int threads, int64_t n) {
  omp_set_num_threads(threads);
  const auto& ms = packed(sh, bits, rank, false);
  std::vector<float> X(size_t(n * sh.cols), 0.5f), Y(size_t(n * sh.rows));
  for (auto _ : state) {
    ms[0].gemm(X.data(), n, Y.data());
    benchmark::DoNotOptimize(Y.data());
  }
  set_counters(state, double(ms[0].nbytes()), double(sh.rows) * double(sh.cols) * double(n));
}

template <class T>
void dense_gemv(benchmark::State& state, Shape sh, int threads, bool cold) {
  omp_set_num_threads(threads);
  const size_t bytes = size_t(sh.rows * sh.cols) * sizeof(T);
  const size_t copies = cold ? std::max<size_t>(2, kColdBytes / bytes + 1) : 1;
  std::vector<std::vector<T>> ws(copies, std::vector<T>(size_t(sh.rows * sh.cols)));
  for (auto& w : ws)
    for (size_t k = 0; k < w.size(); ++k) w[k] = T(k % 7);
  std::vector<float> x(size_t(sh.cols), 0.5f), y(size_t(sh.rows));
  size_t k = 0;
  for (auto _ : state) {
    if constexpr (sizeof(T) == 4) {
      lcq::kernels::gemv_f32(ws[k].data(), sh.rows, sh.cols, x.data(), y.data());
    } else {
      lcq::kernels::gemv_bf16(ws[k].data(), sh.rows, sh.cols, x.data(), y.data());
    }
    k = k + 1 == copies ? 0 : k + 1;
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, double(bytes), double(sh.rows) * double(sh.cols));
}

void memory_bandwidth(benchmark::State& state, int threads) {
  double gbs = 0;
  for (auto _ : state) gbs = lcq::kernels::measure_read_bandwidth_gbs(size_t(512) << 20, threads, 5);
  state.counters["GB/s"] = gbs;
}

void register_all() {
  using benchmark::RegisterBenchmark;
  for (int threads : {1, 2}) {
    RegisterBenchmark(("membw/512MiB/t" + std::to_string(threads)).c_str(), memory_bandwidth, threads)
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }
  for (const Shape& sh : kShapes) {
    const bool big = sh.rows * sh.cols >= 4096 * 4096 / 2;
    for (int bits : {2, 3, 4, 8}) {
      for (int threads : {1, 2}) {
        for (bool cold : {false, true}) {
          if (cold && !big) continue;
          const std::string name = std::string("gemv/") + sh.name + "/b" + std::to_string(bits) + "/r2/t" +
                                   std::to_string(threads) + (cold ? "/cold" : "/hot");
          RegisterBenchmark(name.c_str(), packed_gemv, sh, bits, 2, threads, cold, KernelPath::kAuto)
              ->Unit(benchmark::kMicrosecond)
              ->UseRealTime();
        }
      }
      if (sh.cols == 4096) {  // 4096x4096 and its L2-resident 512-row slice
        if (sh.rows == 4096) {  // other ranks and the scalar reference: the full matrix only
          for (int rank : {1, 4})
            RegisterBenchmark((std::string("gemv/") + sh.name + "/b" + std::to_string(bits) + "/r" +
                               std::to_string(rank) + "/t1/hot")
                                  .c_str(),
                              packed_gemv, sh, bits, rank, 1, false, KernelPath::kAuto)
                ->Unit(benchmark::kMicrosecond)
                ->UseRealTime();
          RegisterBenchmark((std::string("gemv-scalar/") + sh.name + "/b" + std::to_string(bits) + "/r2/t1/hot").c_str(),
                            packed_gemv, sh, bits, 2, 1, false, KernelPath::kScalar)
              ->Unit(benchmark::kMicrosecond)
              ->UseRealTime();
        }
        if (lcq::kernels::int8_simd_available(bits))  // the integer kernel
          for (int threads : {1, 2})
            for (bool cold : {false, true}) {
              if (cold && !big) continue;
              RegisterBenchmark((std::string("gemv-int8/") + sh.name + "/b" + std::to_string(bits) + "/r2/t" +
                                 std::to_string(threads) + (cold ? "/cold" : "/hot"))
                                    .c_str(),
                                packed_gemv, sh, bits, 2, threads, cold, KernelPath::kInt8)
                  ->Unit(benchmark::kMicrosecond)
                  ->UseRealTime();
            }
      }
      if (lcq::kernels::lut_simd_available(bits)) {  // the look-up-table kernel
        for (int threads : {1, 2})
          for (bool cold : {false, true}) {
            if (cold && !big) continue;
            RegisterBenchmark((std::string("gemv-lut/") + sh.name + "/b" + std::to_string(bits) + "/r2/t" +
                               std::to_string(threads) + (cold ? "/cold" : "/hot"))
                                  .c_str(),
                              lut_gemv, sh, bits, 2, threads, cold, 128)
                ->Unit(benchmark::kMicrosecond)
                ->UseRealTime();
          }
        if (sh.rows == 49152 && bits == 4)  // the output head as a 4-bit layer: smaller groups, rank 1
          for (int group : {32, 64})
            for (int rank : {1, 2})
              for (int threads : {1, 2})
                RegisterBenchmark((std::string("gemv-lut/") + sh.name + "/b4/r" + std::to_string(rank) + "/g" +
                                   std::to_string(group) + "/t" + std::to_string(threads) + "/cold")
                                      .c_str(),
                                  lut_gemv, sh, 4, rank, threads, true, group)
                    ->Unit(benchmark::kMicrosecond)
                    ->UseRealTime();
      }
      if (sh.rows == 4096 || sh.rows == 1536) {
        for (int threads : {1, 2})
          for (int64_t n : {4, 16})
            RegisterBenchmark((std::string("gemm/") + sh.name + "/b" + std::to_string(bits) + "/r2/t" +
                               std::to_string(threads) + "/n" + std::to_string(n))
                                  .c_str(),
                              packed_gemm, sh, bits, 2, threads, n)
                ->Unit(benchmark::kMicrosecond)
                ->UseRealTime();
      }
    }
    if (sh.rows == 1536 || sh.rows == 49152)  // prompts' panels: a MLP matrix, the head
      for (int bits : {2, 3, 4, 6})
        RegisterBenchmark((std::string("dequantize-lut/") + sh.name + "/b" + std::to_string(bits) + "/r2/g64").c_str(),
                          lut_dequantize, sh, bits, 2, 64)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
    for (int threads : {1, 2})
      for (bool cold : {false, true}) {
        if (cold && !big) continue;
        const std::string tail = std::string("/") + sh.name + "/t" + std::to_string(threads) + (cold ? "/cold" : "/hot");
        RegisterBenchmark(("dense-f32" + tail).c_str(), dense_gemv<float>, sh, threads, cold)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
        RegisterBenchmark(("dense-bf16" + tail).c_str(), dense_gemv<uint16_t>, sh, threads, cold)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
      }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::string target;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]).rfind("--target=", 0) == 0) {
      target = argv[i] + 9;
      for (int k = i; k + 1 < argc; ++k) argv[k] = argv[k + 1];
      --argc;
      break;
    }
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (!target.empty()) {
    bool found = false;
    for (const auto& t : lcq::kernels::available_simd_targets())
      if (target == t.name) lcq::kernels::force_simd_target(t.id), found = true;
    if (!found) {
      std::fprintf(stderr, "bench_kernels: this CPU has no SIMD target named %s\n", target.c_str());
      return 2;
    }
  }
  register_all();
  benchmark::AddCustomContext("simd_target", lcq::kernels::current_simd_target());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
