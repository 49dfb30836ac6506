// Fused elementwise transform out = (x - mean) * inv, from the input type into float (or,
// for the inverse transform, back into a rounded and clamped integer type).
//
// The space's arrays: 0 = x, 1 = the statistics (mean and inv share strides), 2 = out, all
// byte strides. The innermost dim is the run every loop below works on: contiguous runs
// vectorise; a run with constant statistics broadcasts them. Channels-first output from
// channels-last input has its own loop that reads each pixel once and writes C planes.
// Arithmetic is float64 so float32 results are correctly rounded from the exact formula.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common.hpp"

namespace zm {

// IEEE binary16 stored as its bits.
struct Half {
  uint16_t bits;
};

// Round-to-nearest-even double -> binary16, as NumPy's npy_doublebits_to_halfbits.
inline uint16_t double_to_half_bits(double value) {
  uint64_t d;
  std::memcpy(&d, &value, sizeof d);
  const uint16_t sign = uint16_t((d & 0x8000000000000000ULL) >> 48);
  uint64_t exponent = d & 0x7ff0000000000000ULL;
  if (exponent >= 0x40f0000000000000ULL) {  // overflow, inf or nan
    if (exponent == 0x7ff0000000000000ULL) {
      const uint64_t significand = d & 0x000fffffffffffffULL;
      if (significand != 0) {
        uint16_t nan = uint16_t(0x7c00u + (significand >> 42));
        if (nan == 0x7c00u) ++nan;
        return uint16_t(sign + nan);
      }
    }
    return uint16_t(sign + 0x7c00u);
  }
  if (exponent <= 0x3f00000000000000ULL) {  // subnormal half or zero
    if (exponent < 0x3e60000000000000ULL) return sign;
    exponent >>= 52;
    uint64_t significand = 0x0010000000000000ULL + (d & 0x000fffffffffffffULL);
    significand <<= (exponent - 998);
    if ((significand & 0x003fffffffffffffULL) != 0x0010000000000000ULL)
      significand += 0x0010000000000000ULL;
    return uint16_t(sign + uint16_t(significand >> 53));
  }
  const uint16_t half_exponent = uint16_t((exponent - 0x3f00000000000000ULL) >> 42);
  uint64_t significand = d & 0x000fffffffffffffULL;
  if ((significand & 0x000007ffffffffffULL) != 0x0000020000000000ULL)
    significand += 0x0000020000000000ULL;
  return uint16_t(sign + uint16_t(uint16_t(significand >> 42) + half_exponent));
}

// Round half to even and clamp into an integer type's range (NaN gives the lowest value);
// adding and subtracting 1.5 * 2^52 rounds in the FPU's default mode without a libm call.
template <class I> inline I round_clamp(double v) {
  constexpr double lo = double(std::numeric_limits<I>::lowest());
  constexpr double hi = double(std::numeric_limits<I>::max());
  v = v > lo ? v : lo;
  v = v < hi ? v : hi;
  constexpr double magic = 6755399441055744.0;
  return I(int64_t((v + magic) - magic));
}

template <class O> inline O from_double(double v) {
  if constexpr (std::is_integral<O>::value) {
    return round_clamp<O>(v);
  } else {
    return O(v);
  }
}
template <> inline Half from_double<Half>(double v) { return Half{double_to_half_bits(v)}; }

// One run of n elements.
template <class T, class O>
inline void affine_run(const char* x, int64_t xs, const double* mean, const double* inv,
                       int64_t ss, O* out, int64_t os, int64_t n) {
  const bool dense_io = xs == int64_t(sizeof(T)) && os == int64_t(sizeof(O));
  const T* xt = reinterpret_cast<const T*>(x);
  if (dense_io && ss == int64_t(sizeof(double))) {
    for (int64_t i = 0; i < n; ++i) out[i] = from_double<O>((double(xt[i]) - mean[i]) * inv[i]);
  } else if (dense_io && ss == 0) {
    const double m = *mean, s = *inv;
    for (int64_t i = 0; i < n; ++i) out[i] = from_double<O>((double(xt[i]) - m) * s);
  } else {
    char* o = reinterpret_cast<char*>(out);
    for (int64_t i = 0; i < n; ++i) {
      const double v = double(*reinterpret_cast<const T*>(x + i * xs));
      const double* ms = reinterpret_cast<const double*>(reinterpret_cast<const char*>(mean) +
                                                         i * ss);
      const double* is = reinterpret_cast<const double*>(reinterpret_cast<const char*>(inv) +
                                                         i * ss);
      *reinterpret_cast<O*>(o + i * os) = from_double<O>((v - *ms) * *is);
    }
  }
}

// Channels-last pixels [p0, p1) of one image into C planes of `plane` elements each, with
// statistics constant along the pixels (per channel or scalar).
template <int C, class T, class O>
inline void interleaved_to_planes(const T* x, const double* mean, const double* inv,
                                  int64_t stats_channel_step, O* out, int64_t plane,
                                  int64_t p0, int64_t p1) {
  double m[C], s[C];
  for (int c = 0; c < C; ++c) {
    m[c] = mean[c * stats_channel_step];
    s[c] = inv[c * stats_channel_step];
  }
  for (int64_t p = p0; p < p1; ++p)
    for (int c = 0; c < C; ++c)
      out[c * plane + p] = from_double<O>((double(x[p * C + c]) - m[c]) * s[c]);
}

template <class T, class O>
void affine(const char* x, const double* mean, const double* inv, char* out, const Space& space,
            int requested_threads) {
  const int nd = space.nd;
  const int64_t total = space.size();
  const int threads = threads_for(requested_threads, total);
  const int64_t run = space.extent[nd - 1];
  const int64_t xs = space.stride[0][nd - 1], ss = space.stride[1][nd - 1],
                os = space.stride[2][nd - 1];
  const char* stats_base_mean = reinterpret_cast<const char*>(mean);
  const char* stats_base_inv = reinterpret_cast<const char*>(inv);

  // (..., C, P) output planes read from (..., P, C) input pixels, per-channel statistics.
  const int64_t channels = nd >= 2 ? space.extent[nd - 2] : 0;
  if ((channels == 3 || channels == 4) && ss == 0 && os == int64_t(sizeof(O)) &&
      xs == channels * int64_t(sizeof(T)) && space.stride[0][nd - 2] == int64_t(sizeof(T)) &&
      space.stride[2][nd - 2] == run * int64_t(sizeof(O)) &&
      space.stride[1][nd - 2] % int64_t(sizeof(double)) == 0) {
    {
      Space images = space;
      images.nd = nd - 2;
      const int64_t n_images = images.size();
      const int64_t stats_step = space.stride[1][nd - 2] / int64_t(sizeof(double));
      // Tasks are pixel ranges of images, so one image can still use every thread.
      const int64_t per_image = std::max<int64_t>(1, std::min<int64_t>(
          threads, (run * channels) / kMinElementsPerThread));
      parallel_tasks(threads, threads, [&](int64_t t) {
        int64_t lo, hi;
        split_range(n_images * per_image, threads, t, lo, hi);
        if (lo >= hi) return;
        Counter image(images, lo / per_image);
        int64_t current = lo / per_image;
        for (int64_t task = lo; task < hi; ++task) {
          const int64_t img = task / per_image, part = task % per_image;
          while (current < img) {
            image.next();
            ++current;
          }
          int64_t p0, p1;
          split_range(run, per_image, part, p0, p1);
          const T* xi = reinterpret_cast<const T*>(x + image.offset[0]);
          const double* mi = reinterpret_cast<const double*>(stats_base_mean + image.offset[1]);
          const double* ii = reinterpret_cast<const double*>(stats_base_inv + image.offset[1]);
          O* oi = reinterpret_cast<O*>(out + image.offset[2]);
          if (channels == 3)
            interleaved_to_planes<3>(xi, mi, ii, stats_step, oi, run, p0, p1);
          else
            interleaved_to_planes<4>(xi, mi, ii, stats_step, oi, run, p0, p1);
        }
      });
      return;
    }
  }

  // General: split the flat index range evenly; each thread walks its runs.
  Space outer = space;
  outer.nd = nd - 1;
  parallel_tasks(threads, threads, [&](int64_t t) {
    int64_t lo, hi;
    split_range(total, threads, t, lo, hi);
    if (lo >= hi) return;
    Counter row(outer, lo / run);
    int64_t col = lo % run;
    while (lo < hi) {
      const int64_t len = std::min(run - col, hi - lo);
      affine_run<T, O>(x + row.offset[0] + col * xs,  xs,
                       reinterpret_cast<const double*>(stats_base_mean + row.offset[1] + col * ss),
                       reinterpret_cast<const double*>(stats_base_inv + row.offset[1] + col * ss),
                       ss, reinterpret_cast<O*>(out + row.offset[2] + col * os), os, len);
      lo += len;
      col = 0;
      row.next();
    }
  });
}

}  // namespace zm
