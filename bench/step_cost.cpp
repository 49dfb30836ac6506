// What the AVX2 kernels' arithmetic alone costs, against the read floor from the cache and
// from the last-level cache: a lower bound for the statistics targets on AVX2 CPUs (see
// NOTES.md, "On an AVX2 CPU"). Not a benchmark of zmfast; build and run it by hand:
//
//   g++ -std=c++17 -O3 -fno-math-errno -fopenmp -DZMFAST_OPENMP=1 -Icsrc bench/step_cost.cpp
//       -o /tmp/step_cost && /tmp/step_cost
//
// Each step below is the kernels' own inline function, run over 16 KB that stay in L1, on one
// thread: per-pixel and per-channel statistics (add_row_pair_avx2, with and without the
// squares), per-image and channels-first statistics (add_step_u8_avx2, two streams), and the
// read floor's loop (sum_bytes_avx2). Then the read floor itself (floor_read) over a cifar
// batch, 5000 x 32 x 32 x 3 bytes, which stays in a 32 MB L3 between calls, on one and two
// threads. Every round times each case once.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "moments.hpp"
#include "normalize.hpp"

namespace {

constexpr int64_t kL1Bytes = 16384;
constexpr int kRounds = 21;

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// The median of `calls` timings of `body`, after one untimed call (which wakes the OpenMP
// threads: the first floor_read after the L1 loops took up to 3x the time), in ns per 64
// bytes; `body` covers `bytes_per_thread` bytes a thread.
template <class Body>
double ns_per_64(Body body, double bytes_per_thread, int calls = 1) {
  body();
  std::vector<double> times;
  for (int c = 0; c < calls; ++c) {
    const double t0 = now();
    body();
    times.push_back(now() - t0);
  }
  return median(times) / (bytes_per_thread / 64) * 1e9;
}

// Repeats over the L1 buffer, enough for a few ms a round.
constexpr int kRepeats = 2000;

// The column kernels' row-pair step, rows a and b 32 bytes apart (8 sums in registers).
template <zm::U8Sink kSink>
ZM_TARGET_AVX2 __attribute__((noinline)) int64_t row_pairs(const uint8_t* x) {
  __m256i w0 = _mm256_setzero_si256(), w1 = w0, w2 = w0, w3 = w0, q0 = w0, q1 = w0, q2 = w0,
          q3 = w0;
  for (int r = 0; r < kRepeats; ++r)
    for (int64_t i = 0; i < kL1Bytes; i += 64) {
      zm::add_row_pair_avx2<kSink>(zm::load_row32_avx2(x + i, 0, 32),
                                   zm::load_row32_avx2(x + i, 1, 32), w0, w1, w2, w3, q0, q1, q2,
                                   q3);
      // Without this GCC rotated the sums through 8 register moves a step; the column
      // kernel's own loop compiles without them.
      __asm__("" : "+x"(w0), "+x"(w1), "+x"(w2), "+x"(w3), "+x"(q0), "+x"(q1), "+x"(q2), "+x"(q3));
    }
  // Overflowing sums do not matter here; the result only keeps the loop.
  const __m256i all =
      _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(w0, w1), _mm256_add_epi32(w2, w3)),
                       _mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3)));
  return _mm256_extract_epi32(all, 0);
}

// The run kernels' step, two streams (as the per-image and channels-first kernels read).
ZM_TARGET_AVX2 __attribute__((noinline)) int64_t run_steps(const uint8_t* x) {
  __m256i s1a = _mm256_setzero_si256(), qa = s1a, s1b = s1a, qb = s1a;
  for (int r = 0; r < kRepeats; ++r)
    for (int64_t i = 0; i < kL1Bytes; i += 64) {
      zm::add_step_u8_avx2(s1a, qa, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
      zm::add_step_u8_avx2(s1b, qb,
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 32)));
    }
  return zm::sum_lanes_64_avx2(_mm256_add_epi64(s1a, s1b)) +
         zm::sum_square_lanes_avx2(_mm256_add_epi32(qa, qb));
}

ZM_TARGET_AVX2 __attribute__((noinline)) int64_t floor_steps(const uint8_t* x) {
  uint64_t total = 0;
  for (int r = 0; r < kRepeats; ++r) total += zm::sum_bytes_avx2(x, kL1Bytes);
  return int64_t(total);
}

}  // namespace

int main() {
  if (!__builtin_cpu_supports("avx2")) {
    std::puts("no AVX2 on this CPU");
    return 0;
  }
  std::vector<uint8_t> l1(static_cast<size_t>(kL1Bytes));
  for (int64_t i = 0; i < kL1Bytes; ++i) l1[size_t(i)] = uint8_t(i * 131 + 7);
  const int64_t cifar = int64_t(5000) * 32 * 32 * 3;
  std::vector<uint8_t> batch(static_cast<size_t>(cifar));
  for (int64_t i = 0; i < cifar; ++i) batch[size_t(i)] = uint8_t((i * 2654435761u) >> 13);
  const uint8_t* x = l1.data();
  volatile int64_t sink = 0;
  const double in_l1 = double(kL1Bytes) * kRepeats;
  // Each round times every case once, so that the ratios compare the same minute.
  enum { kFloorL1, kPairs, kPairSums, kRuns, kFloor1, kFloor2, kCases };
  const char* const names[kCases] = {
      "in L1, one thread: the read floor's loop",
      "  per-pixel / per-channel row pair, with squares",
      "  per-pixel / per-channel row pair, sums alone",
      "  per-image / channels-first step (two streams), with squares",
      "floor_read over cifar (14.6 MiB, from L3), one thread",
      "floor_read over cifar, two threads"};
  std::vector<double> ns[kCases];
  zm::floor_read(batch.data(), cifar, 2);  // into the cache
  for (int r = 0; r < kRounds; ++r) {
    ns[kFloorL1].push_back(ns_per_64([&] { sink = sink + floor_steps(x); }, in_l1));
    ns[kPairs].push_back(ns_per_64([&] { sink = sink + row_pairs<zm::U8Sink::totals>(x); }, in_l1));
    ns[kPairSums].push_back(
        ns_per_64([&] { sink = sink + row_pairs<zm::U8Sink::sums>(x); }, in_l1));
    ns[kRuns].push_back(ns_per_64([&] { sink = sink + run_steps(x); }, in_l1));
    for (int threads = 1; threads <= 2; ++threads)
      ns[kFloor1 + threads - 1].push_back(
          ns_per_64([&] { sink = sink + int64_t(zm::floor_read(batch.data(), cifar, threads)); },
                    double(cifar) / threads, 15));
  }
  std::printf(
      "ns per 64 bytes a thread, medians of %d rounds; last column: the median of the\n"
      "rounds' ratios to the two-thread floor\n",
      kRounds);
  for (int c = 0; c < kCases; ++c) {
    std::vector<double> ratio;
    for (int r = 0; r < kRounds; ++r) ratio.push_back(ns[c][size_t(r)] / ns[kFloor2][size_t(r)]);
    std::printf("%-64s %6.2f %6.2fx\n", names[c], median(ns[c]), median(ratio));
  }
  return 0;
}
