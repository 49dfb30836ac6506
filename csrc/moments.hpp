// Moments (count, mean, M2) of strided reductions, exact for 8- and 16-bit integers.
//
// A reduction is given as `kept` dims (array 0: x byte strides, array 1: output element
// strides) and `red` dims (array 0: x byte strides, sorted so the last has the smallest
// stride). Two loop shapes cover it:
//  * column: the kept dim with the smallest stride is a vector of lanes; every reduced
//    index is a row added into per-lane accumulators (mean image over the batch axis);
//  * row: each output reduces a run along the innermost reduced dim (per-image stats,
//    axis=None), spread over a few virtual lanes so the loop vectorises.
// Within a bounded block, integers accumulate exactly in integer lanes and floats in float64
// shifted by the block's first value; blocks, lanes and threads then merge with Chan's
// formula in float64.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common.hpp"
#include "simd.hpp"

namespace zm {

// Per input type: block accumulator types and the most values one lane may take per block
// before its integer sums could overflow.
template <class T> struct Accum;
template <> struct Accum<uint8_t> {
  using Sum = uint32_t; using SumSq = uint32_t;  // 65536 * 255^2 < 2^32
  static constexpr int64_t kBlock = int64_t(1) << 16;
};
template <> struct Accum<int8_t> {
  using Sum = int32_t; using SumSq = uint32_t;
  static constexpr int64_t kBlock = int64_t(1) << 16;
};
template <> struct Accum<uint16_t> {
  using Sum = uint64_t; using SumSq = uint64_t;  // 2^31 * 65535^2 < 2^64
  static constexpr int64_t kBlock = int64_t(1) << 31;
};
template <> struct Accum<int16_t> {
  using Sum = int64_t; using SumSq = uint64_t;
  static constexpr int64_t kBlock = int64_t(1) << 31;
};
// Floats: float64 sums of values shifted by the block's first one; the block length bounds
// the rounding of the shifted sums, not an overflow.
template <> struct Accum<float> {
  using Sum = double; using SumSq = double;
  static constexpr int64_t kBlock = 4096;
};
template <> struct Accum<double> : Accum<float> {};

template <class T> constexpr bool kIsInt = std::is_integral<T>::value;

// x*x in the narrowest type that holds it (16 bits for 8-bit inputs), so it vectorises wide.
template <class T> ZM_INLINE auto square(T v) {
  if constexpr (sizeof(T) == 1) {
    const uint16_t magnitude = uint16_t(v < 0 ? -int(v) : int(v));
    return uint16_t(magnitude * magnitude);
  } else {
    using Wide = typename Accum<T>::SumSq;
    return Wide(int64_t(v) * int64_t(v));
  }
}

// Running moments of one lane. `lo` is the rounding error of `mean` (the mean is about
// mean + lo): near a large offset (1e9 + U(0, 1)) a merge's delta of two rounded means would
// carry their rounding (1e-7 there) into M2, as delta^2 * na * nb / n.
struct Running {
  double mean = 0.0, m2 = 0.0, lo = 0.0;
};

// a + b = sum + the returned error, exactly (Knuth's TwoSum; any magnitudes).
ZM_INLINE double two_sum_error(double a, double b, double sum) {
  const double b_part = sum - a;
  return (a - (sum - b_part)) + (b - b_part);
}

// Chan et al.'s update of (na, a) with a block of nb values of mean `mean_b` (+ `lo_b`), M2
// `m2_b`. The delta of the two means includes their low parts, and the new mean keeps its own.
ZM_INLINE void chan_merge(int64_t na, Running& a, int64_t nb, double mean_b, double m2_b,
                          double lo_b = 0.0) {
  if (na == 0) {
    a.mean = mean_b;
    a.m2 = m2_b;
    a.lo = lo_b;
    return;
  }
  const double n = double(na + nb), wb = double(nb) / n;
  const double delta = (mean_b - a.mean) + (lo_b - a.lo);
  if (std::isfinite(delta)) {
    const double step = delta * wb + a.lo, mean = a.mean + step;
    a.lo = std::isfinite(mean) ? two_sum_error(a.mean, step, mean) : 0.0;
    a.mean = mean;
    a.m2 += m2_b + delta * delta * (double(na) * wb);
  } else {  // an infinite mean: NumPy's inf (or nan for inf - inf), spread undefined
    a.mean = a.mean * (double(na) / n) + mean_b * wb;
    a.m2 = std::numeric_limits<double>::quiet_NaN();
    a.lo = 0.0;
  }
}

// n*S2 - S1^2 (never negative), computed exactly and rounded once to double.
ZM_INLINE double exact_spread(uint64_t n, uint64_t s2, uint64_t abs_s1) {
#if defined(__SIZEOF_INT128__)
  using U128 = unsigned __int128;
  return double(U128(n) * s2 - U128(abs_s1) * abs_s1);
#else  // MSVC: two-word products; the final conversion may round twice (<= 1 ulp)
  auto mul = [](uint64_t a, uint64_t b, uint64_t& hi) {
    const uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
    const uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    const uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
    return (mid << 32) | (p00 & 0xffffffffu);
  };
  uint64_t hi_a, hi_b;
  const uint64_t lo_a = mul(n, s2, hi_a), lo_b = mul(abs_s1, abs_s1, hi_b);
  const uint64_t lo = lo_a - lo_b, hi = hi_a - hi_b - (lo_a < lo_b ? 1 : 0);
  return double(hi) * 18446744073709551616.0 + double(lo);
#endif
}

// Mean and M2 of a small block of 8- or 16-bit integers (n < 32, so |S1| < 2^21 and
// n S2 < 2^42): n S2 - S1^2 is exact in int64 and each result is rounded once, as
// exact_spread's 128-bit form gives them, but in arithmetic that vectorises. `n` is `count`
// as a double, converted once by the caller (GCC left the conversion inside its loops).
ZM_INLINE void small_int_moments(int64_t count, double n, int64_t s1, int64_t s2, double& mean,
                                 double& m2) {
  mean = double(s1) / n;
  m2 = double(count * s2 - s1 * s1) / n;
}

// Mean and M2 of a block of n values from its sums; exact for integers until the final
// rounding (n*S2 - S1^2 in 128-bit), shifted for floats.
// `lo`: the rounding error of shift + S1/n for floats (see Running), 0 for integers.
template <class T>
ZM_INLINE void block_moments(int64_t n, typename Accum<T>::Sum s1, typename Accum<T>::SumSq s2,
                          double shift, double& mean, double& m2, double& lo) {
  if constexpr (kIsInt<T>) {
    mean = double(s1) / double(n);
    m2 = exact_spread(uint64_t(n), uint64_t(s2), s1 < 0 ? 0 - uint64_t(s1) : uint64_t(s1)) /
         double(n);
    lo = 0.0;
    (void)shift;
  } else {
    const double offset = s1 / double(n);
    mean = shift + offset;
    lo = std::isfinite(mean) ? two_sum_error(shift, offset, mean) : 0.0;
    m2 = s2 - s1 * offset;
    if (m2 <= 0) m2 = 0;  // rounding, and -0.0 (sqrt(-0.0) is -0.0); NaN stays NaN
  }
}

// Float blocks are shifted by their first value unless it is inf/nan (then inf/nan
// propagate through an unshifted sum, as NumPy's).
template <class T> ZM_INLINE double block_shift(T first) {
  if constexpr (kIsInt<T>) {
    (void)first;
    return 0.0;
  } else {
    return std::isfinite(first) ? double(first) : 0.0;
  }
}

// ---------------------------------------------------------------------------------------
// Column reduction: rows [r0, r1) of `rows` (x byte strides), lanes [0, lanes) at byte
// stride `lane_stride`, into per-lane running moments `out`.
constexpr int64_t kLaneBlock = 16384;  // lanes per pass: a page of bytes per row, sums in L1/L2

template <class T, bool kWantM2>
ZM_INLINE void column_moments_impl(const char* base, const Space& rows, int64_t r0, int64_t r1,
                                   int64_t lane_stride, int64_t lanes, Running* out) {
  using Sum = typename Accum<T>::Sum;
  using SumSq = typename Accum<T>::SumSq;
  alignas(64) Sum s1[kLaneBlock];
  alignas(64) SumSq s2[kLaneBlock];
  alignas(64) double shift[kLaneBlock];
  const bool contiguous = lane_stride == int64_t(sizeof(T));
  for (int64_t k0 = 0; k0 < lanes; k0 += kLaneBlock) {
    const int64_t kn = std::min(kLaneBlock, lanes - k0);
    int64_t done = 0;
    Counter row(rows, r0);
    for (int64_t b0 = r0; b0 < r1; b0 += Accum<T>::kBlock) {
      const int64_t bn = std::min(Accum<T>::kBlock, r1 - b0);
      const char* first = base + row.offset[0] + k0 * lane_stride;
      for (int64_t k = 0; k < kn; ++k) {
        s1[k] = 0;
        s2[k] = 0;
        shift[k] = block_shift<T>(*reinterpret_cast<const T*>(first + k * lane_stride));
      }
      int64_t r = 0;
      if (contiguous && kIsInt<T> && sizeof(T) == 1) {
        // Four rows a pass (their sum fits 16 bits): the 32-bit
        // accumulators are read and written once per four values instead of once per value.
        for (; r + 4 <= bn; r += 4) {
          const T* x0 = reinterpret_cast<const T*>(base + row.offset[0] + k0 * lane_stride);
          row.next();
          const T* x1 = reinterpret_cast<const T*>(base + row.offset[0] + k0 * lane_stride);
          row.next();
          const T* x2 = reinterpret_cast<const T*>(base + row.offset[0] + k0 * lane_stride);
          row.next();
          const T* x3 = reinterpret_cast<const T*>(base + row.offset[0] + k0 * lane_stride);
          row.next();
          for (int64_t k = 0; k < kn; ++k) {
            s1[k] += Sum(int16_t(x0[k]) + int16_t(x1[k]) + int16_t(x2[k]) + int16_t(x3[k]));
            if constexpr (kWantM2)
              s2[k] += SumSq(uint32_t(square(x0[k])) + square(x1[k]) + square(x2[k]) +
                             square(x3[k]));
          }
        }
      }
      for (; r < bn; ++r, row.next()) {
        const char* p = base + row.offset[0] + k0 * lane_stride;
        if (contiguous) {
          const T* x = reinterpret_cast<const T*>(p);
          for (int64_t k = 0; k < kn; ++k) {
            if constexpr (kIsInt<T>) {
              const Sum v = Sum(x[k]);
              s1[k] += v;
              if constexpr (kWantM2) s2[k] += SumSq(square(x[k]));
            } else {
              const double d = double(x[k]) - shift[k];
              s1[k] += d;
              if constexpr (kWantM2) s2[k] += d * d;
            }
          }
        } else {
          for (int64_t k = 0; k < kn; ++k) {
            const T value = *reinterpret_cast<const T*>(p + k * lane_stride);
            if constexpr (kIsInt<T>) {
              const Sum v = Sum(value);
              s1[k] += v;
              if constexpr (kWantM2) s2[k] += SumSq(v * v);
            } else {
              const double d = double(value) - shift[k];
              s1[k] += d;
              if constexpr (kWantM2) s2[k] += d * d;
            }
          }
        }
      }
      for (int64_t k = 0; k < kn; ++k) {
        double mean, m2, lo;
        block_moments<T>(bn, s1[k], s2[k], shift[k], mean, m2, lo);
        chan_merge(done, out[k0 + k], bn, mean, m2, lo);
      }
      done += bn;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Row reduction of one output: flat reduced indices [lo, hi) over (outer rows x run), the
// run at byte stride `run_stride`. Returns the count; `acc` holds the running moments.
constexpr int kVirtualLanes = 32;

template <class T, bool kWantM2>
ZM_INLINE int64_t row_moments_impl(const char* base, const Space& outer, int64_t run,
                                   int64_t run_stride, int64_t lo, int64_t hi, Running& acc) {
  using Sum = typename Accum<T>::Sum;
  using SumSq = typename Accum<T>::SumSq;
  alignas(64) Sum s1[kVirtualLanes];
  alignas(64) SumSq s2[kVirtualLanes];
  int64_t done = 0, in_block = 0;
  double shift = 0.0;
  auto flush = [&]() {
    if (in_block == 0) return;
    Sum t1 = 0;
    SumSq t2 = 0;
    for (int j = 0; j < kVirtualLanes; ++j) {
      t1 += s1[j];
      t2 += s2[j];
    }
    double mean, m2, lo;
    block_moments<T>(in_block, t1, t2, shift, mean, m2, lo);
    chan_merge(done, acc, in_block, mean, m2, lo);
    done += in_block;
    in_block = 0;
  };
  auto start_block = [&](const T* first) {
    for (int j = 0; j < kVirtualLanes; ++j) {
      s1[j] = 0;
      s2[j] = 0;
    }
    shift = block_shift<T>(*first);
  };
  // Integer lanes may each take kBlock values; floats bound the block itself.
  const int64_t block_limit = kIsInt<T> ? Accum<T>::kBlock : Accum<T>::kBlock * kVirtualLanes;
  Counter row(outer, lo / run);
  int64_t col = lo % run;
  while (lo < hi) {
    const int64_t len = std::min(run - col, hi - lo);
    const char* p = base + row.offset[0] + col * run_stride;
    for (int64_t i = 0; i < len;) {
      if (in_block == 0) start_block(reinterpret_cast<const T*>(p + i * run_stride));
      const int64_t piece = std::min(len - i, block_limit - in_block);
      const int64_t whole = piece - piece % kVirtualLanes;
      if (run_stride == int64_t(sizeof(T))) {
        const T* x = reinterpret_cast<const T*>(p) + i;
        for (int64_t v = 0; v < whole; v += kVirtualLanes) {
          for (int j = 0; j < kVirtualLanes; ++j) {
            if constexpr (kIsInt<T>) {
              const Sum value = Sum(x[v + j]);
              s1[j] += value;
              if constexpr (kWantM2) s2[j] += SumSq(value * value);
            } else {
              const double d = double(x[v + j]) - shift;
              s1[j] += d;
              if constexpr (kWantM2) s2[j] += d * d;
            }
          }
        }
      } else {
        for (int64_t v = 0; v < whole; v += kVirtualLanes) {
          for (int j = 0; j < kVirtualLanes; ++j) {
            const T raw = *reinterpret_cast<const T*>(p + (i + v + j) * run_stride);
            if constexpr (kIsInt<T>) {
              const Sum value = Sum(raw);
              s1[j] += value;
              if constexpr (kWantM2) s2[j] += SumSq(value * value);
            } else {
              const double d = double(raw) - shift;
              s1[j] += d;
              if constexpr (kWantM2) s2[j] += d * d;
            }
          }
        }
      }
      for (int64_t v = whole; v < piece; ++v) {  // the last few go one per lane
        const T raw = *reinterpret_cast<const T*>(p + (i + v) * run_stride);
        const int j = int(v - whole);
        if constexpr (kIsInt<T>) {
          const Sum value = Sum(raw);
          s1[j] += value;
          if constexpr (kWantM2) s2[j] += SumSq(value * value);
        } else {
          const double d = double(raw) - shift;
          s1[j] += d;
          if constexpr (kWantM2) s2[j] += d * d;
        }
      }
      in_block += piece;
      i += piece;
      if (in_block == block_limit) flush();
    }
    lo += len;
    col = 0;
    row.next();
  }
  flush();
  return done;
}

// ---------------------------------------------------------------------------------------
// The two loops compiled for each SIMD level, and the choice among them.
using ColumnArgs = void(const char*, const Space&, int64_t, int64_t, int64_t, int64_t, Running*);
using RowArgs = int64_t(const char*, const Space&, int64_t, int64_t, int64_t, int64_t, Running&);

template <class T, bool M2> ColumnArgs* column_moments_for(Level level) {
  return Levels<ColumnArgs, column_moments_impl<T, M2>>::pick(level);
}
template <class T, bool M2> RowArgs* row_moments_for(Level level) {
  return Levels<RowArgs, row_moments_impl<T, M2>>::pick(level);
}

// Per-lane partial moments, kept by the calling thread between calls: a fresh multi-MB
// buffer per call (per-pixel statistics) would cost page faults and zeroing on every call.
// The kernels assign every entry before reading it, so it is never cleared.
inline Running* reusable_scratch(size_t n) {
  static thread_local std::vector<Running> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// ---------------------------------------------------------------------------------------
// Exact running sums for streaming fits: `rows` contiguous rows of `lanes` integers (row
// stride `row_stride` elements) are added into int64 per-lane totals S1 and S2, so that any
// batching of a dataset gives the same totals. The caller bounds the rows a lane has seen so
// that S2 stays below 2^63.
constexpr int64_t kSumTile = 2048;  // lanes per pass: the 32-bit block sums stay in L1

template <class T>
ZM_INLINE void column_sums_impl(const T* x, int64_t row_stride, int64_t rows, int64_t lanes,
                                int64_t* s1_out, int64_t* s2_out) {
  using Sum = typename Accum<T>::Sum;
  using SumSq = typename Accum<T>::SumSq;
  alignas(64) Sum s1[kSumTile];
  alignas(64) SumSq s2[kSumTile];
  for (int64_t k0 = 0; k0 < lanes; k0 += kSumTile) {
    const int64_t kn = std::min(kSumTile, lanes - k0);
    for (int64_t b0 = 0; b0 < rows; b0 += Accum<T>::kBlock) {
      const int64_t bn = std::min(Accum<T>::kBlock, rows - b0);
      for (int64_t k = 0; k < kn; ++k) {
        s1[k] = 0;
        s2[k] = 0;
      }
      const T* row = x + b0 * row_stride + k0;
      int64_t r = 0;
      if constexpr (sizeof(T) == 1) {  // four rows a pass, as column_moments_impl
        for (; r + 4 <= bn; r += 4, row += 4 * row_stride) {
          const T *x0 = row, *x1 = row + row_stride, *x2 = x1 + row_stride,
                  *x3 = x2 + row_stride;
          for (int64_t k = 0; k < kn; ++k) {
            s1[k] += Sum(int16_t(x0[k]) + int16_t(x1[k]) + int16_t(x2[k]) + int16_t(x3[k]));
            s2[k] += SumSq(uint32_t(square(x0[k])) + square(x1[k]) + square(x2[k]) +
                           square(x3[k]));
          }
        }
      }
      for (; r < bn; ++r, row += row_stride)
        for (int64_t k = 0; k < kn; ++k) {
          s1[k] += Sum(row[k]);
          s2[k] += SumSq(square(row[k]));
        }
      for (int64_t k = 0; k < kn; ++k) {
        s1_out[k0 + k] += int64_t(s1[k]);
        s2_out[k0 + k] += int64_t(s2[k]);
      }
    }
  }
}

using SumsArgs = void(const void*, int64_t, int64_t, int64_t, int64_t*, int64_t*);

// The kernels' untyped entry: a column_sums_for kernel takes any element type's rows.
template <class T>
ZM_INLINE void column_sums_untyped(const void* x, int64_t rs, int64_t r, int64_t l, int64_t* a,
                                   int64_t* b) {
  column_sums_impl<T>(static_cast<const T*>(x), rs, r, l, a, b);
}

// Rows of uint8 whose sums the AVX-512 kernels keep in 32 bits before they flush them.
constexpr int64_t kU8BlockRows = 512;
// What a reduction gives in place of M2: M2 itself (divisor 0), or var = M2 / divisor (each
// lane's M2 rounded first, as NumPy's var divides its sum of squares), and std = sqrt(var)
// where `root`. A kernel that stores its lanes' M2 from registers finishes them there: a
// separate pass over imagenet's 150,528 per-pixel values cost about a tenth of the read.
struct Spread {
  double divisor = 0;
  bool root = false;
  bool wanted() const { return divisor != 0; }
};
// var and std from M2, in place: m2[i] / divisor, and its square root where `root`. Each step
// is correctly rounded, as NumPy's divide and sqrt; NumPy's own loops took 50 and 175 us for
// one ImageNet mean image (150,528 values), a quarter of the statistics' time.
ZM_INLINE void finish_spread_impl(double* m2, int64_t n, double divisor, bool root) {
  if (root) {
    for (int64_t i = 0; i < n; ++i) m2[i] = std::sqrt(m2[i] / divisor);
  } else {
    for (int64_t i = 0; i < n; ++i) m2[i] = m2[i] / divisor;
  }
}
using FinishSpread = void(double*, int64_t, double, bool);

// A kernel giving each lane's mean and M2 (or what `spread` asks for in its place) of at
// most kU8BlockRows uint8 rows (see column_moments_u8_avx512).
using U8Moments = void(const uint8_t*, int64_t, int64_t, int64_t, double*, double*,
                       const Spread&);

// Per 64-lane chunk, 32-bit sums kept between calls in the kernel's own lane order, so that
// a stream of small batches skips the int64 flush. The AVX-512 vpmaddwd kernel's (lane
// 4j+m in dword j of row m): S2 as vpmaddwd sums it, S1 with the two halves of each pair
// already added. The AVX2 kernel's the same sums, each 32-lane half h its own (lane
// 32h + 16i + 4m + j in dword 8h + 4i + j of row m). The VNNI kernel's (lane 16L+4m+q in
// dword 4L+q of row m): S1, and in s2 the signed T = sum x (x - 128) that it sums
// (S2 = T + 128 S1).
struct alignas(64) PendingChunk {
  uint32_t s1[4][16];
  uint32_t s2[4][16];
};
enum class PendingOrder { avx512, avx2, vnni };  // whose lane order pending sums hold
// Rows a pending chunk may take before S2 (2 rows of 255^2 a pair) could pass 2^32, or T
// (at most 255 * 127 a row) 2^31.
constexpr int64_t kPendingRows = 65536;
// Where the VNNI kernel is the faster one: wide rows (per-pixel sums), and short rows
// (per-channel sums: 192 lanes) up to a few MB. Larger short-row batches keep the vpmaddwd
// kernel: measured on 192-lane rows, one thread, VNNI against vpmaddwd: 22 against 36 us
// for 1 MB, 92 against 138 us for 4 MB, but 1.8 against 0.8 ms for 15 MB and 5.0 against
// 2.4 ms for 38 MB (why was not found).
constexpr int64_t kVnniMinLanes = 257, kVnniShortBytes = int64_t(4) << 20;
inline bool vnni_suits(int64_t rows, int64_t lanes) {
  return lanes >= kVnniMinLanes || rows * lanes <= kVnniShortBytes;
}

#if ZMFAST_X86_DISPATCH
// uint8 column sums with AVX-512BW, two rows at a time. The bytes of lane 4j+m (m = 0..3) of
// rows a and b are paired into the two 16-bit halves of dword j of d_m, with shifts and
// blends only (no cross-lane shuffles); then vpmaddwd(d_m, d_m) = a^2 + b^2 per lane into
// 32-bit sums, and 16-bit adds of d_m keep S1 (one half per row of the pair). 256 pairs fill
// neither (256 * 255 < 2^16, 256 * 2 * 255^2 < 2^31), so each block of 512 rows is flushed
// into the int64 totals, restoring the lane order there.
// out[k] += lane k (k < valid <= 64) of four vectors of 32-bit sums in lane order (16 a
// vector), unsigned or signed.
template <bool kSigned>
ZM_TARGET_AVX512 ZM_INLINE void add_ordered_lanes(const __m512i ordered[4], int64_t* out,
                                                  int64_t valid) {
  for (int i = 0; i < 8; ++i) {  // eight lanes of int64 at a time
    const int64_t left = std::min<int64_t>(8, std::max<int64_t>(0, valid - 8 * i));
    if (left == 0) break;
    const __m256i half = i % 2 ? _mm512_extracti64x4_epi64(ordered[i / 2], 1)
                               : _mm512_castsi512_si256(ordered[i / 2]);
    const __m512i wide = kSigned ? _mm512_cvtepi32_epi64(half) : _mm512_cvtepu32_epi64(half);
    int64_t* at = out + 8 * i;
    if (left == 8) {  // masked stores are slow on some CPUs: only for the last lanes
      _mm512_storeu_si512(at, _mm512_add_epi64(_mm512_loadu_si512(at), wide));
    } else {
      const __mmask8 mask = __mmask8((1u << left) - 1);
      _mm512_mask_storeu_epi64(at, mask,
                               _mm512_add_epi64(_mm512_maskz_loadu_epi64(mask, at), wide));
    }
  }
}

// Four vectors holding lane 4j+m in dword j of v[m] put in lane order (16 lanes a vector): a
// 4x4 transpose of dwords, then of 128-bit blocks.
ZM_TARGET_AVX512 ZM_INLINE void interleaved_lane_order(const __m512i v[4], __m512i ordered[4]) {
  const __m512i a = _mm512_unpacklo_epi32(v[0], v[1]), b = _mm512_unpacklo_epi32(v[2], v[3]);
  const __m512i c = _mm512_unpackhi_epi32(v[0], v[1]), d = _mm512_unpackhi_epi32(v[2], v[3]);
  const __m512i e = _mm512_unpacklo_epi64(a, b), f = _mm512_unpackhi_epi64(a, b);
  const __m512i g = _mm512_unpacklo_epi64(c, d), h = _mm512_unpackhi_epi64(c, d);
  // Block L of e, f, g, h holds lanes 16L + 0..3, 4..7, 8..11, 12..15.
  const __m512i p = _mm512_shuffle_i32x4(e, f, _MM_SHUFFLE(2, 0, 2, 0));
  const __m512i q = _mm512_shuffle_i32x4(g, h, _MM_SHUFFLE(2, 0, 2, 0));
  const __m512i r = _mm512_shuffle_i32x4(e, f, _MM_SHUFFLE(3, 1, 3, 1));
  const __m512i t = _mm512_shuffle_i32x4(g, h, _MM_SHUFFLE(3, 1, 3, 1));
  ordered[0] = _mm512_shuffle_i32x4(p, q, _MM_SHUFFLE(2, 0, 2, 0));
  ordered[1] = _mm512_shuffle_i32x4(r, t, _MM_SHUFFLE(2, 0, 2, 0));
  ordered[2] = _mm512_shuffle_i32x4(p, q, _MM_SHUFFLE(3, 1, 3, 1));
  ordered[3] = _mm512_shuffle_i32x4(r, t, _MM_SHUFFLE(3, 1, 3, 1));
}

// Where a uint8 column-sum kernel puts each block's 32-bit sums: added into the int64
// totals; S1 alone added into them (sums, for means: S2 may be left unsummed); added into
// pending 32-bit sums kept in the kernel's own lane order; or, when all rows are one block,
// turned into each lane's mean and M2, or its mean alone (means: no squares either).
enum class U8Sink { totals, sums, pending, moments, means };
constexpr bool sums_squares(U8Sink sink) { return sink != U8Sink::sums && sink != U8Sink::means; }
struct U8Out {
  int64_t* s1 = nullptr;  // totals
  int64_t* s2 = nullptr;
  PendingChunk* pending = nullptr;
  double* mean = nullptr;  // moments (m2 may be null)
  double* m2 = nullptr;
  Spread spread;  // moments: what m2 receives
};

// a / b rounded once, as _mm512_div_pd gives it, for b >= 1 and 0 <= a < 2^53 (an integer,
// or a quotient of one): q = a y with y = 1 / b rounded is within an ulp, and one step on the
// residual a - q b (exact by FMA) rounds it correctly (Markstein's theorem; checked against
// division for every uint8 block mean and 6e8 random integer and variance quotients). A
// division costs the divider about 8 cycles a vector on Zen 4; these three operations do not
// use it.
ZM_TARGET_AVX512 ZM_INLINE __m512d divide_by(__m512d a, __m512d b, __m512d y) {
  const __m512d q = _mm512_mul_pd(a, y);
  return _mm512_fmadd_pd(_mm512_fnmadd_pd(q, b, a), y, q);
}

// Eight lanes of store_block_moments, their sums a = S1 and b = S2 as doubles, under `mask`
// (kFull: all eight, plain stores). The spread's fields come as values: read through the
// reference after a store to mean or m2 (which could alias it), GCC reloaded and tested them
// every eight lanes.
template <bool kFull, bool kExactInverse>
ZM_TARGET_AVX512 ZM_INLINE void store_moments8(__m512d a, __m512d b, __m512d n, __m512d inv_n,
                                               double* mean, double* m2, __mmask8 mask,
                                               bool spread, bool root, __m512d divisor,
                                               __m512d inv_divisor) {
  // A power-of-two count has an exact inverse: one product is the correctly rounded quotient.
  const auto by_n = [&](__m512d v) ZM_TARGET_AVX512 {
    return kExactInverse ? _mm512_mul_pd(v, inv_n) : divide_by(v, n, inv_n);
  };
  const __m512d lane_mean = by_n(a);
  if constexpr (kFull) _mm512_storeu_pd(mean, lane_mean);
  else _mm512_mask_storeu_pd(mean, mask, lane_mean);
  if (!m2) return;
  // n S2 - S1^2: both products are integers below 2^53, so the one rounding of fmsub is exact.
  __m512d lane_m2 = by_n(_mm512_fmsub_pd(n, b, _mm512_mul_pd(a, a)));
  if (spread) {
    lane_m2 = divide_by(lane_m2, divisor, inv_divisor);
    if (root) lane_m2 = _mm512_sqrt_pd(lane_m2);
  }
  if constexpr (kFull) _mm512_storeu_pd(m2, lane_m2);
  else _mm512_mask_storeu_pd(m2, mask, lane_m2);
}

// Lanes 8 i .. 8 i + 7 of four vectors of 32-bit sums in lane order, as doubles.
ZM_TARGET_AVX512 ZM_INLINE __m512d lanes8_pd(const __m512i v[4], int i) {
  return _mm512_cvtepi32_pd(i % 2 ? _mm512_extracti64x4_epi64(v[i / 2], 1)
                                  : _mm512_castsi512_si256(v[i / 2]));
}

// mean[k], m2[k] of lane k (k < valid <= 64) from its count and exact sums S1 and S2 (in lane
// order, 16 a vector). Within one block S1 < 2^17 and S2 < 2^25, so n S2 - S1^2 is exact in
// float64 and mean = S1 / n and M2 = (n S2 - S1^2) / n are each rounded once; then var or
// std in place of M2 where `spread` asks (its divisor >= 1, see exact_column_moments). This
// pass over the tile, with its transposes, took about a sixth of the read floor's time for
// imagenet per pixel (the kernel alone, 2 threads, against the same loop without it). Whole
// chunks take unrolled steps with plain stores, and a power-of-two count one product a
// quotient: 16 imagenet images per pixel, one thread, 124 -> 105 us (the reads alone: 60).
ZM_TARGET_AVX512 ZM_INLINE void store_block_moments(const __m512i s1[4], const __m512i s2[4],
                                                    int64_t count, double* mean, double* m2,
                                                    int64_t valid, const Spread& spread) {
  const __m512d n = _mm512_set1_pd(double(count)), inv_n = _mm512_set1_pd(1.0 / double(count));
  const bool wanted = spread.wanted(), root = spread.root;
  const __m512d divisor = _mm512_set1_pd(spread.divisor);
  const __m512d inv_divisor = _mm512_set1_pd(wanted ? 1.0 / spread.divisor : 0.0);
  const auto whole = [&](auto exact_inverse) ZM_TARGET_AVX512 {
    constexpr bool kExact = decltype(exact_inverse)::value;
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i)
      store_moments8<true, kExact>(lanes8_pd(s1, i), m2 ? lanes8_pd(s2, i) : n, n, inv_n,
                                   mean + 8 * i, m2 ? m2 + 8 * i : nullptr, 0xff, wanted, root,
                                   divisor, inv_divisor);
  };
  if (valid == 64 && (count & (count - 1)) == 0) return whole(std::true_type{});
  if (valid == 64) return whole(std::false_type{});
  for (int i = 0; 8 * i < valid; ++i) {
    const int left = int(std::min<int64_t>(8, valid - 8 * i));
    store_moments8<false, false>(lanes8_pd(s1, i), m2 ? lanes8_pd(s2, i) : n, n, inv_n,
                                 mean + 8 * i, m2 ? m2 + 8 * i : nullptr,
                                 __mmask8((1u << left) - 1), wanted, root, divisor, inv_divisor);
  }
}

// One block's sums of chunk lanes [k, k + valid) into `out` as the sink asks (not pending).
template <U8Sink kSink>
ZM_TARGET_AVX512 ZM_INLINE void put_block_lanes(const __m512i s1[4], const __m512i s2[4],
                                                int64_t count, const U8Out& out, int64_t k,
                                                int64_t valid) {
  if constexpr (kSink == U8Sink::moments || kSink == U8Sink::means)
    store_block_moments(s1, s2, count, out.mean + k, out.m2 ? out.m2 + k : nullptr, valid,
                        out.spread);
  else
    add_ordered_lanes<true>(s1, out.s1 + k, valid), add_ordered_lanes<true>(s2, out.s2 + k, valid);
}

// Measured on imagenet batches (2 threads, Zen 4): 16 KB of each row per tile, with the
// prefetch below; tiles of 4 KB were 1.2x slower (1 KB runs, before the prefetch, 1.8x). A
// chunk's sums (128 KB a tile, in L2) are visited once per 16 rows, or per 64 short rows
// (per-channel lanes).
constexpr int64_t kU8TileChunks = 256;
constexpr int64_t kU8GroupRows = 16, kU8ShortGroupRows = 64;

// The tile's 32-bit sums, 8 vectors a chunk: a per-thread heap buffer, not 128 KB of stack
// (thread stacks may be small), aligned to the cache line.
inline __m512i (*u8_tile_sums())[8] {
  constexpr size_t kWords = size_t(kU8TileChunks) * 8 * 8;  // int64 words
  static thread_local std::vector<int64_t> buffer(kWords + 8);
  const uintptr_t at = (reinterpret_cast<uintptr_t>(buffer.data()) + 63) & ~uintptr_t(63);
  return reinterpret_cast<__m512i(*)[8]>(at);
}

// Software prefetch for the row group's chunk loop: the hardware prefetchers keep up with a
// group's 16 short row streams only while little else runs, and these kernels leave the
// load ports few idle cycles. Each row is fetched kU8PrefetchBytes ahead; near the tile's end
// the prefetches run on into the next group's rows. Measured on 1024 imagenet images (from
// memory, 2 threads), the VNNI kernel went from 1.6x to 1.2-1.3x the read floor.
constexpr int64_t kU8PrefetchBytes = 256;
struct RowPrefetch {
  const uint8_t* at = nullptr;  // row 0's line to fetch
  int64_t rows = 0;             // rows of it to fetch
};
// For chunk `chunk` of a group of `group_rows` rows at `group` (row `row` of `rows`), `tile`
// bytes of each row wide.
inline RowPrefetch row_prefetch(const uint8_t* group, int64_t row_stride, int64_t row,
                                int64_t group_rows, int64_t rows, int64_t tile, int64_t chunk) {
  const int64_t ahead = 64 * chunk + kU8PrefetchBytes;
  if (ahead < tile) return {group + ahead, group_rows};
  const int64_t next = row + group_rows;
  if (next >= rows) return {};
  return {group + group_rows * row_stride + (ahead - tile),
          std::min(group_rows, rows - next)};  // the next group: its size may differ only there
}
ZM_INLINE void prefetch_row(const RowPrefetch& fetch, int64_t row, int64_t row_stride) {
  if (row < fetch.rows) __builtin_prefetch(fetch.at + row * row_stride);
}

template <U8Sink kSink>
ZM_TARGET_AVX512 ZM_INLINE void column_sums_u8_avx512_impl(const uint8_t* x, int64_t row_stride,
                                                           int64_t rows, int64_t lanes,
                                                           const U8Out& out) {
  constexpr bool kPending = kSink == U8Sink::pending;
  __m512i(*const sums)[8] = u8_tile_sums();  // per chunk: 4 pair-word S1, 4 dword S2
  const __m512i low_bytes = _mm512_set1_epi16(0x00ff);
  const __m512i low_words = _mm512_set1_epi32(0xffff);
  const __mmask32 high_words = 0xaaaaaaaau;
  for (int64_t k0 = 0; k0 < lanes; k0 += 64 * kU8TileChunks) {
    const int64_t kn = std::min<int64_t>(64 * kU8TileChunks, lanes - k0);
    const int64_t chunks = (kn + 63) / 64;
    PendingChunk* const tile_pending = kPending ? out.pending + k0 / 64 : nullptr;
    for (int64_t b0 = 0; b0 < rows; b0 += kU8BlockRows) {
      const int64_t bn = std::min(kU8BlockRows, rows - b0);
      for (int64_t c = 0; c < chunks; ++c)
        for (int i = 0; i < 8; ++i)
          sums[c][i] = kPending && i >= 4 ? _mm512_load_si512(tile_pending[c].s2[i - 4])
                                          : _mm512_setzero_si512();
      const int64_t group = kn <= 256 ? kU8ShortGroupRows : kU8GroupRows;
      for (int64_t g0 = 0; g0 < bn; g0 += group) {
        const int64_t gn = std::min(group, bn - g0);
        const uint8_t* first_row = x + (b0 + g0) * row_stride + k0;
        for (int64_t c = 0; c < chunks; ++c) {
          const int64_t valid = std::min<int64_t>(64, kn - 64 * c);
          const __mmask64 mask = valid == 64 ? ~__mmask64(0) : (__mmask64(1) << valid) - 1;
          __m512i w0 = sums[c][0], w1 = sums[c][1], w2 = sums[c][2], w3 = sums[c][3];
          __m512i q0 = sums[c][4], q1 = sums[c][5], q2 = sums[c][6], q3 = sums[c][7];
          const uint8_t* p = first_row + 64 * c;
          const RowPrefetch fetch = row_prefetch(first_row, row_stride, b0 + g0, gn, rows, kn, c);
          for (int64_t r = 0; r < gn; r += 2) {
            prefetch_row(fetch, r, row_stride);
            prefetch_row(fetch, r + 1, row_stride);
            const __m512i a = _mm512_maskz_loadu_epi8(mask, p + r * row_stride);
            const __m512i b = r + 1 < gn ? _mm512_maskz_loadu_epi8(mask, p + (r + 1) * row_stride)
                                         : _mm512_setzero_si512();
            const __m512i ae = _mm512_and_si512(a, low_bytes), ao = _mm512_srli_epi16(a, 8);
            const __m512i be = _mm512_and_si512(b, low_bytes), bo = _mm512_srli_epi16(b, 8);
            const __m512i d0 = _mm512_mask_blend_epi16(high_words, ae, _mm512_slli_epi32(be, 16));
            const __m512i d1 = _mm512_mask_blend_epi16(high_words, ao, _mm512_slli_epi32(bo, 16));
            const __m512i d2 = _mm512_mask_blend_epi16(high_words, _mm512_srli_epi32(ae, 16), be);
            const __m512i d3 = _mm512_mask_blend_epi16(high_words, _mm512_srli_epi32(ao, 16), bo);
            w0 = _mm512_add_epi16(w0, d0);
            w1 = _mm512_add_epi16(w1, d1);
            w2 = _mm512_add_epi16(w2, d2);
            w3 = _mm512_add_epi16(w3, d3);
            if constexpr (kSink != U8Sink::means) {
              q0 = _mm512_add_epi32(q0, _mm512_madd_epi16(d0, d0));
              q1 = _mm512_add_epi32(q1, _mm512_madd_epi16(d1, d1));
              q2 = _mm512_add_epi32(q2, _mm512_madd_epi16(d2, d2));
              q3 = _mm512_add_epi32(q3, _mm512_madd_epi16(d3, d3));
            }
          }
          sums[c][0] = w0, sums[c][1] = w1, sums[c][2] = w2, sums[c][3] = w3;
          sums[c][4] = q0, sums[c][5] = q1, sums[c][6] = q2, sums[c][7] = q3;
        }
      }
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t valid = std::min<int64_t>(64, kn - 64 * c);
        __m512i lanes_s1[4];
        for (int m = 0; m < 4; ++m) {
          const __m512i pair = sums[c][m];  // unsigned halves (vpmaddwd would sign them)
          lanes_s1[m] = _mm512_add_epi32(_mm512_srli_epi32(pair, 16),
                                         _mm512_and_si512(pair, low_words));
        }
        if constexpr (kPending) {
          for (int m = 0; m < 4; ++m) {
            uint32_t* s1 = tile_pending[c].s1[m];
            _mm512_store_si512(s1, _mm512_add_epi32(_mm512_load_si512(s1), lanes_s1[m]));
            _mm512_store_si512(tile_pending[c].s2[m], sums[c][4 + m]);
          }
        } else {
          __m512i s1[4], s2[4];
          interleaved_lane_order(lanes_s1, s1);
          interleaved_lane_order(sums[c] + 4, s2);
          put_block_lanes<kSink>(s1, s2, bn, out, k0 + 64 * c, valid);
        }
      }
    }
  }
}

// Each uint8 kernel has one entry: into the int64 totals, or with `pending` into the
// pending 32-bit sums in its own lane order.
using U8Sums = void(const uint8_t*, int64_t, int64_t, int64_t, int64_t*, int64_t*,
                    PendingChunk*);

ZM_TARGET_AVX512 void column_sums_u8_avx512(const uint8_t* x, int64_t row_stride, int64_t rows,
                                            int64_t lanes, int64_t* s1_out, int64_t* s2_out,
                                            PendingChunk* pending) {
  U8Out out;
  out.s1 = s1_out, out.s2 = s2_out, out.pending = pending;
  if (pending)
    column_sums_u8_avx512_impl<U8Sink::pending>(x, row_stride, rows, lanes, out);
  else
    column_sums_u8_avx512_impl<U8Sink::totals>(x, row_stride, rows, lanes, out);
}
#endif

#if ZMFAST_X86_DISPATCH
// uint8 column sums with AVX512-VNNI, four rows at a time. The bytes of the four rows are
// interleaved (bytes, then words, within 128-bit blocks) so that each dword holds one lane's
// four values; vpdpbusd then adds them into S1 (times ones), and x (x - 128) into T (times
// x ^ 0x80 read as signed), so S2 = T + 128 S1. About 2.5x fewer instructions than the
// vpmaddwd kernel above. Lane 16L + 4m + q is dword 4L + q of vector m. Per block of 512
// rows S2 < 512 * 255^2 < 2^31, and T stays within it, so 32-bit sums are exact.
// Four vectors of 32-bit sums in that order put in lane order: a 4x4 transpose of 128-bit
// blocks.
ZM_TARGET_AVX512_VNNI ZM_INLINE void block_lane_order(const __m512i v[4], __m512i ordered[4]) {
  const __m512i a = _mm512_shuffle_i32x4(v[0], v[1], _MM_SHUFFLE(1, 0, 1, 0));
  const __m512i b = _mm512_shuffle_i32x4(v[2], v[3], _MM_SHUFFLE(1, 0, 1, 0));
  const __m512i c = _mm512_shuffle_i32x4(v[0], v[1], _MM_SHUFFLE(3, 2, 3, 2));
  const __m512i d = _mm512_shuffle_i32x4(v[2], v[3], _MM_SHUFFLE(3, 2, 3, 2));
  ordered[0] = _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  ordered[1] = _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1));
  ordered[2] = _mm512_shuffle_i32x4(c, d, _MM_SHUFFLE(2, 0, 2, 0));
  ordered[3] = _mm512_shuffle_i32x4(c, d, _MM_SHUFFLE(3, 1, 3, 1));
}

// One chunk's tile sums in registers: S1 in s0-s3 and T in t0-t3, in the lane order above.
// Named vectors, not arrays: GCC kept a fully unrolled loop's arrays of vectors on the stack.
struct VnniSums {
  __m512i s0, s1, s2, s3, t0, t1, t2, t3;
};
// A block's first group starts from zeros (`fresh`) instead of a cleared tile.
ZM_TARGET_AVX512_VNNI ZM_INLINE VnniSums load_vnni_sums(const __m512i* tile, bool fresh) {
  if (fresh) {
    const __m512i zero = _mm512_setzero_si512();
    return {zero, zero, zero, zero, zero, zero, zero, zero};
  }
  return {tile[0], tile[1], tile[2], tile[3], tile[4], tile[5], tile[6], tile[7]};
}
template <bool kSquares>
ZM_TARGET_AVX512_VNNI ZM_INLINE void store_vnni_sums(const VnniSums& v, __m512i* tile) {
  tile[0] = v.s0, tile[1] = v.s1, tile[2] = v.s2, tile[3] = v.s3;
  if constexpr (kSquares) tile[4] = v.t0, tile[5] = v.t1, tile[6] = v.t2, tile[7] = v.t3;
}
// One row's 64 bytes of a chunk: a plain load (kWhole), or the `mask`ed lanes of a row that
// is `present`, zeros (which add 0) for one past the group's end.
template <bool kWhole>
ZM_TARGET_AVX512_VNNI ZM_INLINE __m512i load_chunk_row(const uint8_t* at, __mmask64 mask,
                                                       bool present) {
  if constexpr (kWhole) return _mm512_loadu_si512(at);
  return present ? _mm512_maskz_loadu_epi8(mask, at) : _mm512_setzero_si512();
}
// Rows q, q + row_stride, ... (four) of a chunk interleaved into dwords: d_m holds byte
// 16 l + 4 m + i of each of the four rows (128-bit lane l, i < 4) in dword 4 l + i, so that
// one vpdpbusd adds a byte position of four rows. kWhole: all four rows there and all 64
// lanes valid; otherwise the first `rows` rows under `mask`, zeros for the others.
struct RowDwords {
  __m512i d0, d1, d2, d3;
};
template <bool kWhole>
ZM_TARGET_AVX512_VNNI ZM_INLINE RowDwords interleave_four_rows(const uint8_t* q,
                                                               int64_t row_stride,
                                                               __mmask64 mask, int64_t rows) {
  __m512i a0 = load_chunk_row<kWhole>(q, mask, rows > 0);
  __m512i a1 = load_chunk_row<kWhole>(q + row_stride, mask, rows > 1);
  __m512i a2 = load_chunk_row<kWhole>(q + 2 * row_stride, mask, rows > 2);
  __m512i a3 = load_chunk_row<kWhole>(q + 3 * row_stride, mask, rows > 3);
#if !defined(ZMFAST_EMULATE_AVX512)
  // Each row in a register: otherwise GCC folds a row's load into both unpacks that read it,
  // two loads of every row.
  __asm__("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3));
#endif
  const __m512i lo01 = _mm512_unpacklo_epi8(a0, a1), hi01 = _mm512_unpackhi_epi8(a0, a1);
  const __m512i lo23 = _mm512_unpacklo_epi8(a2, a3), hi23 = _mm512_unpackhi_epi8(a2, a3);
  return {_mm512_unpacklo_epi16(lo01, lo23), _mm512_unpackhi_epi16(lo01, lo23),
          _mm512_unpacklo_epi16(hi01, hi23), _mm512_unpackhi_epi16(hi01, hi23)};
}
// One step of the column kernels: four rows of the chunk (see interleave_four_rows), then
// vpdpbusd into S1 and T.
template <bool kWhole, bool kSquares>
ZM_TARGET_AVX512_VNNI ZM_INLINE void add_vnni_rows(VnniSums& v, const uint8_t* q,
                                                   int64_t row_stride, __mmask64 mask = 0,
                                                   int64_t rows = 4) {
  const __m512i ones = _mm512_set1_epi8(1), flip = _mm512_set1_epi8(char(0x80));
  const RowDwords d = interleave_four_rows<kWhole>(q, row_stride, mask, rows);
  v.s0 = _mm512_dpbusd_epi32(v.s0, d.d0, ones);
  v.s1 = _mm512_dpbusd_epi32(v.s1, d.d1, ones);
  v.s2 = _mm512_dpbusd_epi32(v.s2, d.d2, ones);
  v.s3 = _mm512_dpbusd_epi32(v.s3, d.d3, ones);
  if constexpr (kSquares) {
    v.t0 = _mm512_dpbusd_epi32(v.t0, d.d0, _mm512_xor_si512(d.d0, flip));
    v.t1 = _mm512_dpbusd_epi32(v.t1, d.d1, _mm512_xor_si512(d.d1, flip));
    v.t2 = _mm512_dpbusd_epi32(v.t2, d.d2, _mm512_xor_si512(d.d2, flip));
    v.t3 = _mm512_dpbusd_epi32(v.t3, d.d3, _mm512_xor_si512(d.d3, flip));
  }
}

// kRows whole rows (64 valid lanes each) of one chunk into its tile sums: plain loads, no
// per-row tests, the loop unrolled. With the masked loop below for every chunk, per-pixel
// imagenet moments had taken 1.28x this time (builds side by side, see bench/NOTES.md). Only
// the 16-row groups of wide rows take it: a second, 64-row copy for short rows made GCC
// spill the rows to the stack in both.
template <int64_t kRows, bool kSquares>
ZM_TARGET_AVX512_VNNI ZM_INLINE void vnni_whole_chunk(__m512i* tile, const uint8_t* p,
                                                      int64_t row_stride,
                                                      const RowPrefetch& fetch, bool fresh) {
  VnniSums v = load_vnni_sums(tile, fresh);
#pragma GCC unroll 4
  for (int64_t r = 0; r < kRows; r += 4) {
    for (int i = 0; i < 4; ++i) prefetch_row(fetch, r + i, row_stride);
    add_vnni_rows<true, kSquares>(v, p + r * row_stride, row_stride);
  }
  store_vnni_sums<kSquares>(v, tile);
}

// The other chunks: the partial last one of a range (`valid` < 64 lanes), or a group's last
// rows (gn below the group size). Out of line, so that the whole-chunk loop keeps its
// registers.
template <bool kSquares>
ZM_TARGET_AVX512_VNNI __attribute__((noinline)) void vnni_partial_chunk(
    __m512i* tile, const uint8_t* p, int64_t row_stride, int64_t gn, int64_t valid,
    const RowPrefetch& fetch, bool fresh) {
  const __mmask64 mask = valid == 64 ? ~__mmask64(0) : (__mmask64(1) << valid) - 1;
  VnniSums v = load_vnni_sums(tile, fresh);
  for (int64_t r = 0; r < gn; r += 4) {
    for (int i = 0; i < 4; ++i) prefetch_row(fetch, r + i, row_stride);
    add_vnni_rows<false, kSquares>(v, p + r * row_stride, row_stride, mask, gn - r);
  }
  store_vnni_sums<kSquares>(v, tile);
}

// One chunk's block sums (S1 and T in the kernel's lane order) into `out` at lanes
// [k, k + valid), as the sink asks (not pending).
template <U8Sink kSink>
ZM_TARGET_AVX512_VNNI ZM_INLINE void put_vnni_chunk(const __m512i* tile, int64_t count,
                                                    const U8Out& out, int64_t k, int64_t valid) {
  __m512i squares[4], s1[4], s2[4];
  block_lane_order(tile, s1);
  if constexpr (kSink == U8Sink::sums) {
    add_ordered_lanes<true>(s1, out.s1 + k, valid);
    return;
  }
  if constexpr (!sums_squares(kSink)) {  // means: the tile's T was not summed
    put_block_lanes<kSink>(s1, s1, count, out, k, valid);
    return;
  }
  for (int m = 0; m < 4; ++m)
    squares[m] = _mm512_add_epi32(tile[4 + m], _mm512_slli_epi32(tile[m], 7));
  block_lane_order(squares, s2);
  put_block_lanes<kSink>(s1, s2, count, out, k, valid);
}

template <U8Sink kSink>
ZM_TARGET_AVX512_VNNI ZM_INLINE void column_sums_u8_vnni_impl(const uint8_t* x,
                                                              int64_t row_stride, int64_t rows,
                                                              int64_t lanes, const U8Out& out) {
  constexpr bool kPending = kSink == U8Sink::pending;
  constexpr bool kSquares = sums_squares(kSink);
  // Pending sums are themselves the tile (4 S1, 4 T a chunk, the same 512 bytes), kept in
  // place across calls with no clearing or end pass: that fixed cost, about 1 us per 3,072
  // lanes, was a quarter of a 64-image cifar batch on one thread. kPendingRows bounds them.
  const int64_t block_rows = kPending ? rows : kU8BlockRows;
  for (int64_t k0 = 0; k0 < lanes; k0 += 64 * kU8TileChunks) {
    const int64_t kn = std::min<int64_t>(64 * kU8TileChunks, lanes - k0);
    const int64_t chunks = (kn + 63) / 64;
    __m512i(*const sums)[8] = kPending ? reinterpret_cast<__m512i(*)[8]>(out.pending + k0 / 64)
                                       : u8_tile_sums();  // per chunk: 4 S1, 4 T
    for (int64_t b0 = 0; b0 < rows; b0 += block_rows) {
      const int64_t bn = std::min(block_rows, rows - b0);
      const int64_t group = kn <= 256 ? kU8ShortGroupRows : kU8GroupRows;
      for (int64_t g0 = 0; g0 < bn; g0 += group) {
        const int64_t gn = std::min(group, bn - g0);
        const bool fresh = !kPending && g0 == 0;
        const uint8_t* first_row = x + (b0 + g0) * row_stride + k0;
        for (int64_t c = 0; c < chunks; ++c) {
          const int64_t valid = std::min<int64_t>(64, kn - 64 * c);
          const uint8_t* p = first_row + 64 * c;
          const RowPrefetch fetch = row_prefetch(first_row, row_stride, b0 + g0, gn, rows, kn, c);
          if (valid == 64 && gn == kU8GroupRows)
            vnni_whole_chunk<kU8GroupRows, kSquares>(sums[c], p, row_stride, fetch, fresh);
          else
            vnni_partial_chunk<kSquares>(sums[c], p, row_stride, gn, valid, fetch, fresh);
        }
      }
      if constexpr (!kPending)
        for (int64_t c = 0; c < chunks; ++c)
          put_vnni_chunk<kSink>(sums[c], bn, out, k0 + 64 * c, std::min<int64_t>(64, kn - 64 * c));
    }
  }
}

// Into the totals, where the vpmaddwd kernel is the faster (see vnni_suits) it takes over;
// pending sums stay with the kernel the caller chose, whose lane order they hold.
ZM_TARGET_AVX512_VNNI void column_sums_u8_vnni(const uint8_t* x, int64_t row_stride,
                                               int64_t rows, int64_t lanes, int64_t* s1_out,
                                               int64_t* s2_out, PendingChunk* pending) {
  U8Out out;
  out.s1 = s1_out, out.s2 = s2_out, out.pending = pending;
  if (pending)
    column_sums_u8_vnni_impl<U8Sink::pending>(x, row_stride, rows, lanes, out);
  else if (!vnni_suits(rows, lanes))
    column_sums_u8_avx512(x, row_stride, rows, lanes, s1_out, s2_out, nullptr);
  else
    column_sums_u8_vnni_impl<U8Sink::totals>(x, row_stride, rows, lanes, out);
}

// S1 alone into the totals, for means of more than one block (S2 is not summed): half the
// vpdpbusd and no xor.
ZM_TARGET_AVX512_VNNI void column_s1_u8_vnni(const void* data, int64_t row_stride, int64_t rows,
                                             int64_t lanes, int64_t* s1_out, int64_t* s2_out) {
  if (!vnni_suits(rows, lanes))
    return column_sums_u8_avx512(static_cast<const uint8_t*>(data), row_stride, rows, lanes,
                                 s1_out, s2_out, nullptr);
  U8Out out;
  out.s1 = s1_out, out.s2 = s2_out;
  column_sums_u8_vnni_impl<U8Sink::sums>(static_cast<const uint8_t*>(data), row_stride, rows,
                                         lanes, out);
}

// Each lane's mean and M2 (m2 may be null: the mean alone) of rows <= kU8BlockRows rows,
// straight from the block's 32-bit sums: no int64 totals to clear, add into and read back.
ZM_TARGET_AVX512 void column_moments_u8_avx512(const uint8_t* x, int64_t row_stride,
                                               int64_t rows, int64_t lanes, double* mean,
                                               double* m2, const Spread& spread) {
  U8Out out;
  out.mean = mean, out.m2 = m2, out.spread = spread;
  if (m2)
    column_sums_u8_avx512_impl<U8Sink::moments>(x, row_stride, rows, lanes, out);
  else
    column_sums_u8_avx512_impl<U8Sink::means>(x, row_stride, rows, lanes, out);
}
ZM_TARGET_AVX512_VNNI void column_moments_u8_vnni(const uint8_t* x, int64_t row_stride,
                                                  int64_t rows, int64_t lanes, double* mean,
                                                  double* m2, const Spread& spread) {
  U8Out out;
  out.mean = mean, out.m2 = m2, out.spread = spread;
  if (m2)
    column_sums_u8_vnni_impl<U8Sink::moments>(x, row_stride, rows, lanes, out);
  else
    column_sums_u8_vnni_impl<U8Sink::means>(x, row_stride, rows, lanes, out);
}

// A uint8 kernel as the SumsArgs of column_sums_for.
template <U8Sums* kKernel>
void u8_totals(const void* x, int64_t rs, int64_t r, int64_t l, int64_t* a, int64_t* b) {
  kKernel(static_cast<const uint8_t*>(x), rs, r, l, a, b, nullptr);
}
#endif

// Bytes of uint8 sums a thread takes: they run at about 60 GB/s a thread, and a second one
// costs a few us to start and merge (224x224x3 images, one thread against two: one image 3.1
// against 4.0 us, two 5.8 against 6.7 us, four 11.3 against 9.7 us).
constexpr int64_t kSumsBytesPerThread = int64_t(256) << 10;

// S1[i % channels] += x[i] and S2[i % channels] += x[i]^2 (unless s2 is null) for i in
// [from, to): the bytes the linear kernel leaves after its last whole step (from a multiple
// of channels).
inline void add_tail_sums(const uint8_t* x, int64_t from, int64_t to, int channels,
                          int64_t* s1, int64_t* s2) {
  for (int64_t i = from; i < to; ++i) {
    const int64_t v = x[i];
    s1[i % channels] += v;
    if (s2) s2[i % channels] += v * v;
  }
}

// Whole-batch and per-channel sums of uint8 pixels of 1 or 3 channels (a grayscale or RGB
// batch reduced to one value or to its channels), read linearly: no per-lane sums to keep
// (the column kernels' tile of 3,072 lanes, visited once per 16 rows) and only the batch to
// read. vpdpbusd adds the four bytes of each dword, so each dword must hold one channel: one
// channel's vectors go in as they are (byte_sums_u8_vnni), three channels' through the
// column kernels' four-row interleave (rgb_sums_u8_vnni). S1 is summed against ones and S2 as
// x (x - 128) + 128 x, as in the column kernels.
#if ZMFAST_X86_DISPATCH
// Steps a set of 32-bit lanes takes between flushes into int64: a lane gains at most 4 * 255
// (S1) and 4 * 127 * 255 (S2 - 128 S1) a step, so 16,384 steps stay below 2^31.
constexpr int64_t kChannelFlushSteps = 16384;

// One 64-byte step into a set of lanes: S1 and sum x (x - 128), per dword lane.
ZM_TARGET_AVX512_VNNI ZM_INLINE void add_step_u8(__m512i& s1, __m512i& shifted, __m512i v) {
#if !defined(ZMFAST_EMULATE_AVX512)
  __asm__("" : "+v"(v));  // one load: GCC otherwise folded it into both the xor and a vpdpbusd
#endif
  s1 = _mm512_dpbusd_epi32(s1, v, _mm512_set1_epi8(1));
  shifted = _mm512_dpbusd_epi32(shifted, v, _mm512_xor_si512(v, _mm512_set1_epi8(char(0x80))));
}
// An empty asm at the end of a step loop that keeps its eight sums in their registers: GCC
// otherwise copied each vpdpbusd's accumulator to another register and back, a move for every
// vpdpbusd.
ZM_TARGET_AVX512_VNNI ZM_INLINE void keep_sums_in_registers(__m512i& a0, __m512i& a1,
                                                            __m512i& a2, __m512i& a3,
                                                            __m512i& b0, __m512i& b1,
                                                            __m512i& b2, __m512i& b3) {
#if !defined(ZMFAST_EMULATE_AVX512)
  __asm__("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(b0), "+v"(b1), "+v"(b2), "+v"(b3));
#else
  (void)a0, (void)a1, (void)a2, (void)a3, (void)b0, (void)b1, (void)b2, (void)b3;
#endif
}

// S1 (and S2 with kWantM2; else s2 unused) of `steps` 64-byte vectors at x into s1[0] and
// s2[0]: the two halves of the range read side by side, two steps of each a pass, each step
// into its own set of lanes (a sum's vpdpbusd waits for its last one, about 5 cycles). Two
// streams keep more reads in flight (A/B, 2 threads: 1.50x -> 0.99x of the read floor for
// cifar, 1.11x-1.13x -> 0.99x-1.02x for imagenet).
template <bool kWantM2>
ZM_TARGET_AVX512_VNNI void byte_sums_u8_vnni(const uint8_t* x, int64_t steps, int64_t* s1,
                                             int64_t* s2) {
  constexpr int kSets = 4, kPer = 2;  // sets u < 2: the first half's steps; u >= 2: the second's
  const int64_t half = steps / 2;
  for (int64_t done = 0; done < half;) {
    const int64_t end = std::min(half, done + kPer * kChannelFlushSteps);
    __m512i sums[kSets], shifted[kSets];  // S1 and sum x (x - 128), per dword lane
    for (int u = 0; u < kSets; ++u) sums[u] = shifted[u] = _mm512_setzero_si512();
    for (int64_t step = done; step < end; step += kPer) {
      const int here = int(std::min<int64_t>(kPer, end - step));
      for (int u = 0; u < kSets; ++u)
        if (u % kPer < here) {
          const __m512i v = _mm512_loadu_si512(x + (u / kPer * half + step + u % kPer) * 64);
          if (kWantM2)
            add_step_u8(sums[u], shifted[u], v);
          else
            sums[u] = _mm512_dpbusd_epi32(sums[u], v, _mm512_set1_epi8(1));
        }
    }
    for (int u = 0; u < kSets; ++u) {
      alignas(64) uint32_t lanes1[16];
      alignas(64) int32_t lanes2[16];
      _mm512_store_si512(lanes1, sums[u]);
      _mm512_store_si512(lanes2, shifted[u]);
      for (int lane = 0; lane < 16; ++lane) {
        s1[0] += lanes1[lane];
        if (kWantM2) s2[0] += int64_t(lanes2[lane]) + 128 * int64_t(lanes1[lane]);
      }
    }
    done = end;
  }
  add_tail_sums(x, 2 * half * 64, steps * 64, 1, s1, kWantM2 ? s2 : nullptr);
}

// Per-channel sums of interleaved RGB uint8 with VNNI and no byte permutes: the AVX2 kernel's
// scheme (rgb_sums_u8_avx2) with the column kernels' four-row step. A thread's range is read
// as four rows, its quarters, each a whole number of 192-byte segments; chunk j of segment k
// of the four rows goes through interleave_four_rows, each dword one byte position of the
// four, so one channel. Byte 64 j + 16 l + 4 m + i of a segment (chunk j, 128-bit lane l,
// dword quarter m, dword i) is channel (j + l + m + i) mod 3, so the twelve (j, m) quarters
// share three sets of lanes, by (j + m) mod 3, and lane 4 l + i of set s holds channel
// (s + l + i) mod 3: six accumulators in registers for the whole range. It replaced a kernel
// of three VBMI byte permutes a segment (on the vpdpbusd pipe) over two streams: old build
// beside new, 2 threads, cifar per channel 0.76x-0.79x the time (1.45x -> 1.11x of the read
// floor), one 224 x 224 x 3 image 0.80x-0.85x; the four rows 192 bytes apart instead of the
// quarters (one stream) gained only 0.82x-0.97x.
// Segments between folds: a set's 32-bit lanes take four vpdpbusd a segment, each adding at
// most 4 * 255 to S1 and 4 * 255 * 127 to sum x (x - 128): 4,096 segments stay below 2^31.
constexpr int64_t kRgbVnniFoldSegments = 4096;

// The dwords of a chunk into the three sets, quarter m into set (j + m) mod 3: set_j is the
// chunk's own set, then the next two.
template <bool kWantM2>
ZM_TARGET_AVX512_VNNI ZM_INLINE void add_rgb_chunk(const RowDwords& d, __m512i& s_j, __m512i& s_j1,
                                                   __m512i& s_j2, __m512i& t_j, __m512i& t_j1,
                                                   __m512i& t_j2) {
  const __m512i ones = _mm512_set1_epi8(1), flip = _mm512_set1_epi8(char(0x80));
  s_j = _mm512_dpbusd_epi32(s_j, d.d0, ones);
  s_j1 = _mm512_dpbusd_epi32(s_j1, d.d1, ones);
  s_j2 = _mm512_dpbusd_epi32(s_j2, d.d2, ones);
  s_j = _mm512_dpbusd_epi32(s_j, d.d3, ones);
  if constexpr (kWantM2) {
    t_j = _mm512_dpbusd_epi32(t_j, d.d0, _mm512_xor_si512(d.d0, flip));
    t_j1 = _mm512_dpbusd_epi32(t_j1, d.d1, _mm512_xor_si512(d.d1, flip));
    t_j2 = _mm512_dpbusd_epi32(t_j2, d.d2, _mm512_xor_si512(d.d2, flip));
    t_j = _mm512_dpbusd_epi32(t_j, d.d3, _mm512_xor_si512(d.d3, flip));
  }
}

// `segments` 192-byte segments of `rows` rows (four when kWhole; else 1-3, the others read as
// zeros), row r's segment k at x + r * row_stride + 192 k, into s1[c] and s2[c] (kWantM2; else
// S1 alone and s2 unused).
template <bool kWhole, bool kWantM2>
ZM_TARGET_AVX512_VNNI void rgb_rows_u8_vnni(const uint8_t* x, int64_t row_stride,
                                            int64_t segments, int64_t rows, int64_t* s1,
                                            int64_t* s2) {
  const __mmask64 all = ~__mmask64(0);
  for (int64_t done = 0; done < segments;) {
    const int64_t fold_end = std::min(segments, done + kRgbVnniFoldSegments);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0;  // S1 by set
    __m512i t0 = a0, t1 = a0, t2 = a0;                       // sum x (x - 128) by set
    for (int64_t k = done; k < fold_end; ++k) {
      const uint8_t* const q = x + 192 * k;
      add_rgb_chunk<kWantM2>(interleave_four_rows<kWhole>(q, row_stride, all, rows), a0, a1, a2,
                             t0, t1, t2);
      add_rgb_chunk<kWantM2>(interleave_four_rows<kWhole>(q + 64, row_stride, all, rows), a1, a2,
                             a0, t1, t2, t0);
      add_rgb_chunk<kWantM2>(interleave_four_rows<kWhole>(q + 128, row_stride, all, rows), a2, a0,
                             a1, t2, t0, t1);
    }
    done = fold_end;
    alignas(64) uint32_t lanes1[3][16];
    alignas(64) int32_t lanes2[3][16];
    const __m512i sets1[3] = {a0, a1, a2}, sets2[3] = {t0, t1, t2};
    for (int set = 0; set < 3; ++set) {
      _mm512_store_si512(lanes1[set], sets1[set]);
      _mm512_store_si512(lanes2[set], sets2[set]);
      for (int lane = 0; lane < 16; ++lane) {  // dword 4 l + i
        const int c = (set + lane / 4 + lane % 4) % 3;
        s1[c] += lanes1[set][lane];
        if (kWantM2) s2[c] += int64_t(lanes2[set][lane]) + 128 * int64_t(lanes1[set][lane]);
      }
    }
  }
}

// `steps` 192-byte segments at x: the quarters as four rows, then the last steps % 4 segments
// as rows of one segment.
template <bool kWantM2>
ZM_TARGET_AVX512_VNNI void rgb_sums_u8_vnni(const uint8_t* x, int64_t steps, int64_t* s1,
                                            int64_t* s2) {
  const int64_t quarter = steps / 4, row_stride = 192 * quarter;
  if (quarter > 0) rgb_rows_u8_vnni<true, kWantM2>(x, row_stride, quarter, 4, s1, s2);
  if (steps % 4)
    rgb_rows_u8_vnni<false, kWantM2>(x + 4 * row_stride, 192, 1, steps % 4, s1, s2);
}
#endif

#if ZMFAST_X86_DISPATCH
// sums[0] += the sum and sums[1] += the sum of squares of `runs` runs of `run` contiguous
// uint8 values, run r at x + r * stride, on the calling thread. The 32-bit lanes are kept
// across the runs, so that short runs (the 1 KB channel planes of CIFAR images) do not pay a
// fold each, and folded into int64 lanes at one place, every kChannelFlushSteps steps.
// kPairs: whole runs go two at a time, two streams for the prefetchers (A/B: NCHW per
// channel 1.18x -> 1.08x of the read floor for 224 x 224 planes, 1.52x -> 1.31x for 64 x 64);
// a template parameter because single runs (per image) were 1.1x-1.7x slower with the pair
// path compiled in. (Named sets instead of arrays, or summing the sets in 32 bits before
// widening, measured 5-25% slower on runs of 1-3 KB.)
template <bool kPairs>
ZM_TARGET_AVX512_VNNI void run_sums_u8_vnni(const uint8_t* x, int64_t run, int64_t stride,
                                            int64_t runs, int64_t* sums) {
  // Four sets of lanes: a sum's vpdpbusd waits for its last one (about 5 cycles).
  constexpr int kSets = 4;
  const int64_t whole = run / 64, rest = run % 64, run_steps = whole + (rest != 0);
  const __mmask64 tail_mask = rest ? _cvtu64_mask64(~uint64_t(0) >> (64 - rest)) : 0;
  __m512i wide1 = _mm512_setzero_si512(), wide2 = _mm512_setzero_si512();  // int64 lanes
  int64_t r = 0, k = 0;  // the next step: run r, step k
  while (r < runs) {
    __m512i s1[kSets], shifted[kSets];  // S1 and sum x (x - 128), per dword lane
    for (int u = 0; u < kSets; ++u) s1[u] = shifted[u] = _mm512_setzero_si512();
    for (int64_t budget = kChannelFlushSteps; budget > 0 && r < runs;) {
      if (kPairs && k == 0 && r + 1 < runs && 2 * run_steps <= budget) {  // two runs at once
        const uint8_t* const p = x + r * stride;
        const uint8_t* const q = p + stride;
        int64_t j = 0;
        for (; j + 2 <= whole; j += 2) {
          add_step_u8(s1[0], shifted[0], _mm512_loadu_si512(p + 64 * j));
          add_step_u8(s1[1], shifted[1], _mm512_loadu_si512(p + 64 * j + 64));
          add_step_u8(s1[2], shifted[2], _mm512_loadu_si512(q + 64 * j));
          add_step_u8(s1[3], shifted[3], _mm512_loadu_si512(q + 64 * j + 64));
        }
        if (j < whole) {
          add_step_u8(s1[0], shifted[0], _mm512_loadu_si512(p + 64 * j));
          add_step_u8(s1[2], shifted[2], _mm512_loadu_si512(q + 64 * j));
        }
        if (rest) {
          add_step_u8(s1[1], shifted[1], _mm512_maskz_loadu_epi8(tail_mask, p + 64 * whole));
          add_step_u8(s1[3], shifted[3], _mm512_maskz_loadu_epi8(tail_mask, q + 64 * whole));
        }
        budget -= 2 * run_steps;
        r += 2;
        continue;
      }
      const uint8_t* p = x + r * stride;
      const int64_t end = std::min(run_steps, k + budget), full = std::min(end, whole);
      budget -= end - k;
      for (; k + kSets <= full; k += kSets)
        for (int u = 0; u < kSets; ++u)
          add_step_u8(s1[u], shifted[u], _mm512_loadu_si512(p + 64 * (k + u)));
      for (; k < full; ++k) add_step_u8(s1[0], shifted[0], _mm512_loadu_si512(p + 64 * k));
      if (k < end) {  // the run's last, partial step (masked-off bytes read as 0)
        add_step_u8(s1[1], shifted[1], _mm512_maskz_loadu_epi8(tail_mask, p + 64 * k));
        ++k;
      }
      if (k == run_steps) ++r, k = 0;
    }
    for (int u = 0; u < kSets; ++u) {
      const __m256i low1 = _mm512_castsi512_si256(s1[u]), low2 = _mm512_castsi512_si256(shifted[u]);
      const __m256i high1 = _mm512_extracti64x4_epi64(s1[u], 1);
      const __m256i high2 = _mm512_extracti64x4_epi64(shifted[u], 1);
      wide1 = _mm512_add_epi64(wide1, _mm512_add_epi64(_mm512_cvtepu32_epi64(low1),
                                                       _mm512_cvtepu32_epi64(high1)));
      wide2 = _mm512_add_epi64(wide2, _mm512_add_epi64(_mm512_cvtepi32_epi64(low2),
                                                       _mm512_cvtepi32_epi64(high2)));
    }
  }
  const int64_t total1 = _mm512_reduce_add_epi64(wide1);
  sums[0] += total1;
  sums[1] += _mm512_reduce_add_epi64(wide2) + 128 * total1;
}

// One run at p and one at q (two streams), into sets [0] p's even steps, [1] q's even steps,
// [2] p's odd steps and [3] q's odd steps (a sum's vpdpbusd waits for its last one, about 5
// cycles), the masked tail into the odd sets. Through named locals: GCC kept the callers'
// arrays of sets in registers but copied each set twice a step, 16 moves to 8 vpdpbusd (A/B:
// cifar NCHW per channel 1.25x -> 1.11x of the read floor; back-to-back runs 1.58x -> 1.55x
// for NCHW per image and channel, per image unchanged).
ZM_TARGET_AVX512_VNNI ZM_INLINE void run_pair_steps_u8(const uint8_t* p, const uint8_t* q,
                                                       int64_t whole, int64_t rest,
                                                       __mmask64 tail_mask, __m512i* s1,
                                                       __m512i* shifted) {
  __m512i a0 = s1[0], b0 = s1[1], a1 = s1[2], b1 = s1[3];
  __m512i ta0 = shifted[0], tb0 = shifted[1], ta1 = shifted[2], tb1 = shifted[3];
  int64_t k = 0;
  for (; k + 2 <= whole; k += 2) {
    add_step_u8(a0, ta0, _mm512_loadu_si512(p + 64 * k));
    add_step_u8(b0, tb0, _mm512_loadu_si512(q + 64 * k));
    add_step_u8(a1, ta1, _mm512_loadu_si512(p + 64 * k + 64));
    add_step_u8(b1, tb1, _mm512_loadu_si512(q + 64 * k + 64));
    keep_sums_in_registers(a0, b0, a1, b1, ta0, tb0, ta1, tb1);
  }
  if (k < whole) {
    add_step_u8(a0, ta0, _mm512_loadu_si512(p + 64 * k));
    add_step_u8(b0, tb0, _mm512_loadu_si512(q + 64 * k));
  }
  if (rest) {
    add_step_u8(a1, ta1, _mm512_maskz_loadu_epi8(tail_mask, p + 64 * whole));
    add_step_u8(b1, tb1, _mm512_maskz_loadu_epi8(tail_mask, q + 64 * whole));
  }
  s1[0] = a0, s1[1] = b0, s1[2] = a1, s1[3] = b1;
  shifted[0] = ta0, shifted[1] = tb0, shifted[2] = ta1, shifted[3] = tb1;
}

// Planes of a C-contiguous (images, C, run) uint8 batch, plane i summed into channel i % C
// (per-channel statistics of NCHW batches): sums[2c] += S1 and sums[2c + 1] += S2 of channel
// c over planes [first, first + planes). The whole images are read as two streams (the two
// halves side by side, as the linear channel kernel does), each with two sets of 32-bit lanes
// per channel in registers, so that a plane costs no call and no fold (run_sums_u8_vnni pays
// both per output). The lanes are folded into the sums every kChannelFlushSteps / run_steps
// images of a stream, and at the end; the planes of partial images at the ends, and of an
// odd last image, go to run_sums_u8_vnni.
// A/B against run_sums_u8_vnni (2 threads, read-floor ratios): 5000 x 3 x 32 x 32 2.0x-2.5x
// -> 1.26x; 256 x 3 x 224 x 224 1.21x-1.40x -> 1.06x-1.20x (one stream, one set: 1.62x,
// 1.11x-1.14x).
// The caller ensures run_steps <= kChannelFlushSteps.
template <int C>
ZM_TARGET_AVX512_VNNI void cyclic_plane_sums_u8_vnni(const uint8_t* x, int64_t run, int64_t first,
                                                     int64_t planes, int64_t* sums) {
  const int64_t whole = run / 64, rest = run % 64, run_steps = whole + (rest != 0);
  const __mmask64 tail_mask = rest ? _cvtu64_mask64(~uint64_t(0) >> (64 - rest)) : 0;
  int64_t i = first;
  const int64_t end = first + planes;
  // The planes before the first whole image, and after the last, one call each.
  for (; i < end && i % C != 0; ++i)
    run_sums_u8_vnni<false>(x + i * run, run, run, 1, sums + 2 * (i % C));
  const int64_t images = (end - i) / C;
  const int64_t per_flush = std::max<int64_t>(1, kChannelFlushSteps / run_steps);
  // Two streams: the two halves of the whole images, side by side.
  const int64_t half = images / 2;
  const uint8_t* const first_image = x + i * run;
  const auto plane = [&](int64_t n, int c) { return first_image + (n * C + c) * run; };
  for (int64_t n0 = 0; n0 < half; n0 += per_flush) {
    // Per channel: sets 0 and 2 for stream 0's even and odd steps, 1 and 3 for stream 1's (a
    // sum's vpdpbusd waits for its last one, about 5 cycles: one set a stream was 1.3x-1.4x
    // slower on 1 KB planes).
    __m512i s1[C][4], shifted[C][4];
    for (int c = 0; c < C; ++c)
      for (int u = 0; u < 4; ++u) s1[c][u] = shifted[c][u] = _mm512_setzero_si512();
    const int64_t n1 = std::min(half, n0 + per_flush);
    for (int64_t n = n0; n < n1; ++n) {
      for (int c = 0; c < C; ++c) {  // unrolled: the lanes stay in registers
        run_pair_steps_u8(plane(n, c), plane(half + n, c), whole, rest, tail_mask,
                          s1[c], shifted[c]);
      }
    }
    for (int c = 0; c < C; ++c) {
      __m512i wide1 = _mm512_setzero_si512(), wide2 = _mm512_setzero_si512();
      for (int u = 0; u < 4; ++u) {
        wide1 = _mm512_add_epi64(wide1, _mm512_add_epi64(
            _mm512_cvtepu32_epi64(_mm512_castsi512_si256(s1[c][u])),
            _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(s1[c][u], 1))));
        wide2 = _mm512_add_epi64(wide2, _mm512_add_epi64(
            _mm512_cvtepi32_epi64(_mm512_castsi512_si256(shifted[c][u])),
            _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(shifted[c][u], 1))));
      }
      const int64_t total1 = _mm512_reduce_add_epi64(wide1);
      sums[2 * c] += total1;
      sums[2 * c + 1] += _mm512_reduce_add_epi64(wide2) + 128 * total1;
    }
  }
  for (i += 2 * half * C; i < end; ++i)  // an odd last image, a partial one
    run_sums_u8_vnni<false>(x + i * run, run, run, 1, sums + 2 * (i % C));
}

// Outputs that are each one contiguous run of `run` uint8 values, the runs back to back
// (per-image statistics of small images): s1[o] = S1 and s2[o] = S2 of outputs
// [first, first + outputs). The outputs are read as two streams (the two halves side by
// side), each with two sets of 32-bit lanes (even and odd steps), and each output's lanes are
// summed in 32 bits: exact while run <= kRunSums32Max (T = sum x (x - 128) < 2^31).
constexpr int64_t kRunSums32Max = 65536;
// The 16 + 16 dword lanes of two sets of one output, summed in 32 bits (exact here).
ZM_TARGET_AVX512_VNNI ZM_INLINE int64_t sum_lanes_32(__m512i a, __m512i b) {
  return int64_t(_mm512_reduce_add_epi32(_mm512_add_epi32(a, b)));
}
ZM_TARGET_AVX512_VNNI void back_to_back_run_sums_u8_vnni(const uint8_t* x, int64_t run,
                                                         int64_t first, int64_t outputs,
                                                         int64_t* s1_out, int64_t* s2_out) {
  const int64_t whole = run / 64, rest = run % 64;
  const __mmask64 tail_mask = rest ? _cvtu64_mask64(~uint64_t(0) >> (64 - rest)) : 0;
  const int64_t half = outputs / 2;
  for (int64_t n = 0; n < half + outputs % 2; ++n) {
    const bool pair = n < half;  // else the odd last output, alone
    const int64_t o[2] = {first + n, first + half + n};
    const uint8_t* p = x + (pair ? o[0] : first + outputs - 1) * run;
    const uint8_t* q = x + o[1] * run;
    __m512i s1[4], shifted[4];  // p's and q's even steps, then their odd steps
    for (int u = 0; u < 4; ++u) s1[u] = shifted[u] = _mm512_setzero_si512();
    // The odd last output alone goes as both streams, the second's sums unused.
    run_pair_steps_u8(p, pair ? q : p, whole, rest, tail_mask, s1, shifted);
    for (int u = 0; u < (pair ? 2 : 1); ++u) {
      const int64_t at = pair ? o[u] : first + outputs - 1;
      const int64_t total1 = sum_lanes_32(s1[u], s1[u + 2]);
      s1_out[at] = total1;
      s2_out[at] = sum_lanes_32(shifted[u], shifted[u + 2]) + 128 * total1;
    }
  }
}
#endif

#if ZMFAST_X86_DISPATCH
// The AVX2 column kernel's 32-lane chunk: lane 16h + 4m + j (h the 128-bit half) in dword
// 4h + j of v[m]. In lane order, 8 lanes a vector: each vector pairs two of their halves.
ZM_TARGET_AVX2 ZM_INLINE void unpacked_lane_order_avx2(const __m256i v[4], __m256i ordered[4]) {
  ordered[0] = _mm256_permute2x128_si256(v[0], v[1], 0x20);
  ordered[1] = _mm256_permute2x128_si256(v[2], v[3], 0x20);
  ordered[2] = _mm256_permute2x128_si256(v[0], v[1], 0x31);
  ordered[3] = _mm256_permute2x128_si256(v[2], v[3], 0x31);
}

// a / b rounded once without the divider, as divide_by at AVX-512.
ZM_TARGET_AVX2 ZM_INLINE __m256d divide_by_avx2(__m256d a, __m256d b, __m256d y) {
  const __m256d q = _mm256_mul_pd(a, y);
  return _mm256_fmadd_pd(_mm256_fnmadd_pd(q, b, a), y, q);
}

// Each lane's mean and M2 (m2 may be null) from a block's exact sums of `count` rows, given
// as int32 (S1 < 2^17, S2 < 2^25 for count <= kU8BlockRows): n S2 - S1^2 is exact in
// float64, so mean = S1 / n and M2 = (n S2 - S1^2) / n are each rounded once, and var or std
// in place of M2 where `spread` asks, as store_block_moments at AVX-512.
ZM_TARGET_AVX2 ZM_INLINE void store_block_moments_avx2(const __m256i s1[4], const __m256i s2[4],
                                                       int64_t count, double* mean, double* m2,
                                                       const Spread& spread) {
  const __m256d n = _mm256_set1_pd(double(count)), inv_n = _mm256_set1_pd(1.0 / double(count));
  const bool wanted = spread.wanted(), root = spread.root;
  const bool exact_inverse = (count & (count - 1)) == 0;  // as store_block_moments
  const __m256d divisor = _mm256_set1_pd(spread.divisor);
  const __m256d inv_divisor = _mm256_set1_pd(wanted ? 1.0 / spread.divisor : 0.0);
  const auto by_n = [&](__m256d v) ZM_TARGET_AVX2 {
    return exact_inverse ? _mm256_mul_pd(v, inv_n) : divide_by_avx2(v, n, inv_n);
  };
  for (int i = 0; i < 8; ++i) {  // four lanes at a time
    const __m128i half1 = i % 2 ? _mm256_extracti128_si256(s1[i / 2], 1)
                                : _mm256_castsi256_si128(s1[i / 2]);
    const __m256d a = _mm256_cvtepi32_pd(half1);
    _mm256_storeu_pd(mean + 4 * i, by_n(a));
    if (m2) {
      const __m128i half2 = i % 2 ? _mm256_extracti128_si256(s2[i / 2], 1)
                                  : _mm256_castsi256_si128(s2[i / 2]);
      const __m256d b = _mm256_cvtepi32_pd(half2);
      __m256d lane_m2 = by_n(_mm256_fmsub_pd(n, b, _mm256_mul_pd(a, a)));
      if (wanted) {
        lane_m2 = divide_by_avx2(lane_m2, divisor, inv_divisor);
        if (root) lane_m2 = _mm256_sqrt_pd(lane_m2);
      }
      _mm256_storeu_pd(m2 + 4 * i, lane_m2);
    }
  }
}

// uint8 column sums with AVX2, for CPUs without AVX-512 (Zen 2 and 3, Intel client cores):
// the vpmaddwd kernel above at 256 bits, two rows at a time, its pairs made by unpacks: rows a
// and b unpacked bytewise, then each half against zero, give d_m with lane 16h + 4m + j's
// (a, b) in dword 4h + j; 16-bit adds of d_m keep S1 (one half per row of the pair) and
// vpmaddwd(d_m, d_m) = a^2 + b^2 adds into 32-bit S2. 18 operations per row pair of 32
// lanes, against 24 for the AVX-512 kernel's shifts and blends. Those took, on a Zen 3
// (alternating rounds in one process, 2 threads), 1.10x-1.12x the time for cifar per pixel
// and per channel, 1.02x-1.06x for imagenet (from memory), 1.13x for 32 imagenet images.
// Each block of kU8BlockRows rows goes where kSink says, as at AVX-512. Lanes past the last
// whole chunk take the portable loop.
constexpr int64_t kU8Avx2TileChunks = 512;  // 16 KB of each row per tile, as the AVX-512 kernel

inline __m256i (*u8_avx2_tile_sums())[8] {
  constexpr size_t kWords = size_t(kU8Avx2TileChunks) * 8 * 4;  // int64 words
  static thread_local std::vector<int64_t> buffer(kWords + 8);
  const uintptr_t at = (reinterpret_cast<uintptr_t>(buffer.data()) + 63) & ~uintptr_t(63);
  return reinterpret_cast<__m256i(*)[8]>(at);
}

// The lanes past the last whole 32-lane chunk, with the portable loop, into out as kSink says
// (pending needs whole chunks).
template <U8Sink kSink>
void put_u8_tail_lanes(const uint8_t* x, int64_t row_stride, int64_t rows, int64_t lanes,
                       const U8Out& out, int64_t k) {
  if constexpr (kSink == U8Sink::totals || kSink == U8Sink::sums) {
    column_sums_impl<uint8_t>(x, row_stride, rows, lanes, out.s1 + k, out.s2 + k);
  } else if constexpr (kSink == U8Sink::moments || kSink == U8Sink::means) {
    int64_t s1[32] = {}, s2[32] = {};
    column_sums_impl<uint8_t>(x, row_stride, rows, lanes, s1, s2);
    const double n = double(rows);
    for (int64_t l = 0; l < lanes; ++l) {  // exact numerator, one rounding (as above)
      out.mean[k + l] = double(s1[l]) / n;
      if (out.m2) out.m2[k + l] = (n * double(s2[l]) - double(s1[l]) * double(s1[l])) / n;
    }
    if (out.m2 && out.spread.wanted())
      finish_spread_impl(out.m2 + k, lanes, out.spread.divisor, out.spread.root);
  }
}

ZM_TARGET_AVX2 ZM_INLINE __m256i load_row32_avx2(const uint8_t* p, int64_t row, int64_t stride) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + row * stride));
}
// Rows a and b of a 32-lane chunk (b zeros for a last odd row) into its sums: S1 in the pair
// words w (a and b in alternate words), and where kSink sums squares, S2 in the vpmaddwd
// dwords q.
template <U8Sink kSink>
ZM_TARGET_AVX2 ZM_INLINE void add_row_pair_avx2(__m256i a, __m256i b, __m256i& w0, __m256i& w1,
                                                __m256i& w2, __m256i& w3, __m256i& q0,
                                                __m256i& q1, __m256i& q2, __m256i& q3) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i ab_lo = _mm256_unpacklo_epi8(a, b), ab_hi = _mm256_unpackhi_epi8(a, b);
  const __m256i d0 = _mm256_unpacklo_epi8(ab_lo, zero), d1 = _mm256_unpackhi_epi8(ab_lo, zero);
  const __m256i d2 = _mm256_unpacklo_epi8(ab_hi, zero), d3 = _mm256_unpackhi_epi8(ab_hi, zero);
  w0 = _mm256_add_epi16(w0, d0);
  w1 = _mm256_add_epi16(w1, d1);
  w2 = _mm256_add_epi16(w2, d2);
  w3 = _mm256_add_epi16(w3, d3);
  if constexpr (sums_squares(kSink)) {
    q0 = _mm256_add_epi32(q0, _mm256_madd_epi16(d0, d0));
    q1 = _mm256_add_epi32(q1, _mm256_madd_epi16(d1, d1));
    q2 = _mm256_add_epi32(q2, _mm256_madd_epi16(d2, d2));
    q3 = _mm256_add_epi32(q3, _mm256_madd_epi16(d3, d3));
  }
}

// Row m of S1 (or of S2) of the 32 pending lanes from lane k (a multiple of 32): one half of
// a PendingChunk row.
ZM_TARGET_AVX2 ZM_INLINE __m256i* pending_half_avx2(PendingChunk* pending, int64_t k, bool s2,
                                                   int m) {
  PendingChunk& chunk = pending[k / 64];
  return reinterpret_cast<__m256i*>((s2 ? chunk.s2[m] : chunk.s1[m]) + 8 * (k / 32 % 2));
}

// With the pending sink, `lanes` must be a multiple of 32 and the pending 32-bit sums are the
// block's own: S2 loaded into the tile and stored back, S1 added (in the kernel's lane order:
// a chunk of 32 lanes is half of a 64-lane PendingChunk). The moments and means sinks need
// rows <= kU8BlockRows.
template <U8Sink kSink>
ZM_TARGET_AVX2 ZM_INLINE void column_sums_u8_avx2_impl(const uint8_t* x, int64_t row_stride,
                                                       int64_t rows, int64_t lanes,
                                                       const U8Out& out) {
  const int64_t whole = lanes / 32 * 32;
  if (whole < lanes) put_u8_tail_lanes<kSink>(x + whole, row_stride, rows, lanes - whole, out, whole);
  __m256i(*const sums)[8] = u8_avx2_tile_sums();  // per chunk: 4 pair-word S1, 4 dword S2
  const __m256i zero = _mm256_setzero_si256(), low_words = _mm256_set1_epi32(0xffff);
  for (int64_t k0 = 0; k0 < whole; k0 += 32 * kU8Avx2TileChunks) {
    const int64_t kn = std::min<int64_t>(32 * kU8Avx2TileChunks, whole - k0);
    const int64_t chunks = kn / 32;
    for (int64_t b0 = 0; b0 < rows; b0 += kU8BlockRows) {
      const int64_t bn = std::min(kU8BlockRows, rows - b0);
      // The one-block sinks start a block's first group from zeros, as at VNNI (16 imagenet
      // images per pixel 0.91x-0.93x the time at this level, A/B); with the others, which
      // cifar's 5,000 rows take, that took 1.06x the time for its means, so they clear the
      // tile (or load the pending squares) first.
      constexpr bool kFresh = kSink == U8Sink::moments || kSink == U8Sink::means;
      if constexpr (!kFresh)
        for (int64_t c = 0; c < chunks; ++c)
          for (int i = 0; i < 8; ++i)
            sums[c][i] = kSink == U8Sink::pending && i >= 4
                             ? _mm256_load_si256(pending_half_avx2(out.pending, k0 + 32 * c, true,
                                                                   i - 4))
                             : _mm256_setzero_si256();
      const int64_t group = kn <= 256 ? kU8ShortGroupRows : kU8GroupRows;
      for (int64_t g0 = 0; g0 < bn; g0 += group) {
        const int64_t gn = std::min(group, bn - g0);
        const uint8_t* first_row = x + (b0 + g0) * row_stride + k0;
        const bool fresh = kFresh && g0 == 0;
        for (int64_t c = 0; c < chunks; ++c) {
          const __m256i* const tile = sums[c];
          __m256i w0 = fresh ? zero : tile[0], w1 = fresh ? zero : tile[1];
          __m256i w2 = fresh ? zero : tile[2], w3 = fresh ? zero : tile[3];
          __m256i q0 = fresh ? zero : tile[4], q1 = fresh ? zero : tile[5];
          __m256i q2 = fresh ? zero : tile[6], q3 = fresh ? zero : tile[7];
          const uint8_t* p = first_row + 32 * c;
          const RowPrefetch fetch =
              c % 2 ? RowPrefetch{} : row_prefetch(first_row, row_stride, b0 + g0, gn, rows, kn, c / 2);
          // The pairs with prefetches, the other pairs, then a last odd row: no test in the
          // steps. Testing each row against the prefetch's and the group's ends took up to
          // 1.17x the time on one thread, and cifar's per-pixel and per-channel moments 1.16x
          // and 1.21x on two (alternating rounds, Zen 3).
          const int64_t even = gn & ~int64_t(1), fetched = std::min(fetch.rows, even);
          int64_t r = 0;
          for (; r < fetched - 1; r += 2) {
            __builtin_prefetch(fetch.at + r * row_stride);
            __builtin_prefetch(fetch.at + (r + 1) * row_stride);
            add_row_pair_avx2<kSink>(load_row32_avx2(p, r, row_stride),
                                     load_row32_avx2(p, r + 1, row_stride), w0, w1, w2, w3, q0,
                                     q1, q2, q3);
          }
          for (int64_t f = r; f < fetch.rows; ++f) __builtin_prefetch(fetch.at + f * row_stride);
          for (; r < even; r += 2)
            add_row_pair_avx2<kSink>(load_row32_avx2(p, r, row_stride),
                                     load_row32_avx2(p, r + 1, row_stride), w0, w1, w2, w3, q0,
                                     q1, q2, q3);
          if (gn % 2)
            add_row_pair_avx2<kSink>(load_row32_avx2(p, even, row_stride), zero, w0, w1, w2, w3,
                                     q0, q1, q2, q3);
          sums[c][0] = w0, sums[c][1] = w1, sums[c][2] = w2, sums[c][3] = w3;
          sums[c][4] = q0, sums[c][5] = q1, sums[c][6] = q2, sums[c][7] = q3;
        }
      }
      for (int64_t c = 0; c < chunks; ++c) {  // once per block
        const int64_t k = k0 + 32 * c;
        __m256i lanes_s1[4];
        for (int m = 0; m < 4; ++m) {
          const __m256i pairs = sums[c][m];  // unsigned halves
          lanes_s1[m] = _mm256_add_epi32(_mm256_and_si256(pairs, low_words),
                                         _mm256_srli_epi32(pairs, 16));
        }
        if constexpr (kSink == U8Sink::pending) {  // in the kernel's own order (see above)
          for (int m = 0; m < 4; ++m) {
            __m256i* const p1 = pending_half_avx2(out.pending, k, false, m);
            _mm256_store_si256(p1, _mm256_add_epi32(_mm256_load_si256(p1), lanes_s1[m]));
            _mm256_store_si256(pending_half_avx2(out.pending, k, true, m), sums[c][4 + m]);
          }
        } else {
          __m256i s1[4], s2[4];
          unpacked_lane_order_avx2(lanes_s1, s1);
          if constexpr (sums_squares(kSink)) unpacked_lane_order_avx2(sums[c] + 4, s2);
          if constexpr (kSink == U8Sink::totals || kSink == U8Sink::sums) {
            for (int i = 0; i < 8; ++i) {  // int64 adds, 4 lanes at a time
              const __m256i* from[2] = {s1, s2};
              int64_t* to[2] = {out.s1 + k + 4 * i, out.s2 + k + 4 * i};
              for (int u = 0; u < (kSink == U8Sink::sums ? 1 : 2); ++u) {
                const __m256i v = from[u][i / 2];
                const __m256i wide = _mm256_cvtepu32_epi64(
                    i % 2 ? _mm256_extracti128_si256(v, 1) : _mm256_castsi256_si128(v));
                auto* at = reinterpret_cast<__m256i*>(to[u]);
                _mm256_storeu_si256(at, _mm256_add_epi64(_mm256_loadu_si256(at), wide));
              }
            }
          } else {
            store_block_moments_avx2(s1, s2, bn, out.mean + k,
                                     kSink == U8Sink::moments ? out.m2 + k : nullptr,
                                     out.spread);
          }
        }
      }
    }
  }
}

ZM_TARGET_AVX2 void column_sums_u8_avx2_to(const uint8_t* x, int64_t row_stride, int64_t rows,
                                           int64_t lanes, int64_t* s1_out, int64_t* s2_out,
                                           PendingChunk* pending) {
  U8Out out;
  out.s1 = s1_out, out.s2 = s2_out, out.pending = pending;
  if (pending)
    column_sums_u8_avx2_impl<U8Sink::pending>(x, row_stride, rows, lanes, out);
  else
    column_sums_u8_avx2_impl<U8Sink::totals>(x, row_stride, rows, lanes, out);
}
ZM_TARGET_AVX2 void column_sums_u8_avx2(const void* data, int64_t row_stride, int64_t rows,
                                        int64_t lanes, int64_t* s1_out, int64_t* s2_out) {
  column_sums_u8_avx2_to(static_cast<const uint8_t*>(data), row_stride, rows, lanes, s1_out,
                         s2_out, nullptr);
}
// S1 alone, for means (S2 is not summed; the lanes past the last whole chunk may write it).
// Against column_sums_u8_avx2 (alternating rounds, 2 threads, Zen 3): zm.mean per pixel took
// cifar 0.78x-0.81x the time, imagenet (from memory) 0.98x-1.01x.
ZM_TARGET_AVX2 void column_s1_u8_avx2(const void* data, int64_t row_stride, int64_t rows,
                                      int64_t lanes, int64_t* s1_out, int64_t* s2_out) {
  U8Out out;
  out.s1 = s1_out, out.s2 = s2_out;
  column_sums_u8_avx2_impl<U8Sink::sums>(static_cast<const uint8_t*>(data), row_stride, rows, lanes,
                                         out);
}
// Each lane's mean and M2 (m2 may be null: the mean alone) of rows <= kU8BlockRows rows,
// straight from the block's 32-bit sums, as column_moments_u8_avx512. Against the int64
// totals and store_exact_avx2 (alternating rounds, Zen 3, per-pixel moments): 4 224x224x3
// images 2.1x-2.2x faster, 32 of them 1.5x, 256 (from memory) 1.03x-1.07x.
ZM_TARGET_AVX2 void column_moments_u8_avx2(const uint8_t* x, int64_t row_stride, int64_t rows,
                                           int64_t lanes, double* mean, double* m2,
                                           const Spread& spread) {
  U8Out out;
  out.mean = mean, out.m2 = m2, out.spread = spread;
  if (m2)
    column_sums_u8_avx2_impl<U8Sink::moments>(x, row_stride, rows, lanes, out);
  else
    column_sums_u8_avx2_impl<U8Sink::means>(x, row_stride, rows, lanes, out);
}

// Per-channel sums of interleaved RGB uint8 at the AVX2 level, read linearly, with no tile: a
// thread's range as 96-byte segments, its two halves read side by side as streams a and b.
// Segment k of a and of b hold the same channels at the same bytes, so each pair of their
// 32-byte chunks goes through the column kernel's row-pair step (add_row_pair_avx2: (a, b)
// words, vpmaddwd squares), each dword one channel. Byte
// 32 i + 16 h + 4 m + j of a segment (chunk i, 128-bit half h, unpacked quarter m, dword j) is
// channel (2 i + h + m + j) mod 3, so the twelve (i, m) quarters share three sets of sums, by
// (2 i + m) mod 3: six accumulators in registers for the whole range.
// Steps between folds: S1's 16-bit words gain at most 4 * 255 a step (64 * 1,020 < 2^16), and
// S2's unsigned 32-bit lanes 4 * 2 * 255^2 (4,096 * 520,200 < 2^32).
constexpr int64_t kRgbAvx2WordSteps = 64;
constexpr int64_t kRgbAvx2FoldSteps = 4096;

// `steps` pairs of segments, a at x and b at x + 96 * steps, into s1[c] and s2[c] (kWantM2;
// else S1 alone and s2 unused).
template <bool kWantM2>
ZM_TARGET_AVX2 void rgb_sums_u8_avx2(const uint8_t* x, int64_t steps, int64_t* s1, int64_t* s2) {
  constexpr U8Sink kStep = kWantM2 ? U8Sink::totals : U8Sink::sums;  // sums: no squares
  const uint8_t* const b = x + 96 * steps;
  const __m256i zero = _mm256_setzero_si256(), low_words = _mm256_set1_epi32(0xffff);
  for (int64_t done = 0; done < steps;) {
    const int64_t fold_end = std::min(steps, done + kRgbAvx2FoldSteps);
    __m256i t0 = zero, t1 = zero, t2 = zero;  // S1 in 32-bit lanes, by quarter set
    __m256i q0 = zero, q1 = zero, q2 = zero;  // S2
    while (done < fold_end) {
      const int64_t words_end = std::min(fold_end, done + kRgbAvx2WordSteps);
      __m256i w0 = zero, w1 = zero, w2 = zero;  // S1 in (a, b) words
      for (int64_t k = done; k < words_end; ++k) {
        const uint8_t* const pa = x + 96 * k;
        const uint8_t* const pb = b + 96 * k;
        // The empty asm statements pin the six sums between the three chunk pairs: without
        // them GCC reassociated the step's adds into trees that held more vectors than AVX2's 16
        // registers and spilled about 15 a step (A/B, 2 threads: cifar with squares 0.81x the
        // time, 1.39x -> 1.13x of the read floor; means alone unchanged).
        add_row_pair_avx2<kStep>(load_row32_avx2(pa, 0, 32), load_row32_avx2(pb, 0, 32), w0, w1, w2,
                                 w0, q0, q1, q2, q0);
        __asm__("" : "+x"(w0), "+x"(w1), "+x"(w2), "+x"(q0), "+x"(q1), "+x"(q2));
        add_row_pair_avx2<kStep>(load_row32_avx2(pa, 1, 32), load_row32_avx2(pb, 1, 32), w2, w0, w1,
                                 w2, q2, q0, q1, q2);
        __asm__("" : "+x"(w0), "+x"(w1), "+x"(w2), "+x"(q0), "+x"(q1), "+x"(q2));
        add_row_pair_avx2<kStep>(load_row32_avx2(pa, 2, 32), load_row32_avx2(pb, 2, 32), w1, w2, w0,
                                 w1, q1, q2, q0, q1);
      }
      // The two (unsigned) words of a dword hold one lane's sums of a and of b.
      t0 = _mm256_add_epi32(
          t0, _mm256_add_epi32(_mm256_and_si256(w0, low_words), _mm256_srli_epi32(w0, 16)));
      t1 = _mm256_add_epi32(
          t1, _mm256_add_epi32(_mm256_and_si256(w1, low_words), _mm256_srli_epi32(w1, 16)));
      t2 = _mm256_add_epi32(
          t2, _mm256_add_epi32(_mm256_and_si256(w2, low_words), _mm256_srli_epi32(w2, 16)));
      done = words_end;
    }
    alignas(32) uint32_t lanes1[3][8], lanes2[3][8];
    const __m256i t[3] = {t0, t1, t2}, q[3] = {q0, q1, q2};
    for (int set = 0; set < 3; ++set) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes1[set]), t[set]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes2[set]), q[set]);
      for (int lane = 0; lane < 8; ++lane) {  // dword 4 h + j
        const int c = (set + lane / 4 + lane % 4) % 3;
        s1[c] += lanes1[set][lane];
        if (kWantM2) s2[c] += lanes2[set][lane];
      }
    }
  }
}
#endif

// S1 += the per-channel sums and S2 += the sums of squares (s2 may be null: the sums alone)
// of `bytes` uint8 values of interleaved pixels of `channels` channels (bytes a multiple of
// channels), exactly. Returns false, doing nothing, where there is no such kernel: kernels
// exist for one or three channels at AVX-512 with VNNI. At AVX2, and at AVX-512 without VNNI
// (Skylake-SP), the AVX2 RGB kernel takes three channels, and one channel as three whose sums
// are added: against the column kernels that AVX-512 without VNNI used to take (this Zen 4,
// VNNI off, alternating rounds), 0.67x-0.72x the time, cifar per channel 2.95x -> 1.96x of
// the read floor, imagenet 1.62x -> 1.16x.
inline bool add_channel_sums(const uint8_t* x, int64_t bytes, int channels, int64_t* s1,
                             int64_t* s2, int requested_threads) {
#if ZMFAST_X86_DISPATCH
  const Level level = current_level();
  const bool vnni = (channels == 1 || channels == 3) && use_vnni();
  const bool rgb_avx2 = !vnni && (channels == 1 || channels == 3) &&
                        (level == Level::avx2 || level == Level::avx512);
  if (!vnni && !rgb_avx2) return false;
  const int64_t step_bytes = rgb_avx2 ? 192 : 64 * channels, steps = bytes / step_bytes;
  // The AVX2 kernel with squares takes about 2.2x the read floor's time in L2, so a second
  // thread pays from about 110 KB: 64 KB a thread, as threads_for gives (one 224x224x3 image:
  // 2.75 against 3.70 us, 256 KB: 4.1 against 6.5 us, 96 KB: no gain; Zen 3, data in cache).
  // zm.moments per channel took 0.88x the time for one such image, 0.69x for two (A/B).
  const int64_t per_thread = rgb_avx2 && s2 ? kMinElementsPerThread : kSumsBytesPerThread;
  const int threads =
      int(std::max<int64_t>(1, std::min<int64_t>(requested_threads, bytes / per_thread)));
  std::vector<int64_t> partial(size_t(6 * threads), 0);  // per thread: S1, S2 of 3 channels
  parallel_tasks(threads, threads, [&](int64_t t) {
    int64_t k0, k1;
    split_range(steps, threads, t, k0, k1);
    int64_t* const own = partial.data() + 6 * t;
    if (k0 >= k1) return;
    const uint8_t* from = x + k0 * step_bytes;
    if (rgb_avx2 && s2)
      rgb_sums_u8_avx2<true>(from, k1 - k0, own, own + 3);
    else if (rgb_avx2)
      rgb_sums_u8_avx2<false>(from, k1 - k0, own, own + 3);
    else if (channels == 3 && s2)
      rgb_sums_u8_vnni<true>(from, k1 - k0, own, own + 3);
    else if (channels == 3)
      rgb_sums_u8_vnni<false>(from, k1 - k0, own, own + 3);
    else if (s2)
      byte_sums_u8_vnni<true>(from, k1 - k0, own, own + 3);
    else
      byte_sums_u8_vnni<false>(from, k1 - k0, own, own + 3);
  });
  for (int t = 0; t < threads; ++t)
    for (int c = 0; c < 3; ++c) {  // one channel: the RGB kernel's three (or byte_sums' one)
      s1[c % channels] += partial[6 * t + c];
      if (s2) s2[c % channels] += partial[6 * t + 3 + c];
    }
  add_tail_sums(x, steps * step_bytes, bytes, channels, s1, s2);
  return true;
#else
  (void)x, (void)bytes, (void)channels, (void)s1, (void)s2, (void)requested_threads;
  return false;
#endif
}

// With squares false, the kernel may leave S2 unsummed (the caller does not read it): the
// AVX2 uint8 one does.
template <class T>
SumsArgs* column_sums_for(Level level, bool squares = true) {
#if ZMFAST_X86_DISPATCH
  if constexpr (std::is_same<T, uint8_t>::value) {
    if (level == Level::avx512 && use_vnni())
      return squares ? u8_totals<column_sums_u8_vnni> : column_s1_u8_vnni;
    if (level == Level::avx512) return u8_totals<column_sums_u8_avx512>;
    if (level == Level::avx2) return squares ? column_sums_u8_avx2 : column_s1_u8_avx2;
  }
#endif
  (void)squares;
  return Levels<SumsArgs, column_sums_untyped<T>>::pick(level);
}

// S1 += column sums and S2 += column sums of squares of a C-contiguous (rows, lanes) block.
// Wide rows are split by lanes (each thread owns its totals); narrow ones by rows, into
// per-thread partial totals added afterwards.
// Whether threads should split a column reduction by rows rather than by lanes: short rows
// (per-channel sums, CIFAR images: 3 KB) over many rows, so that each thread reads one
// contiguous range; split by lanes, each read half of every 3 KB row, at 0.6x the speed.
inline bool split_by_rows(int64_t lanes, int64_t rows, int threads) {
  constexpr int64_t kShortRowLanes = 4096;
  return lanes <= kShortRowLanes && rows >= 32 * threads;
}

template <class T>
void add_column_sums(const T* x, int64_t rows, int64_t lanes, int64_t* s1, int64_t* s2,
                     int requested_threads) {
  if (rows == 0 || lanes == 0) return;
  SumsArgs* const sums = column_sums_for<T>(current_level());
  const int threads = int(std::max<int64_t>(1, std::min<int64_t>(
      requested_threads, rows * lanes * int64_t(sizeof(T)) / kSumsBytesPerThread)));
  constexpr int64_t kLine = 64;  // lanes a task boundary is rounded to
  const int64_t lines = (lanes + kLine - 1) / kLine;
  if (threads == 1) {
    sums(x, lanes, rows, lanes, s1, s2);
  } else if (lines >= 4 * threads && !split_by_rows(lanes, rows, threads)) {
    parallel_tasks(threads, threads, [&](int64_t t) {
      int64_t l0, l1;
      split_range(lines, threads, t, l0, l1);
      const int64_t k0 = l0 * kLine, k1 = std::min(lanes, l1 * kLine);
      if (k0 < k1) sums(x + k0, lanes, rows, k1 - k0, s1 + k0, s2 + k0);
    });
  } else {
    std::vector<int64_t> partial(size_t(2 * threads * lanes), 0);
    parallel_tasks(threads, threads, [&](int64_t t) {
      int64_t r0, r1;
      split_range(rows, threads, t, r0, r1);
      int64_t* p = partial.data() + 2 * t * lanes;
      sums(x + r0 * lanes, lanes, r1 - r0, lanes, p, p + lanes);
    });
    for (int t = 0; t < threads; ++t) {
      const int64_t* p = partial.data() + 2 * t * lanes;
      for (int64_t k = 0; k < lanes; ++k) {
        s1[k] += p[k];
        s2[k] += p[lanes + k];
      }
    }
  }
}

// Streams of small uint8 batches (StandardScaler.partial_fit): the AVX-512 or AVX2 kernel
// adds C-contiguous (rows, lanes) batches into `pending` (sets of one PendingChunk per 64
// lanes) instead of the int64 totals. Short rows (split_by_rows: cifar's 3 KB) are split by
// rows across threads, thread t adding into set t, so that each reads one contiguous range;
// other batches are split by lanes into set 0. Against the lanes split (2 threads), 79 cifar
// batches of 64 images took 0.89x-0.90x the time (C++), partial_fit over them 0.87x-0.92x.
// pending_order says which kernel adds a batch at the current level, so in which lane order
// (false where none does: the baseline level, or AVX2 rows of lanes not a multiple of 32); the
// caller flushes before the order changes, bounds the pending rows by kPendingRows and calls
// flush_pending.
inline bool pending_order(int64_t rows, int64_t lanes, PendingOrder& order) {
#if ZMFAST_X86_DISPATCH
  const Level level = current_level();
  if (level == Level::avx512) {
    order = use_vnni() && vnni_suits(rows, lanes) ? PendingOrder::vnni : PendingOrder::avx512;
    return true;
  }
  if (level == Level::avx2 && lanes % 32 == 0) {
    order = PendingOrder::avx2;
    return true;
  }
#endif
  (void)rows, (void)lanes, (void)order;
  return false;
}
// The sets of pending sums that add_column_sums_pending adds such a batch into: one a thread
// where it splits the batch by rows.
inline int pending_sets_for(int64_t rows, int64_t lanes, int requested_threads) {
  const int threads = threads_for(requested_threads, rows * lanes);
  return threads > 1 && split_by_rows(lanes, rows, threads) ? threads : 1;
}
// Adds the batch with the kernel of `order` (from pending_order) into `pending`, which holds
// pending_sets_for(rows, lanes, requested_threads) sets; returns false, doing nothing, where
// its rows are too narrow to split by lanes and too few to split by rows.
inline bool add_column_sums_pending(const uint8_t* x, int64_t rows, int64_t lanes,
                                    PendingChunk* pending, int requested_threads,
                                    PendingOrder order) {
#if ZMFAST_X86_DISPATCH
  if (rows == 0) return true;
  const int threads = threads_for(requested_threads, rows * lanes);
  const int64_t lines = (lanes + 63) / 64;
  U8Sums* const sums = order == PendingOrder::avx2   ? column_sums_u8_avx2_to
                       : order == PendingOrder::vnni ? column_sums_u8_vnni
                                                     : column_sums_u8_avx512;
  if (pending_sets_for(rows, lanes, requested_threads) > 1) {
    parallel_tasks(threads, threads, [&](int64_t t) {
      int64_t r0, r1;
      split_range(rows, threads, t, r0, r1);
      if (r0 < r1)
        sums(x + r0 * lanes, lanes, r1 - r0, lanes, nullptr, nullptr, pending + t * lines);
    });
    return true;
  }
  if (threads > 1 && lines < 4 * threads) return false;
  parallel_tasks(threads, threads, [&](int64_t t) {
    int64_t l0, l1;
    split_range(lines, threads, t, l0, l1);
    const int64_t k0 = l0 * 64, k1 = std::min(lanes, l1 * 64);
    if (k0 < k1) sums(x + k0, lanes, rows, k1 - k0, nullptr, nullptr, pending + l0);
  });
  return true;
#else
  (void)x, (void)rows, (void)lanes, (void)pending, (void)requested_threads, (void)order;
  return false;
#endif
}

// Adds the `sets` sets of pending sums, kept in `order` (see PendingChunk), into the int64
// totals in lane order and clears them.
inline void flush_pending(PendingChunk* pending, int sets, int64_t lanes, int64_t* s1,
                          int64_t* s2, PendingOrder order) {
  const int64_t lines = (lanes + 63) / 64;
  for (int set = 0; set < sets; ++set)
    for (int64_t k = 0; k < lanes; ++k) {
      PendingChunk& chunk = pending[set * lines + k / 64];
      const int lane = int(k % 64), in_half = lane % 32;
      int m = lane % 4, j = lane / 4;  // the AVX-512 vpmaddwd kernel's
      if (order == PendingOrder::vnni) m = lane % 16 / 4, j = lane / 16 * 4 + lane % 4;
      if (order == PendingOrder::avx2)
        m = in_half % 16 / 4, j = lane / 32 * 8 + in_half / 16 * 4 + in_half % 4;
      s1[k] += chunk.s1[m][j];
      s2[k] += order == PendingOrder::vnni
                   ? int64_t(int32_t(chunk.s2[m][j])) + 128 * int64_t(chunk.s1[m][j])
                   : int64_t(chunk.s2[m][j]);
    }
  for (int64_t c = 0; c < sets * lines; ++c) pending[c] = PendingChunk{};
}

// ---------------------------------------------------------------------------------------
// Column moments of integers from exact int64 sums: the rows of `red` are added with the
// column-sums kernel, one run of the innermost reduced dim at a time, and each lane's
// (n, S1, S2) becomes mean and M2 with n*S2 - S1^2 in 128 bits, rounded once. Faster than
// the float merges of column_moments_impl and exact until that last rounding.
// Lanes summed per pass: 256 KB of int64 sums, in L2; as wide as the uint8 kernels' tiles.
constexpr int64_t kExactTile = 16384;

// Rows a lane may sum before S2, or the shifted sum of squares in store_exact, could pass
// 2^63: both are at most count * (max - min)^2.
template <class T>
constexpr int64_t exact_rows_limit() {
  constexpr int64_t range = int64_t(std::numeric_limits<T>::max()) - std::numeric_limits<T>::min();
  return std::numeric_limits<int64_t>::max() / (range * range);
}

// S1, S2 (zeroed first) of rows [r0, r1) of `red` for `lanes` contiguous lanes at `origin`.
template <class T>
void exact_rows(SumsArgs* sums, const char* origin, const Space& red, int64_t r0, int64_t r1,
                int64_t lanes, int64_t* s1, int64_t* s2) {
  std::fill(s1, s1 + lanes, 0);
  std::fill(s2, s2 + lanes, 0);
  const int last = red.nd - 1;
  const int64_t run = red.extent[last], stride = red.stride[0][last];
  Space runs = red;
  runs.nd = last;
  for (int64_t r = r0; r < r1;) {
    const int64_t in_run = r % run, n = std::min(run - in_run, r1 - r);
    const Counter at(runs, r / run);
    sums(origin + at.offset[0] + in_run * stride, stride / int64_t(sizeof(T)), n, lanes, s1, s2);
    r += n;
  }
}

// Mean and M2 of each lane from (n, S1, S2). M2 is shifted by q, the integer nearest the
// mean: t = sum (x - q)^2 = S2 - q (S1 + r), with r = S1 - q n, is exact in wrapping 64-bit
// arithmetic (0 <= t < 2^63 by exact_rows_limit), and M2 = t - r^2/n loses at most a bit or
// two to rounding since t >= sum |x - q| >= |r| >= 2 r^2/n. All of it vectorises, unlike a
// 128-bit n S2 - S1^2.
template <bool kWantM2>
ZM_INLINE void store_exact_impl(int64_t n, const int64_t* s1, const int64_t* s2, int64_t lanes,
                                double* mean, double* m2, int64_t out_stride) {
  const double dn = double(n);
  for (int64_t k = 0; k < lanes; ++k) {
    const double lane_mean = double(s1[k]) / dn;
    mean[k * out_stride] = lane_mean;
    if constexpr (kWantM2) {
      const int64_t q = int64_t(std::nearbyint(lane_mean));
      const int64_t r = s1[k] - q * n;
      const uint64_t t = uint64_t(s2[k]) - uint64_t(q) * uint64_t(s1[k] + r);
      const double rd = double(r);
      m2[k * out_stride] = std::max(0.0, double(int64_t(t)) - rd * (rd / dn));
    }
  }
}

using StoreExactArgs = void(int64_t, const int64_t*, const int64_t*, int64_t, double*, double*,
                            int64_t);
template <bool M2>
void store_exact_base(int64_t n, const int64_t* a, const int64_t* b, int64_t l, double* m,
                      double* v, int64_t s) {
  store_exact_impl<M2>(n, a, b, l, m, v, s);
}
#if ZMFAST_X86_DISPATCH
// x * y modulo 2^64 (AVX2 has no 64-bit multiply).
ZM_TARGET_AVX2 ZM_INLINE __m256i mul_wrapping_epi64(__m256i x, __m256i y) {
  const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(x, 32), y),
                                         _mm256_mul_epu32(x, _mm256_srli_epi64(y, 32)));
  return _mm256_add_epi64(_mm256_mul_epu32(x, y), _mm256_slli_epi64(cross, 32));
}
// double(t) for 0 <= t < 2^64, rounded once: hi * 2^32 exactly, plus lo.
ZM_TARGET_AVX2 ZM_INLINE __m256d u64_to_double(__m256i t) {
  const __m256i two52 = _mm256_set1_epi64x(0x4330000000000000);  // bits of 2^52
  const __m256i two84 = _mm256_set1_epi64x(0x4530000000000000);  // bits of 2^84
  const __m256d high = _mm256_sub_pd(
      _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(t, 32), two84)),
      _mm256_set1_pd(19342813118337666422669312.0));  // 2^84 + 2^52
  return _mm256_add_pd(high, _mm256_castsi256_pd(_mm256_blend_epi32(t, two52, 0xaa)));
}

// store_exact_impl, four lanes a step into contiguous outputs: GCC left it scalar (two divsd
// a lane; AVX2 has no int64 <-> double conversion), about 10 cycles a lane, and imagenet
// per-pixel moments took 1.14x the time with it (alternating rounds, 2 threads). The same
// steps and roundings: conversions through 1.5 * 2^52 while |S1| < 2^51, r = S1 - q n exact
// in float64, t in wrapping int64.
template <bool M2>
ZM_TARGET_AVX2 void store_exact_avx2(int64_t n, const int64_t* a, const int64_t* b, int64_t l,
                                     double* m, double* v, int64_t s) {
  int64_t k = 0;
  if (s == 1 && n < (int64_t(1) << 31)) {
    const __m256i magic_bits = _mm256_set1_epi64x(0x4338000000000000);  // 1.5 * 2^52
    const __m256d magic = _mm256_castsi256_pd(magic_bits), dn = _mm256_set1_pd(double(n));
    const __m256i bias = _mm256_set1_epi64x(int64_t(1) << 51);
    const __m256i too_wide = _mm256_set1_epi64x(~((int64_t(1) << 52) - 1));
    for (; k + 4 <= l; k += 4) {
      const __m256i s1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + k));
      // S1 + 2^51 in [0, 2^52), else this step and the rest go to the scalar loop.
      if (!_mm256_testz_si256(_mm256_add_epi64(s1, bias), too_wide)) break;
      const __m256d s1d =
          _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(s1, magic_bits)), magic);
      const __m256d mean = _mm256_div_pd(s1d, dn);
      _mm256_storeu_pd(m + k, mean);
      if constexpr (M2) {
        const __m256d qd = _mm256_round_pd(mean, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256d rd = _mm256_fnmadd_pd(qd, dn, s1d);  // |q n| < 2^52: exact
        const __m256i q =
            _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(qd, magic)), magic_bits);
        const __m256i r =
            _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(rd, magic)), magic_bits);
        const __m256i s2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k));
        const __m256i t = _mm256_sub_epi64(s2, mul_wrapping_epi64(q, _mm256_add_epi64(s1, r)));
        const __m256d spread = _mm256_fnmadd_pd(rd, _mm256_div_pd(rd, dn), u64_to_double(t));
        _mm256_storeu_pd(v + k, _mm256_max_pd(spread, _mm256_setzero_pd()));
      }
    }
  }
  if (k < l)
    store_exact_impl<M2>(n, a + k, M2 ? b + k : b, l - k, m + k * s, M2 ? v + k * s : v, s);
}
template <bool M2>
ZM_TARGET_AVX512 void store_exact_avx512(int64_t n, const int64_t* a, const int64_t* b,
                                         int64_t l, double* m, double* v, int64_t s) {
  store_exact_impl<M2>(n, a, b, l, m, v, s);
}
#endif
template <bool M2> StoreExactArgs* store_exact_for(Level level) {
#if ZMFAST_X86_DISPATCH
  if (level == Level::avx512) return store_exact_avx512<M2>;
  if (level == Level::avx2) return store_exact_avx2<M2>;
#endif
  (void)level;
  return store_exact_base<M2>;
}

// The uint8 kernel that gives each lane's moments of up to kU8BlockRows rows straight from
// its 32-bit sums, or null where there is none.
inline U8Moments* u8_moments_for(Level level) {
#if ZMFAST_X86_DISPATCH
  if (level == Level::avx512) return use_vnni() ? column_moments_u8_vnni : column_moments_u8_avx512;
  if (level == Level::avx2) return column_moments_u8_avx2;
#endif
  (void)level;
  return nullptr;
}

inline int64_t* reusable_sums(size_t n) {
  static thread_local std::vector<int64_t> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// Each lane's mean and M2 of integer columns from exact sums. With `spread` wanted, its lanes'
// var or std in place of M2 where the outputs are contiguous lanes; `spread` is then cleared
// (done). Returns false (doing nothing) where this path does not apply: non-integer or
// strided lanes, reduced strides that are not whole elements, short runs, or counts that
// could overflow.
template <class T, bool kWantM2>
bool exact_column_moments(const char* base, const Space& outer, int64_t lanes,
                          int64_t lane_stride, int64_t lane_out_stride, const Space& red,
                          double* mean_out, double* m2_out, int threads, Spread& spread) {
  if constexpr (!kIsInt<T>) {
    (void)base, (void)outer, (void)lanes, (void)lane_stride, (void)lane_out_stride, (void)red;
    (void)mean_out, (void)m2_out, (void)threads, (void)spread;
    return false;
  } else {
    const int64_t count = red.size();
    if (lane_stride != int64_t(sizeof(T)) || count > exact_rows_limit<T>()) return false;
    for (int i = 0; i < red.nd; ++i)
      if (red.stride[0][i] % int64_t(sizeof(T)) != 0) return false;
    if (red.nd > 1 && red.extent[red.nd - 1] < 16) return false;  // a flush per short run
    SumsArgs* const sums = column_sums_for<T>(current_level(), kWantM2);
    StoreExactArgs* const store_exact = store_exact_for<kWantM2>(current_level());
    // One block of uint8 rows in one run, into contiguous outputs: moments from 32-bit sums.
    U8Moments* const one_block =
        std::is_same<T, uint8_t>::value && red.nd == 1 && count <= kU8BlockRows &&
                lane_out_stride == 1
            ? u8_moments_for(current_level())
            : nullptr;
    const int64_t n_outer = outer.size(), lines = (lanes + 63) / 64;
    const int64_t lane_parts =
        n_outer >= threads ? 1 : std::min<int64_t>(lines, (threads + n_outer - 1) / n_outer);
    // A single output (the one-block kernel needs all rows of its lanes).
    const bool by_rows = n_outer == 1 && !one_block && split_by_rows(lanes, count, threads);
    if (threads == 1 || (n_outer * lane_parts >= threads && lines >= 4 * lane_parts && !by_rows)) {
      // Each task owns whole outputs: (outer index, lane range) units, in tiles of lanes. A
      // wanted spread is finished by the task that stored the lanes (in the one-block kernel
      // as it stores them, whose divisions need a divisor >= 1: see divide_by), while they
      // are in its cache.
      const bool finishes = kWantM2 && spread.divisor >= 1 && lane_out_stride == 1;
      const Spread in_block = finishes ? spread : Spread{};
      FinishSpread* const finish = Levels<FinishSpread, finish_spread_impl>::pick(current_level());
      const int64_t units = n_outer * lane_parts;
      parallel_tasks(threads, threads, [&](int64_t t) {
        int64_t u0, u1;
        split_range(units, threads, t, u0, u1);
        int64_t* const s1 = reusable_sums(size_t(2 * kExactTile));
        int64_t* const s2 = s1 + kExactTile;
        for (int64_t u = u0; u < u1; ++u) {
          const Counter o(outer, u / lane_parts);
          int64_t l0, l1;
          split_range(lines, lane_parts, u % lane_parts, l0, l1);
          if (one_block) {
            const int64_t k0 = l0 * 64, kn = std::min(lanes, l1 * 64) - k0;
            one_block(reinterpret_cast<const uint8_t*>(base + o.offset[0] + k0),
                      red.stride[0][0], count, kn, mean_out + o.offset[1] + k0,
                      kWantM2 ? m2_out + o.offset[1] + k0 : nullptr, in_block);
            continue;
          }
          for (int64_t k0 = l0 * 64; k0 < std::min(lanes, l1 * 64); k0 += kExactTile) {
            const int64_t kn = std::min({kExactTile, lanes - k0, l1 * 64 - k0});
            exact_rows<T>(sums, base + o.offset[0] + k0 * lane_stride, red, 0, count, kn, s1, s2);
            store_exact(count, s1, s2, kn, mean_out + o.offset[1] + k0 * lane_out_stride,
                                    kWantM2 ? m2_out + o.offset[1] + k0 * lane_out_stride : nullptr,
                                    lane_out_stride);
            if (finishes) finish(m2_out + o.offset[1] + k0, kn, spread.divisor, spread.root);
          }
        }
      });
      if (finishes) spread = Spread{};
      return true;
    }
    // Few, narrow outputs: each thread sums a range of rows; the partial sums are added.
    int64_t* const partial = reusable_sums(size_t(2 * threads * lanes));
    Counter o(outer, 0);
    for (int64_t i = 0; i < n_outer; ++i, o.next()) {
      const char* origin = base + o.offset[0];
      parallel_tasks(threads, threads, [&](int64_t t) {
        int64_t r0, r1;
        split_range(count, threads, t, r0, r1);
        int64_t* s1 = partial + 2 * t * lanes;
        exact_rows<T>(sums, origin, red, r0, r1, lanes, s1, s1 + lanes);
      });
      for (int t = 1; t < threads; ++t)
        for (int64_t k = 0; k < 2 * lanes; ++k) partial[k] += partial[2 * t * lanes + k];
      store_exact(count, partial, partial + lanes, lanes, mean_out + o.offset[1],
                              kWantM2 ? m2_out + o.offset[1] : nullptr, lane_out_stride);
    }
    return true;
  }
}

#if ZMFAST_X86_DISPATCH
// One 32-byte step of uint8 values into S1 (vpsadbw, 64-bit lanes) and the squares q
// (vpmaddwd of their 16-bit forms, unsigned 32-bit lanes gaining at most 4 * 255^2 a step:
// the caller folds them before kAvx2FoldSteps steps).
constexpr int64_t kAvx2FoldSteps = 16384;  // 16,384 * 4 * 255^2 < 2^32
ZM_TARGET_AVX2 ZM_INLINE void add_step_u8_avx2(__m256i& s1, __m256i& q, __m256i v) {
  const __m256i zero = _mm256_setzero_si256();
  s1 = _mm256_add_epi64(s1, _mm256_sad_epu8(v, zero));
  const __m256i lo = _mm256_unpacklo_epi8(v, zero), hi = _mm256_unpackhi_epi8(v, zero);
  q = _mm256_add_epi32(q, _mm256_add_epi32(_mm256_madd_epi16(lo, lo), _mm256_madd_epi16(hi, hi)));
}

// The four 64-bit lanes of S1, and the eight unsigned 32-bit lanes of the squares, summed.
ZM_TARGET_AVX2 ZM_INLINE int64_t sum_lanes_64_avx2(__m256i v) {
  const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
}
ZM_TARGET_AVX2 ZM_INLINE int64_t sum_square_lanes_avx2(__m256i q) {
  const __m256i zero = _mm256_setzero_si256();
  return sum_lanes_64_avx2(
      _mm256_add_epi64(_mm256_unpacklo_epi32(q, zero), _mm256_unpackhi_epi32(q, zero)));
}

// S1 and S2 of `runs` uint8 runs of `run` bytes, `stride` bytes apart, added into sums[0] and
// sums[1], with AVX2, the squares folded into int64 every kAvx2FoldSteps steps.
ZM_TARGET_AVX2 void run_sums_u8_avx2(const uint8_t* x, int64_t run, int64_t stride,
                                     int64_t runs, int64_t* sums) {
  const __m256i zero = _mm256_setzero_si256();
  const int64_t whole = run / 32 * 32;
  __m256i s1 = zero, q = zero;
  int64_t total1 = 0, total2 = 0;
  int64_t steps = 0;  // steps since the squares were last folded
  for (int64_t r = 0; r < runs; ++r) {
    const uint8_t* const p = x + r * stride;
    for (int64_t j = 0; j < whole; j += 32) {
      add_step_u8_avx2(s1, q, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + j)));
      if (++steps == kAvx2FoldSteps) total2 += sum_square_lanes_avx2(q), q = zero, steps = 0;
    }
    for (int64_t j = whole; j < run; ++j) {
      const int64_t v = p[j];
      total1 += v, total2 += v * v;
    }
  }
  sums[0] += total1 + sum_lanes_64_avx2(s1);
  sums[1] += total2 + sum_square_lanes_avx2(q);
}


// The most whole 32-byte steps a plane may have for cyclic_plane_sums_u8_avx2: a pair of
// planes (two streams) adds 2 * steps to its squares' lanes between folds.
constexpr int64_t kAvx2CyclicMaxSteps = kAvx2FoldSteps / 2;

// cyclic_plane_sums_u8_vnni at the AVX2 level: planes of a C-contiguous (images, C, run)
// uint8 batch, plane i into channel i % C (sums[2c] S1, sums[2c + 1] S2), over planes
// [first, first + planes). The whole images go as two streams (the two halves side by side),
// each channel's S1 and squares in registers for both; the squares are widened every
// 16,384 steps of a channel. The general row loop called run_sums_u8_avx2 per channel along
// the images, 1 KB of every 3 KB: a prefetch miss at each plane (cifar NCHW per channel:
// 3.5x of the read floor on one thread). The caller ensures run / 32 <= kAvx2CyclicMaxSteps.
template <int C>
ZM_TARGET_AVX2 void cyclic_plane_sums_u8_avx2(const uint8_t* x, int64_t run, int64_t first,
                                              int64_t planes, int64_t* sums) {
  const int64_t whole = run / 32, tail_from = whole * 32;
  int64_t i = first;
  const int64_t end = first + planes;
  for (; i < end && i % C != 0; ++i)  // the planes before the first whole image
    run_sums_u8_avx2(x + i * run, run, run, 1, sums + 2 * (i % C));
  const int64_t images = (end - i) / C, half = images / 2;
  const int64_t per_fold =
      std::max<int64_t>(1, kAvx2FoldSteps / std::max<int64_t>(1, 2 * whole));
  const uint8_t* const first_image = x + i * run;
  const auto plane = [&](int64_t n, int c) { return first_image + (n * C + c) * run; };
  const __m256i zero = _mm256_setzero_si256();
  for (int64_t n0 = 0; n0 < half; n0 += per_fold) {
    __m256i s1[C], q[C];
    int64_t tail1[C] = {}, tail2[C] = {};
    for (int c = 0; c < C; ++c) s1[c] = q[c] = zero;
    const int64_t n1 = std::min(half, n0 + per_fold);
    for (int64_t n = n0; n < n1; ++n) {
      for (int c = 0; c < C; ++c) {  // unrolled: the lanes stay in registers
        const uint8_t* const p = plane(n, c);
        const uint8_t* const r = plane(half + n, c);
        for (int64_t k = 0; k < tail_from; k += 32) {
          add_step_u8_avx2(s1[c], q[c], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + k)));
          add_step_u8_avx2(s1[c], q[c], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + k)));
        }
        for (int64_t k = tail_from; k < run; ++k) {
          const int64_t a = p[k], b = r[k];
          tail1[c] += a + b, tail2[c] += a * a + b * b;
        }
      }
    }
    for (int c = 0; c < C; ++c) {
      sums[2 * c] += sum_lanes_64_avx2(s1[c]) + tail1[c];
      sums[2 * c + 1] += sum_square_lanes_avx2(q[c]) + tail2[c];
    }
  }
  for (i += 2 * half * C; i < end; ++i)  // an odd last image, a partial one
    run_sums_u8_avx2(x + i * run, run, run, 1, sums + 2 * (i % C));
}


// back_to_back_run_sums_u8_vnni at the AVX2 level: outputs that are each one contiguous run
// of `run` uint8 values, back to back (per image), s1[o] = S1 and s2[o] = S2 of outputs
// [first, first + outputs), the two halves read side by side as two streams. A run of at most
// kAvx2RunSums32Max bytes keeps its squares' 32-bit lanes below 2^32. The general row loop's
// call per output, with its fold, had cost cifar per image 1.3x of the read floor on one
// thread.
constexpr int64_t kAvx2RunSums32Max = 32 * kAvx2FoldSteps;
ZM_TARGET_AVX2 void back_to_back_run_sums_u8_avx2(const uint8_t* x, int64_t run, int64_t first,
                                                  int64_t outputs, int64_t* s1_out,
                                                  int64_t* s2_out) {
  const int64_t tail_from = run / 32 * 32, half = outputs / 2;
  const __m256i zero = _mm256_setzero_si256();
  for (int64_t n = 0; n < half + outputs % 2; ++n) {
    const bool pair = n < half;  // else the odd last output, alone
    const int64_t o[2] = {first + n, first + half + n};
    // The odd last output alone goes as both streams, the second's sums unused.
    const uint8_t* const p = x + (pair ? o[0] : first + outputs - 1) * run;
    const uint8_t* const r = pair ? x + o[1] * run : p;
    __m256i s1[2] = {zero, zero}, q[2] = {zero, zero};
    for (int64_t k = 0; k < tail_from; k += 32) {
      add_step_u8_avx2(s1[0], q[0], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + k)));
      add_step_u8_avx2(s1[1], q[1], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + k)));
    }
    const uint8_t* const runs[2] = {p, r};
    for (int u = 0; u < (pair ? 2 : 1); ++u) {
      int64_t total1 = sum_lanes_64_avx2(s1[u]), total2 = sum_square_lanes_avx2(q[u]);
      for (int64_t k = tail_from; k < run; ++k) {
        const int64_t v = runs[u][k];
        total1 += v, total2 += v * v;
      }
      const int64_t at = pair ? o[u] : first + outputs - 1;
      s1_out[at] = total1, s2_out[at] = total2;
    }
  }
}
#endif

// Row reductions of uint8 whose innermost reduced run is contiguous and at least a step long
// (per-image statistics; per-channel statistics of NCHW batches, each plane a run): the runs
// summed exactly by run_sums_u8_vnni (run_sums_u8_avx2 at the AVX2 level), then each
// output's mean and M2 from its int64 (n, S1, S2) as in exact_column_moments. Returns false
// (doing nothing) elsewhere: other types, short or strided runs, AVX-512 without VNNI or the
// baseline level, or counts that could overflow.
// From one step on, run_sums_u8_vnni beats the row kernels (A/B: 256-byte NCHW planes 3.4x
// against 13x of the read floor, 192-byte images 14x against 15x); shorter runs keep them.
constexpr int64_t kExactRunMin = 64;
template <class T, bool kWantM2>
bool exact_row_moments(const char* base, const Space& kept, const Space& rows, int64_t run,
                       int64_t run_stride, double* mean_out, double* m2_out, int threads) {
#if ZMFAST_X86_DISPATCH
  if constexpr (std::is_same<T, uint8_t>::value) {
    const int64_t outputs = kept.size(), per_output = rows.size(), count = per_output * run;
    // VNNI, or AVX2 (cyclic_plane_sums_u8_avx2, or run_sums_u8_avx2 in the general loop).
    const bool vnni = use_vnni();
    if (run_stride != 1 || run < kExactRunMin || count > exact_rows_limit<T>() ||
        !(vnni || current_level() == Level::avx2))
      return false;
    std::vector<int64_t> sums(size_t(2 * outputs), 0);
    int64_t* const s1 = sums.data();  // S1 of each output, then S2
    int64_t* const s2 = s1 + outputs;
    StoreExactArgs* const store_exact = store_exact_for<kWantM2>(current_level());
    // Per-channel statistics of a contiguous NCHW batch (C = 2..4): one linear pass.
    const int64_t run_steps = (run + 63) / 64;
    if (kept.nd == 1 && rows.nd == 1 && outputs >= 2 && outputs <= 4 &&
        kept.stride[0][0] == run && rows.stride[0][0] == outputs * run &&
        (vnni ? run_steps <= kChannelFlushSteps : run / 32 <= kAvx2CyclicMaxSteps)) {
      const int64_t planes = outputs * per_output;
      std::vector<int64_t> partial(size_t(8 * threads), 0);  // per thread: S1, S2 of 4 outputs
      parallel_tasks(threads, threads, [&](int64_t t) {
        int64_t i0, i1;
        split_range(planes, threads, t, i0, i1);
        const uint8_t* const x = reinterpret_cast<const uint8_t*>(base);
        int64_t* const own = partial.data() + 8 * t;
        if (vnni) {
          if (outputs == 2) cyclic_plane_sums_u8_vnni<2>(x, run, i0, i1 - i0, own);
          if (outputs == 3) cyclic_plane_sums_u8_vnni<3>(x, run, i0, i1 - i0, own);
          if (outputs == 4) cyclic_plane_sums_u8_vnni<4>(x, run, i0, i1 - i0, own);
        } else {
          if (outputs == 2) cyclic_plane_sums_u8_avx2<2>(x, run, i0, i1 - i0, own);
          if (outputs == 3) cyclic_plane_sums_u8_avx2<3>(x, run, i0, i1 - i0, own);
          if (outputs == 4) cyclic_plane_sums_u8_avx2<4>(x, run, i0, i1 - i0, own);
        }
      });
      for (int t = 0; t < threads; ++t)
        for (int64_t c = 0; c < outputs; ++c)
          s1[c] += partial[size_t(8 * t + 2 * c)], s2[c] += partial[size_t(8 * t + 2 * c + 1)];
    } else if (kept.nd == 1 && per_output == 1 && kept.stride[0][0] == run &&
               run <= (vnni ? kRunSums32Max : kAvx2RunSums32Max)) {
      // Per image: one run an output, back to back. Each thread also turns its outputs' sums
      // into moments, in one vectorised store_exact call: a call per output had cost
      // about as much as the sums for 1 KB runs.
      const int64_t out_stride = kept.stride[1][0];
      parallel_tasks(threads, threads, [&](int64_t t) {
        int64_t o0, o1;
        split_range(outputs, threads, t, o0, o1);
        if (o0 >= o1) return;
        const uint8_t* const x = reinterpret_cast<const uint8_t*>(base);
        if (vnni)
          back_to_back_run_sums_u8_vnni(x, run, o0, o1 - o0, s1, s2);
        else
          back_to_back_run_sums_u8_avx2(x, run, o0, o1 - o0, s1, s2);
        store_exact(count, s1 + o0, s2 + o0, o1 - o0, mean_out + o0 * out_stride,
                    kWantM2 ? m2_out + o0 * out_stride : nullptr, out_stride);
      });
      return true;
    } else {
      // Each thread takes a range of (output, row) pairs, so that a few outputs (three channel
      // planes) still share out evenly; the outputs at a range's ends get partial sums.
      std::vector<int64_t> edges(size_t(4 * threads), 0);  // per thread: S1, S2 of its first
      const int64_t pairs = outputs * per_output;           // and of its last output
      // One kernel call takes the rows along the innermost row dimension (one stride).
      const int inner = rows.nd - 1;
      const int64_t inner_rows = rows.nd ? rows.extent[inner] : 1;
      const int64_t inner_stride = rows.nd ? rows.stride[0][inner] : 0;
      parallel_tasks(threads, threads, [&](int64_t t) {
        int64_t p0, p1;
        split_range(pairs, threads, t, p0, p1);
        if (p0 >= p1) return;
        const int64_t first = p0 / per_output, last = (p1 - 1) / per_output;
        Counter output(kept, first), row(rows, p0 % per_output);
        int64_t r = p0 % per_output, o = first;
        int64_t s[2] = {0, 0};
        for (int64_t p = p0; p < p1;) {
          const int64_t along = std::min({inner_rows - r % inner_rows, per_output - r, p1 - p});
          const uint8_t* const first_run =
              reinterpret_cast<const uint8_t*>(base + output.offset[0] + row.offset[0]);
          if (!vnni)
            run_sums_u8_avx2(first_run, run, inner_stride, along, s);
          else if (along > 1)
            run_sums_u8_vnni<true>(first_run, run, inner_stride, along, s);
          else
            run_sums_u8_vnni<false>(first_run, run, inner_stride, along, s);
          p += along, r += along;
          if (r == per_output || p == p1) {  // the output's last row here
            int64_t* edge = o == first ? &edges[size_t(4 * t)]
                            : o == last ? &edges[size_t(4 * t + 2)]
                                        : nullptr;
            if (edge)
              edge[0] += s[0], edge[1] += s[1];
            else
              s1[o] += s[0], s2[o] += s[1];
            s[0] = s[1] = 0;
            r = 0;
            row.seek(0);
            output.next();
            ++o;
          } else {
            row.seek(r);
          }
        }
      });
      for (int t = 0; t < threads; ++t) {  // the edges, added in order (one thread at a time)
        int64_t p0, p1;
        split_range(pairs, threads, t, p0, p1);
        if (p0 >= p1) continue;
        const int64_t first = p0 / per_output, last = (p1 - 1) / per_output;
        s1[first] += edges[size_t(4 * t)], s2[first] += edges[size_t(4 * t + 1)];
        if (last != first) {
          s1[last] += edges[size_t(4 * t + 2)], s2[last] += edges[size_t(4 * t + 3)];
        }
      }
    }
    if (kept.nd == 1) {  // evenly spaced outputs: one vectorised call, not one per output
      store_exact(count, s1, s2, outputs, mean_out, kWantM2 ? m2_out : nullptr,
                  kept.stride[1][0]);
      return true;
    }
    Counter output(kept, 0);
    for (int64_t o = 0; o < outputs; ++o, output.next())
      store_exact(count, s1 + o, s2 + o, 1, mean_out + output.offset[1],
                  kWantM2 ? m2_out + output.offset[1] : nullptr, 1);
    return true;
  }
#endif
  (void)base, (void)kept, (void)rows, (void)run, (void)run_stride, (void)mean_out;
  (void)m2_out, (void)threads;
  return false;
}

// Mean and M2 of each of `features` statistics from exact int64 sums over `lanes` lanes (lane
// j holds statistic j % features) of n values each, as zmfast._stats.RunningSums.moments
// computes them in NumPy: the same integer and float64 steps, so the same bits. m2p may be
// null: the means alone (s2 is then not read).
inline void moments_from_sums(int64_t n, const int64_t* s1, const int64_t* s2, int64_t lanes,
                              int64_t features, double* mp, double* m2p, int threads) {
  const int tasks = features >= (int64_t(1) << 16) ? threads : 1;
  parallel_tasks(tasks, tasks, [&](int64_t task) {
    int64_t f0, f1;
    split_range(features, tasks, task, f0, f1);
    for (int64_t f = f0; f < f1; ++f) {
      int64_t a = 0, b = 0;
      for (int64_t j = f; j < lanes; j += features) {
        a += s1[j];
        if (m2p) b += s2[j];
      }
      const int64_t num = 2 * a + n, den = 2 * n;  // q = floor(num / den): nearest to the mean
      const int64_t q = num >= 0 ? num / den : -((-num + den - 1) / den);
      const int64_t r = a - q * n;
      // sum (x - q)**2 in wrapping int64 arithmetic, as NumPy's: exact at the end.
      const int64_t t = int64_t(uint64_t(b) - uint64_t(q) * (uint64_t(a) + uint64_t(r)));
      const double rn = double(r) / double(n);
      mp[f] = double(q) + rn;
      if (!m2p) continue;  // the means alone
      const double spread = double(t) - double(r) * rn;
      m2p[f] = spread >= 0.0 ? spread : 0.0;  // np.maximum(spread, 0.0)
    }
  });
}

// Row reductions of one short run an output (run < kVirtualLanes, no outer reduced dims):
// the mean over channels of an NHWC batch, or of two images of an F-ordered one. The general
// row loop spends about 40 ns an output on its 32 lanes and merges (8,192 outputs of 3 bytes:
// 400 us, as long as NumPy). Here each output's values are summed in order, as that loop's
// lanes hold them (one value each, added up from lane 0), and compiled for each SIMD level as
// it is (with FMA, GCC contracts M2's s2 - s1 * offset), so the results are the same bits.
template <class T, bool kWantM2>
ZM_INLINE void short_runs_impl(const char* base, const Space& kept, int64_t run,
                               int64_t run_stride, int64_t o0, int64_t o1, double* mean_out,
                               double* m2_out) {
  static_assert(!kIsInt<T> || sizeof(T) <= 2, "the integer sums below are for 8 and 16 bits");
  const double n = double(run);
  Counter o(kept, o0);
  for (int64_t i = o0; i < o1; ++i, o.next()) {
    const char* p = base + o.offset[0];
    double mean, m2, lo = 0.0;
    if constexpr (kIsInt<T>) {  // run < 32: small_int_moments' exact int64
      int64_t s1 = 0, s2 = 0;
      for (int64_t v = 0; v < run; ++v) {
        const int64_t value = *reinterpret_cast<const T*>(p + v * run_stride);
        s1 += value;
        s2 += value * value;
      }
      small_int_moments(run, n, s1, s2, mean, m2);
    } else {
      const double shift = block_shift<T>(*reinterpret_cast<const T*>(p));
      double s1 = 0.0, s2 = 0.0;
      for (int64_t v = 0; v < run; ++v) {
        const double d = double(*reinterpret_cast<const T*>(p + v * run_stride)) - shift;
        s1 += d;
        s2 += d * d;
      }
      block_moments<T>(run, s1, s2, shift, mean, m2, lo);
    }
    mean_out[o.offset[1]] = mean + lo;
    if constexpr (kWantM2) m2_out[o.offset[1]] = m2;
  }
}
using ShortRuns = void(const char*, const Space&, int64_t, int64_t, int64_t, int64_t, double*,
                       double*);
template <class T, bool M2> ShortRuns* short_runs_for(Level level) {
  return Levels<ShortRuns, short_runs_impl<T, M2>>::pick(level);
}

// Column reductions over few rows (count < kFewRows, one block: the mean image of two images,
// F-ordered channels, lanes at a step): each lane's sums are finished straight into the
// outputs. The general column loop spends 10-20 ns a lane on its running moments, their
// scratch and the row-chunk merge, against 1-2 ns for the values of 7 rows (100,003 float32
// lanes: 1.2 ms, NumPy 0.19 ms). Branch-free per lane, so the finish vectorises too: integers
// by small_int_moments, floats as block_moments.
constexpr int64_t kFewRows = 32, kFewRowsLanes = 1024;  // lanes a pass: 24 KB of sums, in L1

template <class T, bool kWantM2>
ZM_INLINE void few_rows_impl(const char* base, const Space& rows, int64_t lane_stride,
                             int64_t lanes, double* mean_out, double* m2_out,
                             int64_t out_stride) {
  static_assert(!kIsInt<T> || sizeof(T) <= 2, "the integer sums below are for 8 and 16 bits");
  using Sum = std::conditional_t<kIsInt<T>, int64_t, double>;
  alignas(64) Sum s1[kFewRowsLanes], s2[kFewRowsLanes];
  alignas(64) double shift[kFewRowsLanes];
  const int64_t count = rows.size();
  const double n = double(count);
  const bool contiguous = lane_stride == int64_t(sizeof(T));
  for (int64_t k0 = 0; k0 < lanes; k0 += kFewRowsLanes) {
    const int64_t kn = std::min(kFewRowsLanes, lanes - k0);
    const char* const origin = base + k0 * lane_stride;
    for (int64_t k = 0; k < kn; ++k) {
      s1[k] = 0;
      s2[k] = 0;
      if constexpr (!kIsInt<T>) {
        const double first = double(*reinterpret_cast<const T*>(origin + k * lane_stride));
        shift[k] = std::fabs(first) <= std::numeric_limits<double>::max() ? first : 0.0;
      }
    }
    Counter row(rows, 0);
    for (int64_t r = 0; r < count; ++r, row.next()) {
      const char* const p = origin + row.offset[0];
      auto add = [&](int64_t k, T value) {
        if constexpr (kIsInt<T>) {
          s1[k] += int64_t(value);
          if constexpr (kWantM2) s2[k] += int64_t(value) * int64_t(value);
        } else {
          const double d = double(value) - shift[k];
          s1[k] += d;
          if constexpr (kWantM2) s2[k] += d * d;
        }
      };
      if (contiguous) {
        const T* const x = reinterpret_cast<const T*>(p);
        for (int64_t k = 0; k < kn; ++k) add(k, x[k]);
      } else {
        for (int64_t k = 0; k < kn; ++k) add(k, *reinterpret_cast<const T*>(p + k * lane_stride));
      }
    }
    double* const mean_at = mean_out + k0 * out_stride;
    double* const m2_at = kWantM2 ? m2_out + k0 * out_stride : nullptr;
    auto finish = [&](auto stride) {  // a constant 1 for contiguous outputs, so stores vectorise
      for (int64_t k = 0; k < kn; ++k) {
        if constexpr (kIsInt<T>) {
          double mean, m2;
          small_int_moments(count, n, s1[k], s2[k], mean, m2);
          mean_at[k * stride] = mean;
          if constexpr (kWantM2) m2_at[k * stride] = m2;
        } else {  // block_moments' steps without its branch, which kept the loop scalar
          const double offset = s1[k] / n, total = shift[k] + offset;
          // TwoSum's error is NaN exactly where the mean is not finite (the shift is): a
          // select on the error itself, which GCC cannot sink into a branch, so the loop
          // vectorises.
          const double error = two_sum_error(shift[k], offset, total);
          mean_at[k * stride] = total + (error == error ? error : 0.0);
          if constexpr (kWantM2) {
            const double spread = s2[k] - s1[k] * offset;
            m2_at[k * stride] = spread <= 0 ? 0.0 : spread;  // rounding, -0.0; NaN stays NaN
          }
        }
      }
    };
    if (out_stride == 1)
      finish(std::integral_constant<int64_t, 1>{});
    else
      finish(out_stride);
  }
}
using FewRows = void(const char*, const Space&, int64_t, int64_t, double*, double*, int64_t);
template <class T, bool M2> FewRows* few_rows_for(Level level) {
  return Levels<FewRows, few_rows_impl<T, M2>>::pick(level);
}

// ---------------------------------------------------------------------------------------
// The whole reduction (see reduce_moments); `spread` is cleared where a path finished it.
template <class T, bool kWantM2>
void reduce_moments_impl(const char* base, const Space& kept, const Space& red,
                         double* mean_out, double* m2_out, int requested_threads,
                         Spread& spread) {
  const int64_t outputs = kept.size();
  const int64_t count = red.size();
  const int threads = threads_for(requested_threads, outputs * count);
  ColumnArgs* const column_moments = column_moments_for<T, kWantM2>(current_level());
  RowArgs* const row_moments = row_moments_for<T, kWantM2>(current_level());
  auto store = [&](int64_t at, const Running& r) {
    mean_out[at] = r.mean + r.lo;  // the double-double mean, rounded once
    if constexpr (kWantM2) m2_out[at] = r.m2;
  };

  // Column shape when the kept dim with the smallest stride is finer than every reduced dim.
  int lane_dim = -1;
  for (int i = 0; i < kept.nd; ++i)
    if (lane_dim < 0 || std::abs(kept.stride[0][i]) < std::abs(kept.stride[0][lane_dim]))
      lane_dim = i;
  const bool column = lane_dim >= 0 && red.nd > 0 &&
                      std::abs(kept.stride[0][lane_dim]) < std::abs(red.stride[0][red.nd - 1]);

  if (column) {
    const int64_t lanes = kept.extent[lane_dim];
    const int64_t lane_stride = kept.stride[0][lane_dim];
    const int64_t lane_out_stride = kept.stride[1][lane_dim];
    Space outer;  // the other kept dims
    for (int i = 0; i < kept.nd; ++i) {
      if (i == lane_dim) continue;
      outer.extent[outer.nd] = kept.extent[i];
      for (int a = 0; a < kMaxArrays; ++a) outer.stride[a][outer.nd] = kept.stride[a][i];
      ++outer.nd;
    }
    if (exact_column_moments<T, kWantM2>(base, outer, lanes, lane_stride, lane_out_stride, red,
                                         mean_out, m2_out, threads, spread))
      return;
    const int64_t n_outer = outer.size();
    if (count < kFewRows) {  // (outer index, lane range) units, each finished by one thread
      FewRows* const few_rows = few_rows_for<T, kWantM2>(current_level());
      const int64_t lane_parts =
          n_outer >= threads ? 1 : std::min(lanes, (threads + n_outer - 1) / n_outer);
      parallel_tasks(threads, threads, [&](int64_t t) {
        int64_t u0, u1;
        split_range(n_outer * lane_parts, threads, t, u0, u1);
        for (int64_t u = u0; u < u1; ++u) {
          const Counter o(outer, u / lane_parts);
          int64_t k0, k1;
          split_range(lanes, lane_parts, u % lane_parts, k0, k1);
          few_rows(base + o.offset[0] + k0 * lane_stride, red, lane_stride, k1 - k0,
                   mean_out + o.offset[1] + k0 * lane_out_stride,
                   kWantM2 ? m2_out + o.offset[1] + k0 * lane_out_stride : nullptr,
                   lane_out_stride);
        }
      });
      return;
    }
    if (n_outer >= threads) {  // many independent outputs: one serial column task each
      Running* const scratch = reusable_scratch(size_t(threads) * size_t(lanes));
      parallel_tasks(threads, threads, [&](int64_t t) {
        int64_t o0, o1;
        split_range(n_outer, threads, t, o0, o1);
        if (o0 >= o1) return;
        Running* acc = scratch + t * lanes;
        Counter o(outer, o0);
        for (int64_t i = o0; i < o1; ++i, o.next()) {
          column_moments(base + o.offset[0], red, 0, count, lane_stride, lanes,
                                     acc);
          for (int64_t k = 0; k < lanes; ++k) store(o.offset[1] + k * lane_out_stride, acc[k]);
        }
      });
      return;
    }
    // Few outputs: split the rows into chunks (each with its own accumulators), or the
    // lanes when there are fewer rows than threads; then merge the chunks lane by lane.
    const int64_t row_chunks = std::min<int64_t>(threads, count);
    const int64_t lane_chunks = std::max<int64_t>(1, threads / row_chunks);
    Running* const partial = reusable_scratch(size_t(row_chunks) * size_t(lanes));
    Counter o(outer, 0);
    for (int64_t i = 0; i < n_outer; ++i, o.next()) {
      const char* origin = base + o.offset[0];
      parallel_tasks(row_chunks * lane_chunks, threads, [&](int64_t task) {
        const int64_t rc = task % row_chunks, lc = task / row_chunks;
        int64_t r0, r1, k0, k1;
        split_range(count, row_chunks, rc, r0, r1);
        split_range(lanes, lane_chunks, lc, k0, k1);
        column_moments(origin + k0 * lane_stride, red, r0, r1, lane_stride,
                                   k1 - k0, partial + rc * lanes + k0);
      });
      parallel_tasks(threads, threads, [&](int64_t t) {
        int64_t k0, k1;
        split_range(lanes, threads, t, k0, k1);
        for (int64_t k = k0; k < k1; ++k) {
          Running total = partial[size_t(k)];
          int64_t done = 0;
          for (int64_t rc = 0; rc < row_chunks; ++rc) {
            int64_t r0, r1;
            split_range(count, row_chunks, rc, r0, r1);
            if (rc > 0) {
              const Running& p = partial[size_t(rc * lanes + k)];
              chan_merge(done, total, r1 - r0, p.mean, p.m2, p.lo);
            }
            done += r1 - r0;
          }
          store(o.offset[1] + k * lane_out_stride, total);
        }
      });
    }
    return;
  }

  // Row shape: each output reduces (outer reduced rows) x (innermost reduced run).
  Space outer_red = red;
  int64_t run = 1, run_stride = 0;
  if (red.nd > 0) {
    --outer_red.nd;
    run = red.extent[red.nd - 1];
    run_stride = red.stride[0][red.nd - 1];
  }
  if (outer_red.nd == 0 && run < kVirtualLanes && outputs >= threads) {
    ShortRuns* const short_runs = short_runs_for<T, kWantM2>(current_level());
    parallel_tasks(threads, threads, [&](int64_t t) {
      int64_t o0, o1;
      split_range(outputs, threads, t, o0, o1);
      if (o0 < o1) short_runs(base, kept, run, run_stride, o0, o1, mean_out, m2_out);
    });
    return;
  }
  if (exact_row_moments<T, kWantM2>(base, kept, outer_red, run, run_stride, mean_out, m2_out,
                                    threads))
    return;
  if (outputs >= threads) {
    parallel_tasks(threads, threads, [&](int64_t t) {
      int64_t o0, o1;
      split_range(outputs, threads, t, o0, o1);
      if (o0 >= o1) return;
      Counter o(kept, o0);
      for (int64_t i = o0; i < o1; ++i, o.next()) {
        Running acc;
        row_moments(base + o.offset[0], outer_red, run, run_stride, 0, count, acc);
        store(o.offset[1], acc);
      }
    });
    return;
  }
  std::vector<Running> partial(static_cast<size_t>(threads));
  std::vector<int64_t> counts(static_cast<size_t>(threads));
  Counter o(kept, 0);
  for (int64_t i = 0; i < outputs; ++i, o.next()) {
    parallel_tasks(threads, threads, [&](int64_t t) {
      int64_t lo, hi;
      split_range(count, threads, t, lo, hi);
      partial[size_t(t)] = Running{};
      counts[size_t(t)] = row_moments(base + o.offset[0], outer_red, run,
                                                  run_stride, lo, hi, partial[size_t(t)]);
    });
    Running total;
    int64_t done = 0;
    for (int t = 0; t < threads; ++t) {
      if (counts[size_t(t)] == 0) continue;
      const Running& p = partial[size_t(t)];
      chan_merge(done, total, counts[size_t(t)], p.mean, p.m2, p.lo);
      done += counts[size_t(t)];
    }
    store(o.offset[1], total);
  }
}

// ---------------------------------------------------------------------------------------
// finish_spread_impl over n values, threaded.
inline void finish_spread(double* m2, int64_t n, double divisor, bool root,
                          int requested_threads) {
  FinishSpread* const finish = Levels<FinishSpread, finish_spread_impl>::pick(current_level());
  // A square root costs about what a few bytes of input do: threads from fewer values.
  const int threads = threads_for(requested_threads, n * (root ? 16 : 2));
  parallel_tasks(threads, threads, [&](int64_t t) {
    int64_t lo, hi;
    split_range(n, threads, t, lo, hi);
    finish(m2 + lo, hi - lo, divisor, root);
  });
}

// The mean and M2 of each output. `kept` dims: array 0 = x byte strides, array 1 = output
// element strides. `red` dims: array 0 = x byte strides, innermost (smallest stride) last.
// With `spread` wanted, m2_out receives var or std instead (see Spread), and must then be
// one array of kept.size() values, in whatever order of the kept dims its strides give.
// Paths that store lanes from registers or tiles finish them there; the others leave
// `spread` wanted, and finish_spread's pass follows.
template <class T, bool kWantM2>
void reduce_moments(const char* base, const Space& kept, const Space& red, double* mean_out,
                    double* m2_out, int requested_threads, Spread spread = {}) {
  const int64_t outputs = kept.size();
  if (outputs == 0 || red.size() == 0) return;  // Python answers empty reductions itself
  reduce_moments_impl<T, kWantM2>(base, kept, red, mean_out, m2_out, requested_threads, spread);
  if (kWantM2 && spread.wanted())
    finish_spread(m2_out, outputs, spread.divisor, spread.root, requested_threads);
}

// Whether every value is finite: the reductions' check for an overflow on the way (see
// zmfast._stats._overflowed). NumPy's isfinite(...).any() over the mean and M2 of 50,176
// lanes took 44 us, as long as the kernel. Memory-bound: baseline code for every level.
inline bool all_finite(const double* x, int64_t n, int requested_threads) {
  const int threads = threads_for(requested_threads, n * 2);
  std::atomic<uint32_t> bad{0};
  parallel_tasks(threads, threads, [&](int64_t t) {
    // Tests of the exponent bits in 32-bit integers, with no early exit, so that the loop
    // vectorises on SSE2 (which compares neither doubles quietly nor 64-bit integers).
    constexpr uint32_t kExponent = uint32_t(0x7ff) << 20;  // of the high word
    int64_t lo, hi;
    uint32_t found = 0;
    split_range(n, threads, t, lo, hi);
    for (int64_t i = lo; i < hi; ++i) {
      uint64_t bits;
      std::memcpy(&bits, x + i, sizeof bits);
      found |= uint32_t((uint32_t(bits >> 32) & kExponent) == kExponent);
    }
    bad.fetch_or(found, std::memory_order_relaxed);
  });
  return bad.load() == 0;
}

}  // namespace zm
