// Fused elementwise transform out = (x - mean) * inv, from the input type into float (or,
// for the inverse transform, back into a rounded and clamped integer type).
//
// The space's arrays: 0 = x, 1 = the statistics (mean and inv share strides), 2 = out, all
// byte strides. The innermost dim is the run every loop below works on: contiguous runs
// vectorise; a run with constant statistics broadcasts them. Channels-first output from
// channels-last input has its own loop that reads each pixel once and writes C planes.
// Arithmetic is float64 so float32 results are correctly rounded from the exact formula.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common.hpp"
#include "simd.hpp"

namespace zm {

// IEEE binary16 stored as its bits.
struct Half {
  uint16_t bits;
};

// Round-to-nearest-even double -> binary16, as NumPy's npy_doublebits_to_halfbits.
ZM_INLINE uint16_t double_to_half_bits(double value) {
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
template <class I> ZM_INLINE I round_clamp(double v) {
  constexpr double lo = double(std::numeric_limits<I>::lowest());
  constexpr double hi = double(std::numeric_limits<I>::max());
  v = v > lo ? v : lo;
  v = v < hi ? v : hi;
  constexpr double magic = 6755399441055744.0;
  return I(int64_t((v + magic) - magic));
}

template <class O> ZM_INLINE O from_double(double v) {
  if constexpr (std::is_same<O, Half>::value) {
    return Half{double_to_half_bits(v)};
  } else if constexpr (std::is_integral<O>::value) {
    return round_clamp<O>(v);
  } else {
    return O(v);
  }
}

// Outputs a caller passes bypass the cache with streaming stores once the call's input and
// output together are at least stream_bytes() large (streams_output): they would not stay in
// it anyway, and normal stores first read every destination line. The default is the
// last-level cache's size. With a 32 MB L3 on a Zen 4, a 16 MB output took 0.58 ms streamed
// against 0.18 ms with normal stores, 61 MB 2.27 against 2.11 and 154 MB 5.71 against 6.17
// (by the output's size alone, the rule then); on a Zen 3 with the same L3 streaming won from
// 2 MB up, and cifar's 61 MB standardized per channel in 3.8 against 7.0 ms. So outputs past
// the cache stream (2x the cache was the threshold before, which cost the Zen 3 1.8x for 7% on
// the Zen 4). set_stream_bytes changes it (the tests lower it, so that modest arrays take the
// streaming loops).
inline int64_t default_stream_bytes() {
  int64_t last_level = int64_t(32) << 20;  // where the size is unknown
  // Linux's sysfs (glibc's sysconf reads CPUID and said 320 MB on this 32 MB VM).
  if (std::FILE* f = std::fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r")) {
    long kib = 0;
    char unit = 0;
    if (std::fscanf(f, "%ld%c", &kib, &unit) == 2 && unit == 'K' && kib > 0)
      last_level = int64_t(kib) << 10;
    std::fclose(f);
  }
  return last_level;
}
inline std::atomic<int64_t>& stream_bytes_setting() {
  static std::atomic<int64_t> bytes{default_stream_bytes()};
  return bytes;
}
inline int64_t stream_bytes() { return stream_bytes_setting().load(std::memory_order_relaxed); }
// Whether a call of `elements` values into a caller's output streams its stores: when what it
// reads and writes together reaches stream_bytes(), the output cannot stay in the cache. By
// the output alone, cifar's 31 MB of float16 (and 15 MB read) kept normal stores on the Zen 3
// and took 1.22x the time of streaming them (per channel into out=, alternating rounds).
inline bool streams_output(int64_t elements, int64_t in_size, int64_t out_size) {
  return elements * (in_size + out_size) >= stream_bytes();
}

// One run of n elements (the generic loop, compiled for every SIMD level).
template <class T, class O>
ZM_INLINE void affine_run_impl(const char* x, int64_t xs, const double* mean, const double* inv,
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

// Per-pixel statistics in the float32 form of channels.hpp, per column: y = fma(x - k, r,
// fma(x - k, r_low, b)). Group g of 16 columns keeps its k, r, r_low and b together at
// coef[64 g] (arrays n floats apart would alias the output rows modulo 4 KB, which made this
// loop slower than the float64 one), and its fix_x and fix_y at fix[32 g], apart: most groups
// have no fix, and the loop is bound by its loads of the form, not by arithmetic.
// pixel_form checked every column on all 256 values; state[g] says what it found: 0, a column
// missed on two values or more (the group takes the float64 loop); 1, none missed; 2, some
// columns missed on one value, fix_x (int32, -1 for none), whose right result is fix_y
// (float32 bits, or half bits). The pointers start at the block's first column, a multiple
// of 16.
// The groups start `head` columns into the rows, where an output row that is not on a cache
// line reaches one, so that the form's stores can stream; each row's head takes a masked
// float64 step. Outputs that do not stream take head 0.
constexpr int kFormFloats = 6;  // per column: 4 in coef, 2 in fix
struct PixelForm {
  const float* coef;
  const float* fix;
  const uint8_t* state;
  int64_t head;
  PixelForm shifted(int64_t columns) const {  // columns past the head, a multiple of 16
    return {coef + 4 * columns, fix + 2 * columns, state + columns / 16, 0};
  }
};

#if ZMFAST_X86_DISPATCH
// uint8 -> float32 or float16, contiguous, 16 values a step, optionally streaming stores.
// float16 rounds to odd into float32 (truncate, then set the last bit if inexact) and then
// to nearest-even half: the same bits as rounding float64 to half directly.
ZM_TARGET_AVX512 ZM_INLINE __m128i half8_avx512(__m512d d) {
  const __m256 t = _mm512_cvt_roundpd_ps(d, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask8 inexact = _mm512_cmp_pd_mask(_mm512_cvtps_pd(t), d, _CMP_NEQ_UQ);
  const __m256i bits = _mm256_castps_si256(t);
  const __m256i odd = _mm256_mask_or_epi32(bits, inexact, bits, _mm256_set1_epi32(1));
  return _mm256_cvtps_ph(_mm256_castsi256_ps(odd), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// 16 values from x[i]: (x - mean) * inv in float64, rounded to O, stored at out[i]: all
// 16 (streaming or not), or only the lanes in `keep` (a normal masked store).
enum class Store { normal, stream, masked };

template <class O, bool kConstantStats, Store kStore>
ZM_TARGET_AVX512 ZM_INLINE void affine_u8_step16(const uint8_t* x, const double* mean,
                                                 const double* inv, O* out, int64_t i,
                                                 __mmask16 keep = 0xffff) {
  const __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
  __m512d lo = _mm512_cvtepi32_pd(_mm512_castsi512_si256(w));
  __m512d hi = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(w, 1));
  if constexpr (kConstantStats) {
    const __m512d m = _mm512_set1_pd(mean[0]), s = _mm512_set1_pd(inv[0]);
    lo = _mm512_mul_pd(_mm512_sub_pd(lo, m), s);
    hi = _mm512_mul_pd(_mm512_sub_pd(hi, m), s);
  } else {
    lo = _mm512_mul_pd(_mm512_sub_pd(lo, _mm512_loadu_pd(mean + i)), _mm512_loadu_pd(inv + i));
    hi = _mm512_mul_pd(_mm512_sub_pd(hi, _mm512_loadu_pd(mean + i + 8)),
                       _mm512_loadu_pd(inv + i + 8));
  }
  if constexpr (std::is_same<O, float>::value) {
    const __m512 f = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)),
                                        _mm512_cvtpd_ps(hi), 1);
    if constexpr (kStore == Store::stream) _mm512_stream_ps(out + i, f);
    else if constexpr (kStore == Store::masked) _mm512_mask_storeu_ps(out + i, keep, f);
    else _mm512_storeu_ps(out + i, f);
  } else {
    const __m256i h = _mm256_set_m128i(half8_avx512(hi), half8_avx512(lo));
    if constexpr (kStore == Store::stream)
      _mm256_stream_si256(reinterpret_cast<__m256i*>(out + i), h);
    else if constexpr (kStore == Store::masked)
      _mm256_mask_storeu_epi16(reinterpret_cast<__m256i*>(out + i), keep, h);
    else
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), h);
  }
}

// A run of n values. Streaming stores start at the first 64-byte boundary of out; the values
// before it and after the last full step are computed by an in-bounds step and stored with a
// mask, never by a normal store into a line that streaming stores also write (that mix
// stalls). Without streaming, the first and last steps simply overlap their neighbours.
template <class O, bool kConstantStats>
ZM_TARGET_AVX512 void affine_u8_avx512(const uint8_t* x, const double* mean, const double* inv,
                                       O* out, int64_t n, bool stream) {
  if (n < 16) {
    for (int64_t i = 0; i < n; ++i)
      out[i] = from_double<O>((double(x[i]) - mean[kConstantStats ? 0 : i]) *
                              inv[kConstantStats ? 0 : i]);
    return;
  }
  const uintptr_t address = reinterpret_cast<uintptr_t>(out);
  int64_t i = 0;
  if (stream && address % sizeof(O) == 0) {
    const int64_t head = std::min<int64_t>(n, int64_t((64 - address % 64) % 64) / int64_t(sizeof(O)));
    if (head)
      affine_u8_step16<O, kConstantStats, Store::masked>(x, mean, inv, out, 0,
                                                         __mmask16((1u << head) - 1));
    for (i = head; i + 16 <= n; i += 16)
      affine_u8_step16<O, kConstantStats, Store::stream>(x, mean, inv, out, i);
    if (i < n) {  // the last n - i values are the top lanes of the step at n - 16
      const int64_t rest = n - i;
      affine_u8_step16<O, kConstantStats, Store::masked>(
          x, mean, inv, out, n - 16, __mmask16(0xffffu << (16 - rest)));
    }
    return;
  }
  for (; i + 16 <= n; i += 16)
    affine_u8_step16<O, kConstantStats, Store::normal>(x, mean, inv, out, i);
  if (i < n) affine_u8_step16<O, kConstantStats, Store::normal>(x, mean, inv, out, n - 16);
}

// Per-pixel statistics shared by several rows (images): each 16-lane step loads its mean
// and 1/std once for `rows` rows, so the float64 statistics (16 bytes a value) are read from
// cache once per group instead of once per image. Rows are `x_row` bytes and `out_row`
// elements apart; n >= 16. With `stream`, every row of out must start on a 64-byte boundary.
// kRowGroup rows (below) at a time.

// One 16-value step of a row: float32 values or float16 bits, streaming or not.
ZM_TARGET_AVX512 ZM_INLINE void store_step16(float* o, __m512 f, bool stream) {
  if (stream) _mm512_stream_ps(o, f); else _mm512_storeu_ps(o, f);
}
ZM_TARGET_AVX512 ZM_INLINE void store_step16(Half* o, __m256i h, bool stream) {
  if (stream) _mm256_stream_si256(reinterpret_cast<__m256i*>(o), h);
  else _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), h);
}

// The last n - i < 16 values of each row, as the top lanes of the step at n - 16 (n >= 16).
template <class O>
ZM_TARGET_AVX512 ZM_INLINE void rows_tail16(const uint8_t* x, int64_t x_row, const double* mean,
                                            const double* inv, O* out, int64_t out_row,
                                            int rows, int64_t n, int64_t i) {
  if (i < n)
    for (int r = 0; r < rows; ++r)
      affine_u8_step16<O, false, Store::masked>(x + r * x_row, mean, inv, out + r * out_row,
                                                n - 16, __mmask16(0xffffu << (16 - (n - i))));
}

template <class O>
ZM_TARGET_AVX512 void affine_u8_rows_avx512(const uint8_t* x, int64_t x_row, const double* mean,
                                            const double* inv, O* out, int64_t out_row,
                                            int rows, int64_t n, bool stream) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512d m_lo = _mm512_loadu_pd(mean + i), m_hi = _mm512_loadu_pd(mean + i + 8);
    const __m512d s_lo = _mm512_loadu_pd(inv + i), s_hi = _mm512_loadu_pd(inv + i + 8);
    for (int r = 0; r < rows; ++r) {
      const __m512i w = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + r * x_row + i)));
      const __m512d lo =
          _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(w)), m_lo), s_lo);
      const __m512d hi = _mm512_mul_pd(
          _mm512_sub_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(w, 1)), m_hi), s_hi);
      O* o = out + r * out_row + i;
      if constexpr (std::is_same<O, float>::value)
        store_step16(o, _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)),
                                           _mm512_cvtpd_ps(hi), 1), stream);
      else
        store_step16(o, _mm256_set_m128i(half8_avx512(hi), half8_avx512(lo)), stream);
    }
  }
  rows_tail16<O>(x, x_row, mean, inv, out, out_row, rows, n, i);
}


// The form's groups start `head` columns in (less than a line; n >= head + 16): the head's
// values take float64 steps, stored with a mask.
template <class O>
ZM_TARGET_AVX512 void affine_u8_rows_form_avx512(const uint8_t* x, int64_t x_row,
                                                 const double* mean, const double* inv,
                                                 const PixelForm& form, int64_t head, O* out,
                                                 int64_t out_row, int rows, int64_t n,
                                                 bool stream) {
  for (int64_t h = 0; h < head; h += 16) {
    const __mmask16 keep = __mmask16((1u << std::min<int64_t>(16, head - h)) - 1);
    for (int r = 0; r < rows; ++r)
      affine_u8_step16<O, false, Store::masked>(x + r * x_row, mean, inv, out + r * out_row, h,
                                                keep);
  }
  int64_t i = head;
  for (; i + 16 <= n; i += 16) {
    const uint8_t state = form.state[(i - head) / 16];
    if (state == 0) {
      affine_u8_rows_avx512<O>(x + i, x_row, mean + i, inv + i, out + i, out_row, rows, 16,
                               stream);
      continue;
    }
    const float* group = form.coef + 4 * (i - head);
    const __m512 k = _mm512_loadu_ps(group), r = _mm512_loadu_ps(group + 16);
    const __m512 r_low = _mm512_loadu_ps(group + 32), b = _mm512_loadu_ps(group + 48);
    const float* fixes = form.fix + 2 * (i - head);
    const __m512i fix_x = state == 2 ? _mm512_loadu_si512(fixes) : _mm512_setzero_si512();
    const __m512i fix_y = state == 2 ? _mm512_loadu_si512(fixes + 16) : _mm512_setzero_si512();
    for (int row = 0; row < rows; ++row) {
      const __m512i xi = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + row * x_row + i)));
      const __m512 d = _mm512_sub_ps(_mm512_cvtepi32_ps(xi), k);
      const __m512 y = _mm512_fmadd_ps(d, r, _mm512_fmadd_ps(d, r_low, b));
      const __mmask16 fix = state == 2 ? _mm512_cmpeq_epi32_mask(xi, fix_x) : 0;
      O* o = out + row * out_row + i;
      if constexpr (std::is_same<O, float>::value)
        store_step16(o, _mm512_mask_blend_ps(fix, y, _mm512_castsi512_ps(fix_y)), stream);
      else
        store_step16(o, _mm256_mask_blend_epi16(
                            fix, _mm512_cvtps_ph(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                            _mm512_cvtepi32_epi16(fix_y)), stream);
    }
  }
  rows_tail16<O>(x, x_row, mean, inv, out, out_row, rows, n, i);
}

// The low halves of four 64-bit lane masks, as four 32-bit lanes.
ZM_TARGET_AVX2 ZM_INLINE __m128i narrow_mask_avx2(__m256d mask) {
  const __m128 lo = _mm_castpd_ps(_mm256_castpd256_pd128(mask));
  const __m128 hi = _mm_castpd_ps(_mm256_extractf128_pd(mask, 1));
  return _mm_castps_si128(_mm_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)));
}
// float64 -> float32 rounded to odd (truncated, the last bit set where inexact), so that
// F16C's round-to-nearest-even into half gives the bits of rounding the float64 to half
// directly (as half8_avx512). AVX2 has no per-instruction rounding mode: the nearest float32
// is stepped one ulp toward zero where it rounded away from zero. An overflow to inf steps to
// FLT_MAX, still beyond half's range; NaN stays NaN.
ZM_TARGET_AVX2 ZM_INLINE __m128 round_to_odd_ps_avx2(__m256d d) {
  const __m128 nearest = _mm256_cvtpd_ps(d);
  const __m256d back = _mm256_cvtps_pd(nearest), magnitude = _mm256_set1_pd(-0.0);
  const __m256d away = _mm256_cmp_pd(_mm256_andnot_pd(magnitude, back),
                                     _mm256_andnot_pd(magnitude, d), _CMP_GT_OQ);
  const __m256d inexact = _mm256_cmp_pd(back, d, _CMP_NEQ_UQ);
  __m128i bits = _mm_add_epi32(_mm_castps_si128(nearest), narrow_mask_avx2(away));  // toward 0
  bits = _mm_or_si128(bits, _mm_and_si128(narrow_mask_avx2(inexact), _mm_set1_epi32(1)));
  return _mm_castsi128_ps(bits);
}

// The float32 form of (x - mean) / std for eight values of x: (x - k) r + ((x - k) r_low + b).
// One function for the kernels and for the check that accepts a form (pixel_form_groups_avx2),
// so that both round alike.
ZM_TARGET_AVX2 ZM_INLINE __m256 form_value8(__m256 x, __m256 k, __m256 r, __m256 r_low,
                                            __m256 b) {
  const __m256 d = _mm256_sub_ps(x, k);
  return _mm256_fmadd_ps(d, r, _mm256_fmadd_ps(d, r_low, b));
}
ZM_TARGET_AVX2 ZM_INLINE __m256 form_step8(__m256i lanes, __m256 k, __m256 r, __m256 r_low,
                                           __m256 b) {
  return form_value8(_mm256_cvtepi32_ps(lanes), k, r, r_low, b);
}

// Eight float64 results (lo: the first four) as O's eight values in a vector: float32, or
// half bits (F16C) rounded once from float64; from_float: eight float32 values (the form's).
template <class O> struct Avx2Out;
template <> struct Avx2Out<float> {
  using Vector = __m256;
  static ZM_TARGET_AVX2 ZM_INLINE __m256 from(__m256d lo, __m256d hi) {
    return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
  }
  static ZM_TARGET_AVX2 ZM_INLINE __m256 from_float(__m256 f) { return f; }
  static ZM_TARGET_AVX2 ZM_INLINE void store(float* o, __m256 v, bool stream) {
    if (stream) _mm256_stream_ps(o, v); else _mm256_storeu_ps(o, v);
  }
  // Sixteen values (two vectors) at once: one 64-byte line where o is on one.
  static ZM_TARGET_AVX2 ZM_INLINE void store16(float* o, __m256 a, __m256 b, bool stream) {
    store(o, a, stream);
    store(o + 8, b, stream);
  }
};
template <> struct Avx2Out<Half> {
  using Vector = __m128i;
  static ZM_TARGET_AVX2 ZM_INLINE __m128i from(__m256d lo, __m256d hi) {
    const __m256 odd = _mm256_set_m128(round_to_odd_ps_avx2(hi), round_to_odd_ps_avx2(lo));
    return _mm256_cvtps_ph(odd, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static ZM_TARGET_AVX2 ZM_INLINE __m128i from_float(__m256 f) {
    return _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static ZM_TARGET_AVX2 ZM_INLINE void store(Half* o, __m128i v, bool stream) {
    if (stream) _mm_stream_si128(reinterpret_cast<__m128i*>(o), v);
    else _mm_storeu_si128(reinterpret_cast<__m128i*>(o), v);
  }
  static ZM_TARGET_AVX2 ZM_INLINE void store16(Half* o, __m128i a, __m128i b, bool stream) {
    const __m256i both = _mm256_set_m128i(b, a);
    if (stream) _mm256_stream_si256(reinterpret_cast<__m256i*>(o), both);
    else _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), both);
  }
};

// Eight int32 lanes of x through the float32 form, as O's eight values.
template <class O>
ZM_TARGET_AVX2 ZM_INLINE typename Avx2Out<O>::Vector form_out8(__m256i lanes, __m256 k, __m256 r,
                                                              __m256 r_low, __m256 b) {
  return Avx2Out<O>::from_float(form_step8(lanes, k, r, r_low, b));
}

// uint8 -> float32 or float16, contiguous, 8 values a step: (x - mean) * inv in float64.
template <class O, bool kConstantStats>
ZM_TARGET_AVX2 void affine_u8_avx2(const uint8_t* x, const double* mean, const double* inv,
                                   O* out, int64_t n, bool stream) {
  using Out = Avx2Out<O>;
  constexpr int64_t kStepBytes = 8 * int64_t(sizeof(O));
  int64_t i = 0;
  const uintptr_t address = reinterpret_cast<uintptr_t>(out);
  if (address % sizeof(O) != 0) stream = false;
  const int64_t head =
      stream ? std::min<int64_t>(n, int64_t((kStepBytes - address % kStepBytes) % kStepBytes) /
                                        int64_t(sizeof(O)))
             : 0;
  for (; i < head; ++i)
    out[i] = from_double<O>((double(x[i]) - mean[kConstantStats ? 0 : i]) *
                            inv[kConstantStats ? 0 : i]);
  const __m256d m_all = _mm256_set1_pd(mean[0]), s_all = _mm256_set1_pd(inv[0]);
  for (; i + 8 <= n; i += 8) {
    const __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i)));
    __m256d lo = _mm256_cvtepi32_pd(_mm256_castsi256_si128(w));
    __m256d hi = _mm256_cvtepi32_pd(_mm256_extracti128_si256(w, 1));
    if constexpr (kConstantStats) {
      lo = _mm256_mul_pd(_mm256_sub_pd(lo, m_all), s_all);
      hi = _mm256_mul_pd(_mm256_sub_pd(hi, m_all), s_all);
    } else {
      lo = _mm256_mul_pd(_mm256_sub_pd(lo, _mm256_loadu_pd(mean + i)), _mm256_loadu_pd(inv + i));
      hi = _mm256_mul_pd(_mm256_sub_pd(hi, _mm256_loadu_pd(mean + i + 4)),
                         _mm256_loadu_pd(inv + i + 4));
    }
    Out::store(out + i, Out::from(lo, hi), stream);
  }
  for (; i < n; ++i)
    out[i] = from_double<O>((double(x[i]) - mean[kConstantStats ? 0 : i]) *
                            inv[kConstantStats ? 0 : i]);
}
// affine_u8_rows_avx512 with AVX2, into float32 or float16: `rows` rows share each load of
// the statistics. Each row's 16 values of a step are stored together, a whole cache line
// (float32) where out is on lines: streaming stores interleaved over the rows in half lines
// ran 2x slower. With `stream`, every row of out must start on a 32-byte boundary.
template <class O>
ZM_TARGET_AVX2 ZM_INLINE typename Avx2Out<O>::Vector affine8_avx2(__m128i bytes, __m256d m_lo,
                                                                  __m256d m_hi, __m256d s_lo,
                                                                  __m256d s_hi) {
  const __m256i w = _mm256_cvtepu8_epi32(bytes);
  const __m256d lo =
      _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(w)), m_lo), s_lo);
  const __m256d hi =
      _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(w, 1)), m_hi), s_hi);
  return Avx2Out<O>::from(lo, hi);
}

template <class O>
ZM_TARGET_AVX2 void affine_u8_rows_avx2(const uint8_t* x, int64_t x_row, const double* mean,
                                        const double* inv, O* out, int64_t out_row, int rows,
                                        int64_t n, bool stream) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256d m[4], s[4];
    for (int q = 0; q < 4; ++q) m[q] = _mm256_loadu_pd(mean + i + 4 * q);
    for (int q = 0; q < 4; ++q) s[q] = _mm256_loadu_pd(inv + i + 4 * q);
    for (int r = 0; r < rows; ++r) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + r * x_row + i));
      Avx2Out<O>::store16(out + r * out_row + i,
                          affine8_avx2<O>(bytes, m[0], m[1], s[0], s[1]),
                          affine8_avx2<O>(_mm_unpackhi_epi64(bytes, bytes), m[2], m[3], s[2], s[3]),
                          stream);
    }
  }
  for (int r = 0; r < rows; ++r)
    for (int64_t j = i; j < n; ++j)
      out[r * out_row + j] = from_double<O>((double(x[r * x_row + j]) - mean[j]) * inv[j]);
}
#endif


#if ZMFAST_X86_DISPATCH
// One row through its groups from `group` on while they take the form without a fix (state
// 1), at most `groups` of them; returns how many it did. A row a call (streamed float32) spent
// half its instructions on the row loop's per-group set-up; this loop folds the form's loads
// into its arithmetic.
template <class O, bool kStream>
ZM_TARGET_AVX2 ZM_INLINE int64_t form_row_plain_groups_avx2(const uint8_t* x, const float* group,
                                                           const uint8_t* state, O* out,
                                                           int64_t groups) {
  int64_t g = 0;
  for (; g < groups && state[g] == 1; ++g, x += 16, group += 64, out += 16) {
    typename Avx2Out<O>::Vector y[2];
    for (int h = 0; h < 2; ++h)
      y[h] = form_out8<O>(
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + 8 * h))),
          _mm256_loadu_ps(group + 8 * h), _mm256_loadu_ps(group + 16 + 8 * h),
          _mm256_loadu_ps(group + 32 + 8 * h), _mm256_loadu_ps(group + 48 + 8 * h));
    Avx2Out<O>::store16(out, y[0], y[1], kStream);
  }
  return g;
}

// Half h (8 lanes) of a state-2 group's fix at `fixes` (see PixelForm): fix_x, and fix_y as
// the float32 that O's conversion turns into the fixed result (a float16 fix's half bits
// widened by F16C, which converts it back to the same bits).
template <class O>
ZM_TARGET_AVX2 ZM_INLINE void load_fix8_avx2(const float* fixes, int h, __m256i& fix_x,
                                             __m256& fix_y) {
  fix_x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(fixes + 8 * h));
  fix_y = _mm256_loadu_ps(fixes + 16 + 8 * h);
  if constexpr (std::is_same<O, Half>::value) {  // half bits in 32-bit lanes
    const __m256i bits = _mm256_castps_si256(fix_y);
    fix_y = _mm256_cvtph_ps(
        _mm_packus_epi32(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1)));
  }
}

// Streamed float16 rows through pairs of groups in the form (state 1 or 2), from `out` on a
// line, while both groups of a pair have one: the rows share the pair's form (from L1 after
// the first row), and each row's 32 values are one whole line, streamed before the next
// row's. Returns the columns done. Half a line a row step (a group) made the streaming stores
// of the rows interleave (25.9 ms imagenet per pixel, see affine), and a row at a time reads
// the whole form for every row (1.15-1.19x the time through this loop). In alternating blocks
// of calls (2 threads, per pixel into out=) this took 0.70-0.89x the time of four rows with
// normal stores, on cifar and imagenet.
ZM_TARGET_AVX2 ZM_INLINE int64_t form_rows_lines_half_avx2(const uint8_t* x, int64_t x_row,
                                                          const float* group, const float* fixes,
                                                          const uint8_t* state, Half* out,
                                                          int64_t out_row, int rows,
                                                          int64_t pairs) {
  int64_t p = 0;
  for (; p < pairs && state[2 * p] != 0 && state[2 * p + 1] != 0;
       ++p, x += 32, group += 128, fixes += 64, out += 32) {
    const bool fixed = state[2 * p] == 2 || state[2 * p + 1] == 2;
    __m256i fix_x[4];
    __m256 fix_y[4];
    for (int q = 0; q < 4; ++q) {
      if (state[2 * p + q / 2] == 2) {
        load_fix8_avx2<Half>(fixes + 32 * (q / 2), q % 2, fix_x[q], fix_y[q]);
      } else {  // no column of the group matches
        fix_x[q] = _mm256_set1_epi32(-1);
        fix_y[q] = _mm256_setzero_ps();
      }
    }
    for (int row = 0; row < rows; ++row) {
      const uint8_t* xr = x + row * x_row;
      __m128i h[4];
      for (int q = 0; q < 4; ++q) {
        const float* c = group + 64 * (q / 2) + 8 * (q % 2);
        const __m256i xi = _mm256_cvtepu8_epi32(
            _mm_loadl_epi64(reinterpret_cast<const __m128i*>(xr + 8 * q)));
        __m256 f = form_step8(xi, _mm256_loadu_ps(c), _mm256_loadu_ps(c + 16),
                              _mm256_loadu_ps(c + 32), _mm256_loadu_ps(c + 48));
        if (fixed)
          f = _mm256_blendv_ps(f, fix_y[q],
                               _mm256_castsi256_ps(_mm256_cmpeq_epi32(xi, fix_x[q])));
        h[q] = Avx2Out<Half>::from_float(f);
      }
      Half* o = out + row * out_row;
      _mm256_stream_si256(reinterpret_cast<__m256i*>(o), _mm256_set_m128i(h[1], h[0]));
      _mm256_stream_si256(reinterpret_cast<__m256i*>(o + 16), _mm256_set_m128i(h[3], h[2]));
    }
  }
  return 32 * p;
}

// affine_u8_rows_form_avx512 with AVX2, into float32 or float16: each group of 16 columns in
// the form (state 1 or 2) takes the float32 form in two 8-lane halves, with its fixed value
// (state 2) blended in (a float16 fix as the float32 of its half, which F16C converts back to
// the same bits); state 0 groups, the head (normal stores) and the columns past the last group
// take the float64 rows above.
template <class O>
ZM_TARGET_AVX2 void affine_u8_rows_form_avx2(const uint8_t* x, int64_t x_row, const double* mean,
                                             const double* inv, const PixelForm& form,
                                             int64_t head, O* out, int64_t out_row, int rows,
                                             int64_t n, bool stream) {
  using Out = Avx2Out<O>;
  affine_u8_rows_avx2<O>(x, x_row, mean, inv, out, out_row, rows, head, false);
  int64_t i = head;
  for (; i + 16 <= n; i += 16) {
    // Streamed float16 takes the line loop; the groups it leaves (state 0, a group a line does
    // not start, a block's odd last one) take the steps below, half a line a row step.
    if constexpr (std::is_same<O, Half>::value) {
      if (stream && reinterpret_cast<uintptr_t>(out + i) % 64 == 0) {
        i += form_rows_lines_half_avx2(x + i, x_row, form.coef + 4 * (i - head),
                                       form.fix + 2 * (i - head), form.state + (i - head) / 16,
                                       out + i, out_row, rows, (n - i) / 32);
        if (i + 16 > n) break;
      }
    }
    if (rows == 1) {
      const int64_t g = (i - head) / 16, left = (n - i) / 16;
      const int64_t done =
          stream ? form_row_plain_groups_avx2<O, true>(x + i, form.coef + 64 * g,
                                                       form.state + g, out + i, left)
                 : form_row_plain_groups_avx2<O, false>(x + i, form.coef + 64 * g,
                                                        form.state + g, out + i, left);
      i += 16 * done;
      if (i + 16 > n) break;
    }
    const uint8_t state = form.state[(i - head) / 16];
    if (state == 0) {
      affine_u8_rows_avx2<O>(x + i, x_row, mean + i, inv + i, out + i, out_row, rows, 16, stream);
      continue;
    }
    const float* group = form.coef + 4 * (i - head);
    const float* fixes = form.fix + 2 * (i - head);
    __m256 k[2], r[2], r_low[2], b[2], fix_y[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256i fix_x[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int h = 0; h < 2; ++h) {
      k[h] = _mm256_loadu_ps(group + 8 * h), r[h] = _mm256_loadu_ps(group + 16 + 8 * h);
      r_low[h] = _mm256_loadu_ps(group + 32 + 8 * h), b[h] = _mm256_loadu_ps(group + 48 + 8 * h);
    }
    if (state == 2)
      for (int h = 0; h < 2; ++h) load_fix8_avx2<O>(fixes, h, fix_x[h], fix_y[h]);
    for (int row = 0; row < rows; ++row) {
      const __m128i bytes =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + row * x_row + i));
      typename Out::Vector y[2];
      for (int h = 0; h < 2; ++h) {
        const __m256i xi = _mm256_cvtepu8_epi32(h ? _mm_unpackhi_epi64(bytes, bytes) : bytes);
        __m256 f = form_step8(xi, k[h], r[h], r_low[h], b[h]);
        if (state == 2)
          f = _mm256_blendv_ps(f, fix_y[h], _mm256_castsi256_ps(_mm256_cmpeq_epi32(xi, fix_x[h])));
        y[h] = Out::from_float(f);
      }
      Out::store16(out + row * out_row + i, y[0], y[1], stream);
    }
  }
  affine_u8_rows_avx2<O>(x + i, x_row, mean + i, inv + i, out + i, out_row, rows, n - i, false);
}
#endif

// Streaming stores are weakly ordered: a thread fences once after its last one, before the
// kernel returns and the output is read.
inline void store_fence(bool stream) {
#if ZMFAST_X86_DISPATCH
  if (stream) _mm_sfence();
#else
  (void)stream;
#endif
}

// The run loop for one SIMD level: uint8 input with contiguous output goes to the
// hand-written kernels (streaming stores), everything else to the compiled generic loop.
template <class T, class O>
void affine_run_base(const char* x, int64_t xs, const double* mean, const double* inv,
                     int64_t ss, O* out, int64_t os, int64_t n, bool) {
  affine_run_impl<T, O>(x, xs, mean, inv, ss, out, os, n);
}
#if ZMFAST_X86_DISPATCH
template <class T, class O>
ZM_TARGET_AVX2 void affine_run_avx2(const char* x, int64_t xs, const double* mean,
                                    const double* inv, int64_t ss, O* out, int64_t os, int64_t n,
                                    bool stream) {
  if constexpr (std::is_same<T, uint8_t>::value &&
                (std::is_same<O, float>::value || std::is_same<O, Half>::value)) {
    if (xs == 1 && os == int64_t(sizeof(O)) && (ss == 0 || ss == int64_t(sizeof(double)))) {
      const auto* xt = reinterpret_cast<const uint8_t*>(x);
      if (ss == 0) affine_u8_avx2<O, true>(xt, mean, inv, out, n, stream);
      else affine_u8_avx2<O, false>(xt, mean, inv, out, n, stream);
      return;
    }
  }
  (void)stream;
  affine_run_impl<T, O>(x, xs, mean, inv, ss, out, os, n);
}
template <class T, class O>
ZM_TARGET_AVX512 void affine_run_avx512(const char* x, int64_t xs, const double* mean,
                                        const double* inv, int64_t ss, O* out, int64_t os,
                                        int64_t n, bool stream) {
  if constexpr (std::is_same<T, uint8_t>::value &&
                (std::is_same<O, float>::value || std::is_same<O, Half>::value)) {
    if (xs == 1 && os == int64_t(sizeof(O)) && (ss == 0 || ss == int64_t(sizeof(double)))) {
      const auto* xt = reinterpret_cast<const uint8_t*>(x);
      if (ss == 0) affine_u8_avx512<O, true>(xt, mean, inv, out, n, stream);
      else affine_u8_avx512<O, false>(xt, mean, inv, out, n, stream);
      return;
    }
  }
  (void)stream;
  affine_run_impl<T, O>(x, xs, mean, inv, ss, out, os, n);
}
#endif

template <class T, class O>
using AffineRun = void(const char*, int64_t, const double*, const double*, int64_t, O*, int64_t,
                       int64_t, bool);

template <class T, class O> AffineRun<T, O>* affine_run_for(Level level) {
#if ZMFAST_X86_DISPATCH
  if (level == Level::avx512) return affine_run_avx512<T, O>;
  if (level == Level::avx2) return affine_run_avx2<T, O>;
#endif
  (void)level;
  return affine_run_base<T, O>;
}

// Channels-last pixels [p0, p1) of one image into C planes of `plane` elements each, with
// statistics constant along the pixels (per channel or scalar).
template <int C, class T, class O>
ZM_INLINE void planes_impl(const T* x, const double* mean, const double* inv,
                           int64_t stats_channel_step, O* out, int64_t plane, int64_t p0,
                           int64_t p1) {
  double m[C], s[C];
  for (int c = 0; c < C; ++c) {
    m[c] = mean[c * stats_channel_step];
    s[c] = inv[c * stats_channel_step];
  }
  for (int64_t p = p0; p < p1; ++p)
    for (int c = 0; c < C; ++c)
      out[c * plane + p] = from_double<O>((double(x[p * C + c]) - m[c]) * s[c]);
}

template <int C, class T, class O>
using Planes = void(const T*, const double*, const double*, int64_t, O*, int64_t, int64_t, int64_t);

template <int C, class T, class O> Planes<C, T, O>* planes_for(Level level) {
  return Levels<Planes<C, T, O>, planes_impl<C, T, O>>::pick(level);
}

// Per-pixel statistics are re-read for every image; blocks of this many elements keep
// them in L2 while all of a thread's images pass.
constexpr int64_t kStatsBlock = 8192;
constexpr int kRowGroup = 4;  // rows that share each load of the statistics

// `fresh`: out was just allocated. Its pages are zeroed as they fault in and are then in
// cache, so normal stores beat streaming ones there (measured: 4.3 against 5.0 ms for a
// fresh 61 MB cifar output; equal at imagenet's 154 MB).
// Splits the flat index range of `space` evenly over the threads and calls
// body(offsets, col, len) for each piece of a row (innermost dim) a thread gets: the arrays'
// byte offsets of the row, the first column and the count. Each thread fences its
// streaming stores after its last piece.
template <class Body>
void flat_runs(const Space& space, int threads, bool stream, Body&& body) {
  const int64_t total = space.size(), run = space.extent[space.nd - 1];
  Space outer = space;
  outer.nd = space.nd - 1;
  parallel_tasks(threads, threads, [&](int64_t t) {
    int64_t lo, hi;
    split_range(total, threads, t, lo, hi);
    if (lo >= hi) return;
    Counter row(outer, lo / run);
    for (int64_t col = lo % run; lo < hi; col = 0, row.next()) {
      const int64_t len = std::min(run - col, hi - lo);
      body(row.offset, col, len);
      lo += len;
    }
    store_fence(stream);
  });
}

// Channels-first output, (..., C, P) planes from (..., P, C) pixels: calls
// body(offsets, p0, p1) for pixel ranges of every image, the arrays' byte offsets of the image
// in `offsets`. Tasks are pixel ranges of images, so one image can still use every thread.
// Each thread fences its streaming stores after its last range (`stream`).
template <class Body>
void image_pixel_ranges(const Space& space, int threads, bool stream, Body&& body) {
  const int nd = space.nd;
  const int64_t pixels = space.extent[nd - 1], channels = space.extent[nd - 2];
  Space images = space;
  images.nd = nd - 2;
  const int64_t n_images = images.size();
  const int64_t per_image = std::max<int64_t>(
      1, std::min<int64_t>(threads, (pixels * channels) / kMinElementsPerThread));
  parallel_tasks(threads, threads, [&](int64_t t) {
    int64_t lo, hi;
    split_range(n_images * per_image, threads, t, lo, hi);
    if (lo >= hi) return;
    Counter image(images, lo / per_image);
    int64_t current = lo / per_image;
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t img = task / per_image, part = task % per_image;
      for (; current < img; ++current) image.next();
      int64_t p0, p1;
      split_range(pixels, per_image, part, p0, p1);
      body(image.offset, p0, p1);
    }
    store_fence(stream);
  });
}

// `form`: the per-pixel float32 form of the statistics (uint8 into float32 or float16 on
// AVX-512, into float32 on AVX2; contiguous per-pixel statistics), or null.
template <class T, class O>
void affine(const char* x, const double* mean, const double* inv, char* out, const Space& space,
            int requested_threads, bool fresh = false, const PixelForm* form = nullptr) {
  (void)form;  // used by the AVX-512 and AVX2 uint8 rows only
  const int nd = space.nd;
  const int64_t total = space.size();
  if (nd == 0 || total == 0) return;
  const int threads = threads_for(requested_threads, total);
  const Level level = current_level();
  const int64_t run = space.extent[nd - 1];
  const int64_t xs = space.stride[0][nd - 1], ss = space.stride[1][nd - 1],
                os = space.stride[2][nd - 1];
  const char* stats_base_mean = reinterpret_cast<const char*>(mean);
  const char* stats_base_inv = reinterpret_cast<const char*>(inv);
  const bool stream = !fresh && streams_output(total, sizeof(T), sizeof(O));

  // (..., C, P) output planes read from (..., P, C) input pixels, per-channel statistics.
  const int64_t channels = nd >= 2 ? space.extent[nd - 2] : 0;
  if ((channels == 3 || channels == 4) && ss == 0 && os == int64_t(sizeof(O)) &&
      xs == channels * int64_t(sizeof(T)) && space.stride[0][nd - 2] == int64_t(sizeof(T)) &&
      space.stride[2][nd - 2] == run * int64_t(sizeof(O)) &&
      space.stride[1][nd - 2] % int64_t(sizeof(double)) == 0) {
    Planes<3, T, O>* const planes3 = planes_for<3, T, O>(level);
    Planes<4, T, O>* const planes4 = planes_for<4, T, O>(level);
    const int64_t stats_step = space.stride[1][nd - 2] / int64_t(sizeof(double));
    image_pixel_ranges(space, threads, false,
                       [&](const int64_t* offset, int64_t p0, int64_t p1) {
      const T* xi = reinterpret_cast<const T*>(x + offset[0]);
      const double* mi = reinterpret_cast<const double*>(stats_base_mean + offset[1]);
      const double* ii = reinterpret_cast<const double*>(stats_base_inv + offset[1]);
      O* oi = reinterpret_cast<O*>(out + offset[2]);
      if (channels == 3)
        planes3(xi, mi, ii, stats_step, oi, run, p0, p1);
      else
        planes4(xi, mi, ii, stats_step, oi, run, p0, p1);
    });
    return;
  }

  AffineRun<T, O>* const affine_run = affine_run_for<T, O>(level);
  Space outer = space;
  outer.nd = nd - 1;
  const int64_t rows = outer.size();
  bool stats_repeat = ss != 0;  // the same statistics for every row?
  for (int i = 0; i < nd - 1; ++i) stats_repeat = stats_repeat && space.stride[1][i] == 0;

  // uint8 rows of contiguous per-pixel statistics at a uniform stride: several rows share
  // each load of the statistics (AVX-512 and AVX2, float32 and float16 out).
  [[maybe_unused]] const bool grouped =
      ZMFAST_X86_DISPATCH && std::is_same<T, uint8_t>::value &&
      (level == Level::avx512 || level == Level::avx2) &&
      (std::is_same<O, float>::value || std::is_same<O, Half>::value) && stats_repeat &&
      xs == 1 && os == int64_t(sizeof(O)) && ss == int64_t(sizeof(double)) && outer.nd == 1 &&
      run >= 16 && outer.stride[2][0] % int64_t(sizeof(O)) == 0;
  if (stats_repeat && (run > kStatsBlock || grouped) && rows >= threads) {
    // Rows share long statistics (per-pixel): each thread takes whole rows and walks them
    // a block of columns at a time, so the statistics of a block stay in cache.
    [[maybe_unused]] const bool rows_on_lines = outer.stride[2][0] % 64 == 0;
    // The form's groups start form->head columns into the first block, and every later block
    // (kStatsBlock, a multiple of 16) starts on a group.
    const int64_t head = form ? form->head : 0;
    // Contiguous rows, each a whole number of lines whose first line starts `head` columns
    // in: a row's last 16 - head columns and the next row's first `head` share a line. A
    // thread streams that line as one float64 step of the wrapped statistics, instead of two
    // partial lines of scalar normal stores (each of which read the line from memory first).
    // Only AVX2's streamed float32 rows, a row a call, take it.
    [[maybe_unused]] alignas(32) double wrap_mean[16], wrap_inv[16];
    const int64_t wrap_tail = 16 - head;  // the row's columns in the shared line
    const bool wrap_rows =
        ZMFAST_X86_DISPATCH && grouped && level == Level::avx2 && form && stream &&
        std::is_same<O, float>::value && head > 0 && run % 16 == 0 &&
        outer.stride[0][0] == run && outer.stride[2][0] == run * int64_t(sizeof(O));
    if (wrap_rows)
      for (int j = 0; j < 16; ++j) {
        const int64_t col = j < wrap_tail ? run - wrap_tail + j : j - wrap_tail;
        wrap_mean[j] = reinterpret_cast<const double*>(stats_base_mean)[col];
        wrap_inv[j] = reinterpret_cast<const double*>(stats_base_inv)[col];
      }
    // Rows [r0, r1) over columns [c0, c0 + len), a block of the statistics.
    auto rows_block = [&](int64_t r0, int64_t r1, int64_t c0, int64_t len) {
      const double* block_mean = reinterpret_cast<const double*>(stats_base_mean + c0 * ss);
      const double* block_inv = reinterpret_cast<const double*>(stats_base_inv + c0 * ss);
#if ZMFAST_X86_DISPATCH
      if constexpr (std::is_same<T, uint8_t>::value &&
                    (std::is_same<O, float>::value || std::is_same<O, Half>::value)) {
        if (grouped && len >= 16) {
          const int64_t x_row = outer.stride[0][0], out_row = outer.stride[2][0];
          const int64_t block_head = c0 == 0 ? head : 0;
          // Streaming stores need every row's block to start on a line.
          const bool block_stream =
              stream && rows_on_lines &&
              (reinterpret_cast<uintptr_t>(out) + (c0 + block_head) * os) % 64 == 0;
          const PixelForm block_form = form ? form->shifted(c0 ? c0 - head : 0) : PixelForm{};
          // Rows sharing each load of a group's form at AVX-512: eight where a row is one
          // block (cifar float32 per pixel into out=: 0.95x the time of four, alternating
          // rounds); four for longer rows (imagenet took 1.03x-1.06x with eight) and for
          // float16, whose half-line streaming stores of eight rows interleave (1.7x).
          const int row_group = std::is_same<O, float>::value && level != Level::avx2 &&
                                        form && run <= kStatsBlock
                                    ? 2 * kRowGroup
                                    : kRowGroup;
          for (int64_t r = r0; r < r1; r += row_group) {
            const auto* xr = reinterpret_cast<const uint8_t*>(x + r * x_row + c0);
            O* orow = reinterpret_cast<O*>(out + r * out_row + c0 * os);
            const int rows_here = int(std::min<int64_t>(row_group, r1 - r));
            if (level == Level::avx2) {
              // Measured on the AVX2 Zen 3 in alternating rounds of one process (2 threads,
              // imagenet per pixel into out=): streamed float32 is fastest a row at a time,
              // each row's block one linear stream (0.78-0.95x the time of four rows sharing
              // each load of the coefficients). float16 without the form was fastest with four
              // rows and normal stores: 11.0 ms, against 13.4-14.4 streamed a row at a time and
              // 25.9 streamed four rows at a time (16 values, half a line, a row step); with the
              // form, four rows stream whole lines (form_rows_lines_half_avx2). Fresh arrays
              // (normal stores) keep four rows (one row took 1.14x).
              constexpr bool kFloat = std::is_same<O, float>::value;
              const bool rows_stream = block_stream && (kFloat || form);
              const int rows_a_call = form && rows_stream && kFloat ? 1 : rows_here;
              const int64_t out_step = out_row / int64_t(sizeof(O));
              for (int q = 0; q < rows_here; q += rows_a_call) {
                if (form) {
                  // Shared lines (wrap_rows): the range's later rows leave their head, and its
                  // earlier rows write their tail with the next row's head. ([r0, r1) is the
                  // thread's whole range here: streamed outputs are never fresh.)
                  const bool wrap = wrap_rows && rows_stream && rows_a_call == 1;
                  const int64_t skip = wrap && c0 == 0 && r + q > r0 ? block_head : 0;
                  const int64_t cut = wrap && c0 + len == run && r + q + 1 < r1 ? wrap_tail : 0;
                  O* const o = orow + q * out_step;
                  affine_u8_rows_form_avx2<O>(xr + q * x_row + skip, x_row, block_mean + skip,
                                              block_inv + skip, block_form, block_head - skip,
                                              o + skip, out_step, rows_a_call, len - skip - cut,
                                              rows_stream);
                  if (cut)
                    affine_u8_rows_avx2<O>(xr + q * x_row + len - cut, x_row, wrap_mean,
                                           wrap_inv, o + len - cut, out_step, 1, 16, true);
                } else
                  affine_u8_rows_avx2<O>(xr + q * x_row, x_row, block_mean, block_inv,
                                         orow + q * out_step, out_step, rows_a_call, len,
                                         rows_stream);
              }
              continue;
            }
            if (form)
              affine_u8_rows_form_avx512<O>(xr, x_row, block_mean, block_inv, block_form,
                                            block_head, orow, out_row / int64_t(sizeof(O)),
                                            rows_here, len, block_stream);
            else
              affine_u8_rows_avx512<O>(xr, x_row, block_mean, block_inv, orow,
                                       out_row / int64_t(sizeof(O)), rows_here, len,
                                       block_stream);
          }
          return;
        }
      }
#endif
      Counter row(outer, r0);
      for (int64_t r = r0; r < r1; ++r, row.next())
        affine_run(x + row.offset[0] + c0 * xs, xs, block_mean, block_inv, ss,
                   reinterpret_cast<O*>(out + row.offset[2] + c0 * os), os, len, stream);
    };
    auto block_len = [&](int64_t c0) {
      return std::min(c0 == 0 ? head + kStatsBlock : kStatsBlock, run - c0);
    };
    parallel_tasks(threads, threads, [&](int64_t t) {
      int64_t r0, r1;
      split_range(rows, threads, t, r0, r1);
      if (r0 >= r1) return;
      if (fresh) {
        // A fresh out is zeroed a page (or a 2 MB huge page) at a time as it is first
        // touched: write it in address order while those lines are still in cache, and
        // read the statistics from L3 instead (imagenet per pixel: 12 against 16 ms).
        for (int64_t g = r0; g < r1; g += kRowGroup)
          for (int64_t c0 = 0, len = 0; c0 < run; c0 += len)
            rows_block(g, std::min<int64_t>(g + kRowGroup, r1), c0, len = block_len(c0));
      } else {
        // Each block of the statistics stays in L2 while all of the thread's rows pass.
        for (int64_t c0 = 0, len = 0; c0 < run; c0 += len)
          rows_block(r0, r1, c0, len = block_len(c0));
      }
      store_fence(stream);
    });
    return;
  }

  // General: split the flat index range evenly; each thread walks its runs.
  flat_runs(space, threads, stream, [&](const int64_t* offset, int64_t col, int64_t len) {
    affine_run(x + offset[0] + col * xs, xs,
               reinterpret_cast<const double*>(stats_base_mean + offset[1] + col * ss),
               reinterpret_cast<const double*>(stats_base_inv + offset[1] + col * ss), ss,
               reinterpret_cast<O*>(out + offset[2] + col * os), os, len, stream);
  });
}

// ---------------------------------------------------------------------------------------
// The memory floor, for the benchmarks: the least work each job must do, multithreaded and
// dispatched like the real kernels. Reading every byte (statistics) and converting uint8 to
// float32 (standardize).
// The read floor touches every byte as cheaply as the ISA allows (vpsadbw: 64 bytes into
// eight 64-bit sums per instruction), so that it is limited by memory, not by arithmetic: a
// plain byte loop widens to 32 bits and ran at about 25 GB/s a thread even from L2.
inline uint64_t sum_bytes_base(const uint8_t* x, int64_t n) {
  uint64_t total = 0;
  for (int64_t b = 0; b < n; b += (int64_t(1) << 24)) {  // 2^24 * 255 < 2^32
    const int64_t end = std::min(n, b + (int64_t(1) << 24));
    uint32_t part = 0;
    for (int64_t i = b; i < end; ++i) part += x[i];
    total += part;
  }
  return total;
}
#if ZMFAST_X86_DISPATCH
ZM_TARGET_AVX2 inline uint64_t sum_bytes_avx2(const uint8_t* x, int64_t n) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i s[4] = {zero, zero, zero, zero};
  int64_t i = 0;
  for (; i + 128 <= n; i += 128)
    for (int k = 0; k < 4; ++k)
      s[k] = _mm256_add_epi64(s[k], _mm256_sad_epu8(_mm256_loadu_si256(
                                        reinterpret_cast<const __m256i*>(x + i + 32 * k)), zero));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes),
                     _mm256_add_epi64(_mm256_add_epi64(s[0], s[1]), _mm256_add_epi64(s[2], s[3])));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + sum_bytes_base(x + i, n - i);
}
ZM_TARGET_AVX512 inline uint64_t sum_bytes_avx512(const uint8_t* x, int64_t n) {
  const __m512i zero = _mm512_setzero_si512();
  __m512i s[4] = {zero, zero, zero, zero};
  int64_t i = 0;
  for (; i + 256 <= n; i += 256)
    for (int k = 0; k < 4; ++k)
      s[k] = _mm512_add_epi64(s[k], _mm512_sad_epu8(_mm512_loadu_si512(x + i + 64 * k), zero));
  const __m512i all = _mm512_add_epi64(_mm512_add_epi64(s[0], s[1]), _mm512_add_epi64(s[2], s[3]));
  return uint64_t(_mm512_reduce_add_epi64(all)) + sum_bytes_base(x + i, n - i);
}
#endif

inline uint64_t floor_read(const uint8_t* x, int64_t n, int requested_threads) {
  const int threads = threads_for(requested_threads, n);
  uint64_t (*sum)(const uint8_t*, int64_t) = sum_bytes_base;
#if ZMFAST_X86_DISPATCH
  if (current_level() == Level::avx512) sum = sum_bytes_avx512;
  if (current_level() == Level::avx2) sum = sum_bytes_avx2;
#endif
  std::vector<uint64_t> parts(size_t(threads), 0);
  parallel_tasks(threads, threads, [&](int64_t t) {
    int64_t lo, hi;
    split_range(n, threads, t, lo, hi);
    parts[size_t(t)] = sum(x + lo, hi - lo);
  });
  uint64_t total = 0;
  for (uint64_t p : parts) total += p;
  return total;
}

// Plain uint8 -> float32 conversion: no statistics, no float64 arithmetic.
ZM_INLINE void convert_impl(const uint8_t* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = float(x[i]);
}
inline void convert_base(const uint8_t* x, float* out, int64_t n, bool) { convert_impl(x, out, n); }
#if ZMFAST_X86_DISPATCH
ZM_TARGET_AVX2 inline void convert_avx2(const uint8_t* x, float* out, int64_t n, bool stream) {
  int64_t i = 0;
  const uintptr_t address = reinterpret_cast<uintptr_t>(out);
  if (address % 4 != 0) stream = false;
  const int64_t head = stream ? std::min<int64_t>(n, int64_t((32 - address % 32) % 32) / 4) : 0;
  convert_impl(x, out, head);
  for (i = head; i + 8 <= n; i += 8) {
    const __m256 f = _mm256_cvtepi32_ps(
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i))));
    if (stream) _mm256_stream_ps(out + i, f); else _mm256_storeu_ps(out + i, f);
  }
  convert_impl(x + i, out + i, n - i);
}
ZM_TARGET_AVX512 inline void convert_avx512(const uint8_t* x, float* out, int64_t n,
                                            bool stream) {
  int64_t i = 0;
  const uintptr_t address = reinterpret_cast<uintptr_t>(out);
  if (address % 4 != 0) stream = false;
  const int64_t head = stream ? std::min<int64_t>(n, int64_t((64 - address % 64) % 64) / 4) : 0;
  convert_impl(x, out, head);
  for (i = head; i + 16 <= n; i += 16) {
    const __m512 f = _mm512_cvtepi32_ps(
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
    if (stream) _mm512_stream_ps(out + i, f); else _mm512_storeu_ps(out + i, f);
  }
  convert_impl(x + i, out + i, n - i);
}
#endif

inline void floor_convert(const uint8_t* x, float* out, int64_t n, bool stream,
                          int requested_threads) {
  const int threads = threads_for(requested_threads, n);
  void (*convert)(const uint8_t*, float*, int64_t, bool) = convert_base;
#if ZMFAST_X86_DISPATCH
  if (current_level() == Level::avx512) convert = convert_avx512;
  if (current_level() == Level::avx2) convert = convert_avx2;
#endif
  parallel_tasks(threads, threads, [&](int64_t t) {
    int64_t lo, hi;
    split_range(n, threads, t, lo, hi);
    convert(x + lo, out + lo, hi - lo, stream);
    store_fence(stream);
  });
}

}  // namespace zm
