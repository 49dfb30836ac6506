// Shared pieces of the kernels: extents with byte strides, a multi-index counter, threads.
#pragma once

#include <algorithm>
#include <cstdint>

#ifdef ZMFAST_OPENMP
#include <omp.h>
#endif

namespace zm {

constexpr int kMaxDims = 64;  // NumPy's NPY_MAXDIMS
constexpr int kMaxArrays = 3;

// Extents of an iteration space and the byte strides of up to three arrays walking it.
struct Space {
  int nd = 0;
  int64_t extent[kMaxDims];
  int64_t stride[kMaxArrays][kMaxDims];

  int64_t size() const {
    int64_t n = 1;
    for (int i = 0; i < nd; ++i) n *= extent[i];
    return n;
  }
};

// Walks a Space in C order, keeping each array's byte offset; no division after seek().
struct Counter {
  const Space* space;
  int64_t index[kMaxDims];
  int64_t offset[kMaxArrays];

  explicit Counter(const Space& s, int64_t flat = 0) : space(&s) { seek(flat); }

  void seek(int64_t flat) {
    for (int a = 0; a < kMaxArrays; ++a) offset[a] = 0;
    for (int i = space->nd - 1; i >= 0; --i) {
      const int64_t e = space->extent[i];
      index[i] = flat % e;
      flat /= e;
      for (int a = 0; a < kMaxArrays; ++a) offset[a] += index[i] * space->stride[a][i];
    }
  }

  void next() {
    for (int i = space->nd - 1; i >= 0; --i) {
      for (int a = 0; a < kMaxArrays; ++a) offset[a] += space->stride[a][i];
      if (++index[i] < space->extent[i]) return;
      for (int a = 0; a < kMaxArrays; ++a) offset[a] -= space->stride[a][i] * space->extent[i];
      index[i] = 0;
    }
  }
};

// Below this many elements per thread, waking another thread costs more than it saves.
constexpr int64_t kMinElementsPerThread = int64_t(1) << 16;

inline int threads_for(int requested, int64_t elements) {
  const int64_t useful = std::max<int64_t>(1, elements / kMinElementsPerThread);
  return int(std::max<int64_t>(1, std::min<int64_t>(requested, useful)));
}

// Calls body(task) for task in [0, tasks) on up to `threads` threads, statically scheduled
// so that the same thread touches the same part of the output every time.
template <class Body>
void parallel_tasks(int64_t tasks, int threads, Body&& body) {
#ifdef ZMFAST_OPENMP
  if (threads > 1 && tasks > 1) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t t = 0; t < tasks; ++t) body(t);
    return;
  }
#endif
  (void)threads;
  for (int64_t t = 0; t < tasks; ++t) body(t);
}

// The [begin, end) share of `n` items for part `part` of `parts`.
inline void split_range(int64_t n, int64_t parts, int64_t part, int64_t& begin, int64_t& end) {
  const int64_t base = n / parts, extra = n % parts;
  begin = part * base + std::min(part, extra);
  end = begin + base + (part < extra ? 1 : 0);
}

}  // namespace zm
