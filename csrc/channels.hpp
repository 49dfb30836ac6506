// uint8 images with per-channel (or scalar) statistics into float32 or float16, in float32
// arithmetic: y = fma(x - k, r, fma(x - k, r_low, b)), with k the integer nearest the
// channel's mean, r + r_low its 1/std as two floats and b = (k - mean) / std rounded to float.
//
// Why: the float64 kernels (normalize.hpp) spend about 7 cycles per 16 values on Zen 4 in
// conversions and 512-bit float64 arithmetic, against 1.4 for the bare uint8 -> float32
// conversion; this form costs about 1.7. It is not exact by construction, but a uint8 channel
// takes only 256 values, so channel_coefficients tries every one of them against the float64
// formula first: float32 must be within an ulp of (x - mean) * inv rounded to float32 (the
// documented bound), float16 equal to it rounded to half. A channel that fails sends the call
// to the float64 kernels. Subtracting the integer k first keeps x - k exact and the
// cancellation near the mean out of the rounded terms; r_low carries the bits of 1/std that
// r drops. On random statistics 99.5% of float32 values come out equal to the correctly
// rounded float64 formula (a single fma: 74%), and no channel missed the bound in 20,000.
//
// The space's arrays are 0 = x and 2 = out (byte strides, as in normalize.hpp). Two shapes:
// interleaved, a contiguous run of pixels' values whose channel is (first + i) % C; and
// planar, (..., C, P) output planes from (..., P, C) contiguous input pixels.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common.hpp"
#include "normalize.hpp"
#include "simd.hpp"

namespace zm {

constexpr int kMaxChannels = 4;

struct ChannelCoefficients {
  int channels = 0;
  float k[kMaxChannels], r[kMaxChannels], r_low[kMaxChannels], b[kMaxChannels];
};

ZM_INLINE float channel_value(float x, float k, float r, float r_low, float b) {
  const float d = x - k;
  return std::fma(d, r, std::fma(d, r_low, b));
}

ZM_INLINE uint32_t float_order(float f) {  // monotone map of finite floats onto integers
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) ? 0x80000000u - (u & 0x7fffffffu) : 0x80000000u + u;
}

// Fills `cc` and returns true when every uint8 value of every channel meets the bound above.
inline bool channel_coefficients(const double* mean, const double* inv, int channels, bool half,
                                 ChannelCoefficients& cc) {
  if (channels < 1 || channels > kMaxChannels) return false;
  cc.channels = channels;
  for (int c = 0; c < channels; ++c) {
    const double m = mean[c], s = inv[c];
    if (!std::isfinite(m) || !std::isfinite(s) || std::fabs(m) > double(1 << 20)) return false;
    const double k = std::nearbyint(m);
    cc.k[c] = float(k);
    cc.r[c] = float(s);
    cc.r_low[c] = float(s - double(cc.r[c]));
    cc.b[c] = float((k - m) * s);
    for (int v = 0; v < 256; ++v) {
      const double want = (double(v) - m) * s;
      const float got = channel_value(float(v), cc.k[c], cc.r[c], cc.r_low[c], cc.b[c]);
      if (!std::isfinite(want) || !std::isfinite(got)) return false;
      if (half) {
        if (double_to_half_bits(want) != double_to_half_bits(double(got))) return false;
      } else {
        const uint32_t a = float_order(float(want)), g = float_order(got);
        if ((a > g ? a - g : g - a) > 1) return false;
      }
    }
  }
  return true;
}

template <class O> ZM_INLINE O from_float(float y) {
  if constexpr (std::is_same<O, Half>::value) return Half{double_to_half_bits(double(y))};
  else return y;
}

// One value of channel c through the channel form, as O (the kernels' scalar heads and tails).
template <class O> ZM_INLINE O channel_out(uint8_t v, int c, const ChannelCoefficients& cc) {
  return from_float<O>(channel_value(float(v), cc.k[c], cc.r[c], cc.r_low[c], cc.b[c]));
}

#if ZMFAST_X86_DISPATCH
// The same operations as channel_value, sixteen int32 lanes at a time.
ZM_TARGET_AVX512 ZM_INLINE __m512 channel_step(__m512i lanes, __m512 k, __m512 r, __m512 r_low,
                                               __m512 b) {
  const __m512 d = _mm512_sub_ps(_mm512_cvtepi32_ps(lanes), k);
  return _mm512_fmadd_ps(d, r, _mm512_fmadd_ps(d, r_low, b));
}

template <class O>
ZM_TARGET_AVX512 ZM_INLINE void store16(O* out, __m512 y, bool stream) {
  if constexpr (std::is_same<O, float>::value)
    store_step16(out, y, stream);
  else
    store_step16(out, _mm512_cvtps_ph(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), stream);
}

// n values of a contiguous run whose first value is of channel `first`. With `stream`,
// values before out's first 64-byte boundary and after the last whole step go scalar.
template <class O>
ZM_TARGET_AVX512 void channels_run_avx512(const uint8_t* x, O* out, int64_t n, int first,
                                          const ChannelCoefficients& cc, bool stream) {
  const int C = cc.channels;
  auto scalar = [&](int64_t i) {
    const int c = int((first + i) % C);
    out[i] = channel_out<O>(x[i], c, cc);
  };
  int64_t i = 0;
  if (stream) {
    const uintptr_t address = reinterpret_cast<uintptr_t>(out);
    if (address % sizeof(O) != 0) stream = false;
    else
      for (; i < n && (address + uint64_t(i) * sizeof(O)) % 64 != 0; ++i) scalar(i);
  }
  // Lane j of phase q holds channel (first + i + 16 q + j) % C; C = 3 needs three phases.
  const int phases = C == 3 ? 3 : 1;
  __m512 k[3], r[3], r_low[3], b[3];
  for (int q = 0; q < phases; ++q) {
    alignas(64) float kq[16], rq[16], lq[16], bq[16];
    for (int j = 0; j < 16; ++j) {
      const int c = int((first + i + 16 * q + j) % C);
      kq[j] = cc.k[c];
      rq[j] = cc.r[c];
      lq[j] = cc.r_low[c];
      bq[j] = cc.b[c];
    }
    k[q] = _mm512_load_ps(kq);
    r[q] = _mm512_load_ps(rq);
    r_low[q] = _mm512_load_ps(lq);
    b[q] = _mm512_load_ps(bq);
  }
  auto step = [&](int64_t at, int q) ZM_TARGET_AVX512 {
    store16<O>(out + at,
               channel_step(_mm512_cvtepu8_epi32(
                                _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + at))),
                            k[q], r[q], r_low[q], b[q]),
               stream);
  };
  // The phases unrolled, so their coefficients stay in registers.
  if (phases == 3)
    for (; i + 48 <= n; i += 48) {
      step(i, 0);
      step(i + 16, 1);
      step(i + 32, 2);
    }
  for (int q = 0; i + 16 <= n; i += 16, q = phases == 3 ? q + 1 : 0) step(i, q);  // q < 3
  for (; i < n; ++i) scalar(i);
}

// Planes at least this large stream on AVX2 even where out is off a line (see
// affine_channels).
constexpr int64_t kOffLinePlaneBytes = int64_t(64) << 10;

// Pixels [p0, p1) of one image, C = 3 or 4 contiguous channels each, into C planes `plane`
// elements apart. Sixteen pixels a step: their bytes widen to int32 and two-source
// permutes gather each channel's lanes.
template <int C, class O>
ZM_TARGET_AVX512 void channels_planes_avx512(const uint8_t* x, O* out, int64_t plane, int64_t p0,
                                             int64_t p1, const ChannelCoefficients& cc,
                                             bool stream) {
  static_assert(C == 3 || C == 4, "three or four channels");
  auto scalar = [&](int64_t p) {
    for (int c = 0; c < C; ++c)
      out[c * plane + p] = channel_out<O>(x[p * C + c], c, cc);
  };
  int64_t p = p0;
  for (; p < p1 && p % 16 != 0; ++p) scalar(p);  // whole steps start on aligned pixels
  __m512 k[C], r[C], r_low[C], b[C];
  __m512i low[C], high[C];  // C = 3: lanes from the first two vectors, then the third
  __mmask16 from_high[C];
  for (int c = 0; c < C; ++c) {
    k[c] = _mm512_set1_ps(cc.k[c]);
    r[c] = _mm512_set1_ps(cc.r[c]);
    r_low[c] = _mm512_set1_ps(cc.r_low[c]);
    b[c] = _mm512_set1_ps(cc.b[c]);
    alignas(64) int32_t lo[16], hi[16];
    uint32_t mask = 0;
    for (int j = 0; j < 16; ++j) {
      const int value = C * j + c;  // of the step's 16 * C values
      if (C == 4) {
        lo[j] = (4 * (j % 8) + c);  // from (v0, v1) for j < 8 and (v2, v3) for j >= 8
        hi[j] = 0;
      } else {
        lo[j] = value < 32 ? value : 0;
        hi[j] = value < 32 ? 0 : value - 32;
        if (value >= 32) mask |= 1u << j;
      }
    }
    low[c] = _mm512_load_si512(lo);
    high[c] = _mm512_load_si512(hi);
    from_high[c] = __mmask16(mask);
  }
  for (; p + 16 <= p1; p += 16) {
    const uint8_t* px = x + p * C;
    __m512i v[C];
    for (int q = 0; q < C; ++q)
      v[q] = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(px + 16 * q)));
    for (int c = 0; c < C; ++c) {
      __m512i lanes;
      if constexpr (C == 3) {
        lanes = _mm512_permutex2var_epi32(v[0], low[c], v[1]);
        lanes = _mm512_mask_permutexvar_epi32(lanes, from_high[c], high[c], v[2]);
      } else {
        const __m512i a = _mm512_permutex2var_epi32(v[0], low[c], v[1]);
        const __m512i e = _mm512_permutex2var_epi32(v[2], low[c], v[3]);
        lanes = _mm512_shuffle_i64x2(a, e, _MM_SHUFFLE(1, 0, 1, 0));
      }
      store16<O>(out + c * plane + p, channel_step(lanes, k[c], r[c], r_low[c], b[c]), stream);
    }
  }
  for (; p < p1; ++p) scalar(p);
}

// The same kernels with AVX2, FMA and F16C (CPUs without AVX-512): eight lanes a step.
ZM_TARGET_AVX2 ZM_INLINE __m256i widen8(__m128i bytes) { return _mm256_cvtepu8_epi32(bytes); }

template <class O>
ZM_TARGET_AVX2 void channels_run_avx2(const uint8_t* x, O* out, int64_t n, int first,
                                      const ChannelCoefficients& cc, bool stream) {
  using Out = Avx2Out<O>;
  const int C = cc.channels;
  int64_t i = 0;
  const auto scalar = [&](int64_t at) {
    const int c = int((first + at) % C);
    out[at] = channel_out<O>(x[at], c, cc);
  };
  if (stream) {
    const uintptr_t address = reinterpret_cast<uintptr_t>(out);
    if (address % sizeof(O) != 0) stream = false;
    else
      for (; i < n && (address + uint64_t(i) * sizeof(O)) % 64 != 0; ++i) scalar(i);
  }
  // Lane j of phase q holds channel (first + i + 8 q + j) % C; C = 3 needs three phases.
  const int phases = C == 3 ? 3 : 1;
  __m256 k[3], r[3], r_low[3], b[3];
  for (int q = 0; q < phases; ++q) {
    alignas(32) float kq[8], rq[8], lq[8], bq[8];
    for (int j = 0; j < 8; ++j) {
      const int c = int((first + i + 8 * q + j) % C);
      kq[j] = cc.k[c], rq[j] = cc.r[c], lq[j] = cc.r_low[c], bq[j] = cc.b[c];
    }
    k[q] = _mm256_load_ps(kq), r[q] = _mm256_load_ps(rq);
    r_low[q] = _mm256_load_ps(lq), b[q] = _mm256_load_ps(bq);
  }
  if (phases == 3)
    for (; i + 24 <= n; i += 24)
      for (int q = 0; q < 3; ++q) {
        const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i + 8 * q));
        Out::store(out + i + 8 * q, form_out8<O>(widen8(v), k[q], r[q], r_low[q], b[q]), stream);
      }
  for (int q = 0; i + 8 <= n; i += 8, q = phases == 3 ? q + 1 : 0) {  // q < 3
    const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i));
    Out::store(out + i, form_out8<O>(widen8(v), k[q], r[q], r_low[q], b[q]), stream);
  }
  for (; i < n; ++i) scalar(i);
}

// Eight pixels a shuffle step, four steps at a time. One byte shuffle a channel puts pixel
// j's byte in dword j, zero-extended: C = 3 from bytes 0-15 and 8-23 of the step in the two
// 128-bit halves (pixels 0-3 from the low half, 4-7 from the high half at 3 (j - 4) + 4 + c),
// C = 4 from its 32 bytes. Two shuffles, an or and a widening a channel (the kernel before)
// took 1.12x and 1.23x the time for cifar into float32 and float16 out=, 1.32x and 1.49x for
// 1,000 cifar images in cache, 1.02x-1.17x for RGBA (alternating rounds, 2 threads).
// Streaming, the stores decide (Zen 3, alternating rounds, 2 threads, out=): one step at a
// time, each plane getting a quarter (float32) or an eighth (float16) of a line from each,
// took 1.15x-1.21x (float32) and 2.0x-2.2x (float16) the time of four steps whose values go
// to each plane in whole lines, on imagenet and cifar.
template <int C>
ZM_TARGET_AVX2 ZM_INLINE __m256i load_pixels8_avx2(const uint8_t* px) {
  return C == 3 ? _mm256_inserti128_si256(
                      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(px))),
                      _mm_loadu_si128(reinterpret_cast<const __m128i*>(px + 8)), 1)
                : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(px));
}
// The first pixel from p0 whose output starts a 64-byte line, so that the steps after it
// store whole lines (every plane alike where planes and images are whole lines apart); p0
// where out is not aligned to its elements.
template <class O>
inline int64_t first_on_line(const O* out, int64_t p0) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(out + p0);
  if (at % sizeof(O) != 0) return p0;
  return p0 + int64_t((64 - at % 64) % 64 / sizeof(O));
}

// Channel c of 32 pixels (four 8-pixel steps, to_dwords: the channel's byte indices) as two
// whole lines of its plane at dst.
template <class O>
ZM_TARGET_AVX2 ZM_INLINE void plane_step32_avx2(const __m256i* steps, __m256i to_dwords,
                                                __m256 k, __m256 r, __m256 r_low, __m256 b,
                                                O* dst, bool stream) {
  typename Avx2Out<O>::Vector y[4];
  for (int q = 0; q < 4; ++q)
    y[q] = form_out8<O>(_mm256_shuffle_epi8(steps[q], to_dwords), k, r, r_low, b);
  Avx2Out<O>::store16(dst, y[0], y[1], stream);
  Avx2Out<O>::store16(dst + 16, y[2], y[3], stream);
}

// Streamed planes take the pixels this many at a time, one plane after another (the
// chunk's bytes stay in L1 for the next plane's pass).
constexpr int64_t kPlaneChunkPixels = 512;

// The channel form's coefficients as vectors, and each channel's byte indices into a step
// of load_pixels8_avx2 (-128 for a zero byte).
template <int C>
ZM_TARGET_AVX2 ZM_INLINE void channel_vectors_avx2(const ChannelCoefficients& cc, __m256* k,
                                                   __m256* r, __m256* r_low, __m256* b,
                                                   __m256i* to_dwords) {
  for (int c = 0; c < C; ++c) {
    k[c] = _mm256_set1_ps(cc.k[c]), r[c] = _mm256_set1_ps(cc.r[c]);
    r_low[c] = _mm256_set1_ps(cc.r_low[c]), b[c] = _mm256_set1_ps(cc.b[c]);
    alignas(32) int8_t index[32];
    for (int j = 0; j < 8; ++j)
      for (int byte = 0; byte < 4; ++byte)
        index[4 * j + byte] = byte ? int8_t(-128)
                              : C == 3 ? int8_t(j < 4 ? 3 * j + c : 3 * (j - 4) + 4 + c)
                                       : int8_t(4 * (j % 4) + c);
    to_dwords[c] = _mm256_load_si256(reinterpret_cast<const __m256i*>(index));
  }
}

template <int C, class O>
ZM_TARGET_AVX2 void channels_planes_avx2(const uint8_t* x, O* out, int64_t plane, int64_t p0,
                                         int64_t p1, const ChannelCoefficients& cc,
                                         bool stream) {
  static_assert(C == 3 || C == 4, "three or four channels");
  using Out = Avx2Out<O>;
  const auto scalar = [&](int64_t p) {
    for (int c = 0; c < C; ++c)
      out[c * plane + p] = channel_out<O>(x[p * C + c], c, cc);
  };
  int64_t p = p0;
  // Streaming steps start on a line; normal stores start at once (peeling up to 31 pixels of
  // each of cifar's 1,024-pixel images took 1.12x-1.19x the time into np.empty's out=).
  for (const int64_t first = std::min(p1, stream ? first_on_line(out, p0) : p0); p < first; ++p)
    scalar(p);
  __m256 k[C], r[C], r_low[C], b[C];
  __m256i to_dwords[C];
  channel_vectors_avx2<C>(cc, k, r, r_low, b, to_dwords);
  // 32 pixels a step: each plane gets its 32 values in one go, whole lines (two of float32,
  // one of float16) rather than a quarter or a half of one from each of three 8-pixel steps.
  // Streamed, the planes go one at a time over a chunk of pixels: streaming stores that hop
  // between C planes every two lines ran far below the memory's speed on the Zen 3. In
  // alternating rounds (out= on a line, 2 threads), the hopping loop took 1.2x-1.3x the time
  // of this one for RGB float32 (at the conversion floor now), 3.1x-3.3x for RGBA, and
  // 1.0x-1.08x for float16; normal stores (small planes off a line, fresh arrays) keep the
  // hopping loop, which took 0.81x-0.88x and 0.91x-0.98x the time of chunks there.
  if (stream)
    for (int64_t end = 0; p + 32 <= p1; p = end) {
      end = p + std::min<int64_t>(kPlaneChunkPixels, (p1 - p) / 32 * 32);
      for (int c = 0; c < C; ++c)
        for (int64_t q = p; q < end; q += 32) {
          __m256i steps[4];
          for (int s = 0; s < 4; ++s) steps[s] = load_pixels8_avx2<C>(x + (q + 8 * s) * C);
          plane_step32_avx2<O>(steps, to_dwords[c], k[c], r[c], r_low[c], b[c],
                               out + c * plane + q, true);
        }
    }
  for (; p + 32 <= p1; p += 32) {
    __m256i steps[4];
    for (int q = 0; q < 4; ++q) steps[q] = load_pixels8_avx2<C>(x + (p + 8 * q) * C);
    for (int c = 0; c < C; ++c)
      plane_step32_avx2<O>(steps, to_dwords[c], k[c], r[c], r_low[c], b[c], out + c * plane + p,
                           stream);
  }
  for (; p + 8 <= p1; p += 8) {
    const __m256i step = load_pixels8_avx2<C>(x + p * C);
    for (int c = 0; c < C; ++c)
      Out::store(out + c * plane + p,
                 form_out8<O>(_mm256_shuffle_epi8(step, to_dwords[c]), k[c], r[c], r_low[c], b[c]),
                 stream);
  }
  for (; p < p1; ++p) scalar(p);
}

// Whole contiguous images [i0, i1) into planes that start off a line (out on its elements;
// planes a whole number of lines): each plane's last `64 / sizeof(O) - head` values and the
// next plane's first `head` (the next image's first plane after an image's last) share a
// line. The planes stream from their first line on, and each shared line streams as one
// (its values from the plane's last 8-pixel steps and the next plane's first); only the
// first image's head and the last image's tail take normal stores. np.empty puts a large
// array 16 bytes past a line, where cifar's 4 KB planes, with normal stores on either side of
// each shared line, had kept normal stores throughout: in alternating rounds (2 threads,
// cifar into np.empty) those took 1.7x the time of this for RGB float32, 1.3x for float16 and
// 1.1x for RGBA.
template <int C, class O>
ZM_TARGET_AVX2 void channels_seamed_images_avx2(const uint8_t* x, O* out, int64_t pixels,
                                                int64_t head, int64_t i0, int64_t i1,
                                                const ChannelCoefficients& cc) {
  constexpr int64_t kLine = 64 / int64_t(sizeof(O));
  const int64_t tail = kLine - head;
  __m256 k[C], r[C], r_low[C], b[C];
  __m256i to_dwords[C];
  channel_vectors_avx2<C>(cc, k, r, r_low, b, to_dwords);
  for (int64_t i = i0; i < i1; ++i) {
    const uint8_t* xi = x + i * pixels * C;
    O* oi = out + i * C * pixels;
    if (i == i0)
      for (int64_t p = 0; p < head; ++p) oi[p] = channel_out<O>(xi[p * C], 0, cc);
    channels_planes_avx2<C, O>(xi, oi, pixels, head, pixels - tail, cc, true);
    for (int c = 0; c < C; ++c) {
      O* const seam = oi + c * pixels + pixels - tail;  // on a line
      const uint8_t* const last = xi + (pixels - tail) * C;
      if (c == C - 1 && i + 1 == i1) {
        for (int64_t p = 0; p < tail; ++p) seam[p] = channel_out<O>(last[p * C + c], c, cc);
        break;
      }
      // The plane's last line of values and the next plane's first, side by side; the
      // shared line lies `head` values in.
      const uint8_t* const next = c == C - 1 ? xi + pixels * C : xi;  // the next plane's pixels
      const int n = (c + 1) % C;
      alignas(64) O both[2 * kLine];
      for (int64_t q = 0; q < kLine; q += 8) {
        const __m256i ends = load_pixels8_avx2<C>(xi + (pixels - kLine + q) * C);
        const __m256i starts = load_pixels8_avx2<C>(next + q * C);
        Avx2Out<O>::store(both + q, form_out8<O>(_mm256_shuffle_epi8(ends, to_dwords[c]), k[c],
                                                 r[c], r_low[c], b[c]), false);
        Avx2Out<O>::store(both + kLine + q,
                          form_out8<O>(_mm256_shuffle_epi8(starts, to_dwords[n]), k[n], r[n],
                                       r_low[n], b[n]), false);
      }
      const auto* shared = reinterpret_cast<const __m256i*>(both + head);
      for (int half = 0; half < 2; ++half)
        _mm256_stream_si256(reinterpret_cast<__m256i*>(seam) + half,
                            _mm256_loadu_si256(shared + half));
    }
  }
}

// The fixed values of a group being checked: at most one missed uint8 value per column,
// whose float64 result (as bits) the kernels then blend in.
struct FormFixes {
  int32_t x[16], y[16];
  uint32_t columns = 0;  // columns with a fix
  FormFixes() {
    for (int j = 0; j < 16; ++j) x[j] = y[j] = -1;
  }
  // Records value v as missed in the `missed` columns; false where one already has a fix.
  bool add(uint32_t missed, int v, const int32_t* want_bits) {
    if (missed & columns) return false;
    for (int j = 0; j < 16; ++j)
      if (missed >> j & 1) x[j] = v, y[j] = want_bits[j];
    columns |= missed;
    return true;
  }
  void store(float* fix, uint8_t* state, int64_t g, bool usable) const {
    std::memcpy(fix + 32 * g, x, sizeof x);
    std::memcpy(fix + 32 * g + 16, y, sizeof y);
    state[g] = !usable ? 0 : columns ? 2 : 1;
  }
};

// A group's k, r, r_low, b (16 each, from `kr`) for columns mean[0..16), inv[0..16);
// false where any column cannot take the form (a non-finite or far-off statistic).
inline bool form_group_coefficients(const double* mean, const double* inv, float* kr) {
  float* k = kr;
  float* r = kr + 16;
  float* r_low = kr + 32;
  float* b = kr + 48;
  bool finite = true;
  for (int j = 0; j < 16; ++j) {
    const double m = mean[j], s = inv[j];
    finite = finite && std::isfinite(m) && std::isfinite(s) && std::fabs(m) <= double(1 << 20);
    const double kj = finite ? std::nearbyint(m) : 0.0;
    k[j] = float(kj);
    r[j] = finite ? float(s) : 0.0f;
    r_low[j] = finite ? float(s - double(r[j])) : 0.0f;
    b[j] = finite ? float((kj - m) * s) : 0.0f;
  }
  return finite;
}

// Per-pixel statistics (normalize.hpp's PixelForm): the coefficients of every column, each
// column tried on all 256 values, and a group state (see PixelForm). The check costs about
// what one float64 standardize of 256 images does, so the Python layer runs it for
// statistics it sees a second time and keeps the result. A column that misses on a single
// value (in float16, about 1 in 70) keeps the form with that value fixed, so its group still
// avoids float64.
ZM_TARGET_AVX512 ZM_INLINE __m512i float_keys(__m512 v) {  // monotone integers of floats
  const __m512i s = _mm512_castps_si512(v);
  return _mm512_xor_si512(s, _mm512_and_si512(_mm512_srai_epi32(s, 31),
                                              _mm512_set1_epi32(0x7fffffff)));
}

ZM_TARGET_AVX512 inline void pixel_form_groups_avx512(const double* mean, const double* inv,
                                                      int64_t g0, int64_t g1, bool half,
                                                      float* coef, float* fix, uint8_t* state) {
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t j0 = 16 * g;
    float* k = coef + 64 * g;  // the group's k, r, r_low, b
    float* r = k + 16;
    float* r_low = k + 32;
    float* b = k + 48;
    const bool finite = form_group_coefficients(mean + j0, inv + j0, k);
    alignas(64) int32_t want_bits[16];
    FormFixes fixes;
    bool usable = finite;
    const __m512 kv = _mm512_loadu_ps(k), rv = _mm512_loadu_ps(r);
    const __m512 lv = _mm512_loadu_ps(r_low), bv = _mm512_loadu_ps(b);
    const __m512d m_lo = _mm512_loadu_pd(mean + j0), m_hi = _mm512_loadu_pd(mean + j0 + 8);
    const __m512d s_lo = _mm512_loadu_pd(inv + j0), s_hi = _mm512_loadu_pd(inv + j0 + 8);
    for (int v = 0; v < 256 && usable; ++v) {
      const __m512 d = _mm512_sub_ps(_mm512_set1_ps(float(v)), kv);
      const __m512 got = _mm512_fmadd_ps(d, rv, _mm512_fmadd_ps(d, lv, bv));
      // The float64 kernels' values: (x - mean) * inv, then rounded.
      const __m512d xv = _mm512_set1_pd(double(v));
      const __m512d lo = _mm512_mul_pd(_mm512_sub_pd(xv, m_lo), s_lo);
      const __m512d hi = _mm512_mul_pd(_mm512_sub_pd(xv, m_hi), s_hi);
      __mmask16 pass;
      __m512i want;
      if (half) {
        const __m256i want_h = _mm256_set_m128i(half8_avx512(hi), half8_avx512(lo));
        const __m256i have =
            _mm512_cvtps_ph(got, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        pass = _mm256_cmpeq_epi16_mask(want_h, have);
        want = _mm512_cvtepu16_epi32(want_h);
      } else {
        const __m512 want_f = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)),
                                                 _mm512_cvtpd_ps(hi), 1);
        const __m512i apart = _mm512_sub_epi32(float_keys(got), float_keys(want_f));
        pass = _mm512_cmple_epu32_mask(_mm512_add_epi32(apart, _mm512_set1_epi32(1)),
                                       _mm512_set1_epi32(2));  // -1, 0 or 1 ulp
        want = _mm512_castps_si512(want_f);
      }
      const uint32_t missed = ~uint32_t(pass) & 0xffffu;
      if (!missed) continue;
      _mm512_store_si512(want_bits, want);
      usable = fixes.add(missed, v, want_bits);  // false: a second value of one column
    }
    fixes.store(fix, state, g, usable);
  }
}

#endif

#if ZMFAST_X86_DISPATCH
// pixel_form_groups_avx512 with AVX2: each group's 16 columns in two 8-lane halves, the
// float32 form against the float64 kernels' values rounded to float (within an ulp) or to
// half (equal, through round_to_odd_ps_avx2 as the AVX2 rows kernels).
ZM_TARGET_AVX2 ZM_INLINE __m256i float_keys8(__m256 v) {  // monotone integers of floats
  const __m256i s = _mm256_castps_si256(v);
  return _mm256_xor_si256(s, _mm256_and_si256(_mm256_srai_epi32(s, 31),
                                              _mm256_set1_epi32(0x7fffffff)));
}

ZM_TARGET_AVX2 inline void pixel_form_groups_avx2(const double* mean, const double* inv,
                                                  int64_t g0, int64_t g1, bool half,
                                                  float* coef, float* fix, uint8_t* state) {
  const __m256i sign = _mm256_set1_epi32(int32_t(0x80000000u));
  const __m256i within = _mm256_xor_si256(_mm256_set1_epi32(2), sign);  // unsigned 2, biased
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t j0 = 16 * g;
    float* k = coef + 64 * g;  // the group's k, r, r_low, b
    float* r = k + 16;
    float* r_low = k + 32;
    float* b = k + 48;
    const bool finite = form_group_coefficients(mean + j0, inv + j0, k);
    alignas(32) int32_t want_bits[16];
    FormFixes fixes;
    bool usable = finite;
    __m256 kv[2], rv[2], lv[2], bv[2];
    __m256d m_lo[2], m_hi[2], s_lo[2], s_hi[2];
    for (int h = 0; h < 2; ++h) {
      kv[h] = _mm256_loadu_ps(k + 8 * h), rv[h] = _mm256_loadu_ps(r + 8 * h);
      lv[h] = _mm256_loadu_ps(r_low + 8 * h), bv[h] = _mm256_loadu_ps(b + 8 * h);
      m_lo[h] = _mm256_loadu_pd(mean + j0 + 8 * h), m_hi[h] = _mm256_loadu_pd(mean + j0 + 8 * h + 4);
      s_lo[h] = _mm256_loadu_pd(inv + j0 + 8 * h), s_hi[h] = _mm256_loadu_pd(inv + j0 + 8 * h + 4);
    }
    for (int v = 0; v < 256 && usable; ++v) {
      const __m256 vf = _mm256_set1_ps(float(v));
      const __m256d xv = _mm256_set1_pd(double(v));
      uint32_t pass = 0;
      __m256i want[2];
      for (int h = 0; h < 2; ++h) {
        const __m256 got = form_value8(vf, kv[h], rv[h], lv[h], bv[h]);
        // The float64 kernels' values: (x - mean) * inv, then rounded.
        const __m256d lo = _mm256_mul_pd(_mm256_sub_pd(xv, m_lo[h]), s_lo[h]);
        const __m256d hi = _mm256_mul_pd(_mm256_sub_pd(xv, m_hi[h]), s_hi[h]);
        int passed;
        if (half) {
          const __m128i want_h = Avx2Out<Half>::from(lo, hi);
          const __m128i have = _mm256_cvtps_ph(got, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
          const __m128i equal = _mm_cmpeq_epi16(want_h, have);
          passed = _mm_movemask_epi8(_mm_packs_epi16(equal, _mm_setzero_si128())) & 0xff;
          want[h] = _mm256_cvtepu16_epi32(want_h);
        } else {
          const __m256 want_f = Avx2Out<float>::from(lo, hi);
          const __m256i apart = _mm256_sub_epi32(float_keys8(got), float_keys8(want_f));
          // -1, 0 or 1 ulp: apart + 1 <= 2 as unsigned (biased by the sign bit for a signed
          // test)
          const __m256i far = _mm256_cmpgt_epi32(
              _mm256_xor_si256(_mm256_add_epi32(apart, _mm256_set1_epi32(1)), sign), within);
          passed = ~_mm256_movemask_ps(_mm256_castsi256_ps(far)) & 0xff;
          want[h] = _mm256_castps_si256(want_f);
        }
        pass |= uint32_t(passed) << (8 * h);
      }
      const uint32_t missed = ~pass & 0xffffu;
      if (!missed) continue;
      _mm256_store_si256(reinterpret_cast<__m256i*>(want_bits), want[0]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(want_bits + 8), want[1]);
      usable = fixes.add(missed, v, want_bits);  // false: a second value of one column
    }
    fixes.store(fix, state, g, usable);
  }
}
#endif

// coef: 16 * kFormFloats floats a group, the groups' k, r, r_low, b (64 floats each) and
// then their fix_x, fix_y (32 each; see PixelForm); state: n / 16 group states. Columns past
// the last whole group are left to the float64 loop.
inline void pixel_form(const double* mean, const double* inv, int64_t n, bool half, float* coef,
                       uint8_t* state, int requested_threads) {
  const int64_t groups = n / 16;
  float* const fix = coef + 64 * groups;
#if ZMFAST_X86_DISPATCH
  const int threads = threads_for(requested_threads, groups * 256 * 16);
  parallel_tasks(threads, threads, [&](int64_t t) {
    int64_t g0, g1;
    split_range(groups, threads, t, g0, g1);
    if (current_level() == Level::avx512)
      pixel_form_groups_avx512(mean, inv, g0, g1, half, coef, fix, state);
    else  // AVX2 (see pixel_form_available)
      pixel_form_groups_avx2(mean, inv, g0, g1, half, coef, fix, state);
  });
#else
  (void)mean, (void)inv, (void)half, (void)coef, (void)fix, (void)requested_threads;
  for (int64_t g = 0; g < groups; ++g) state[g] = 0;
#endif
}

// The channel kernels and the per-pixel form (pixel_form) exist for AVX-512 and AVX2; other
// levels keep the float64 kernels.
inline bool channel_kernels_available(Level level) {
#if ZMFAST_X86_DISPATCH
  return level == Level::avx512 || level == Level::avx2;
#else
  (void)level;
  return false;
#endif
}
inline bool pixel_form_available(Level level, bool half) {
  (void)half;  // both float32 and float16 at each level
#if ZMFAST_X86_DISPATCH
  return level == Level::avx512 || level == Level::avx2;
#else
  (void)level;
  return false;
#endif
}

// out = the channel form of (x - mean) / std over `space` (arrays 0 = x, 2 = out). Interleaved:
// the innermost dim is a contiguous run of whole pixels (its extent a multiple of C).
// Planar: the two innermost dims are (C, P) with x strides (1, C) and out strides (P, 1)
// elements.
template <class O>
void affine_channels(const uint8_t* x, O* out, const Space& space, const ChannelCoefficients& cc,
                     bool planar, int requested_threads, bool fresh) {
#if ZMFAST_X86_DISPATCH
  const int nd = space.nd;
  const int64_t total = space.size();
  if (nd == 0 || total == 0) return;
  const int threads = threads_for(requested_threads, total);
  const bool stream = !fresh && streams_output(total, 1, sizeof(O));
  const bool avx512 = current_level() == Level::avx512;  // else AVX2 (the caller checked)
  const char* xb = reinterpret_cast<const char*>(x);
  char* ob = reinterpret_cast<char*>(out);
  if (planar) {
    const int64_t pixels = space.extent[nd - 1];
    // Streaming stores need every plane's aligned steps to start on a line: planes whole
    // lines apart, and out on a line (AVX-512) or on its elements with the steps from
    // first_on_line (AVX2). There, where out is off a line (np.empty puts a large array 16
    // bytes past a page), the line across two planes takes normal stores on one side and
    // streaming ones on the other: that costs little per imagenet plane (196 KB of float32)
    // but made cifar's (4 KB) slower than normal stores, so smaller planes of contiguous
    // images stream their shared lines whole (channels_seamed_images_avx2), and other small
    // planes keep normal stores.
    const uintptr_t out_at = reinterpret_cast<uintptr_t>(out);
    const int64_t plane_bytes = pixels * int64_t(sizeof(O));
    bool plane_stream = stream && plane_bytes % 64 == 0 &&
                        (out_at % 64 == 0 || (!avx512 && out_at % sizeof(O) == 0 &&
                                              plane_bytes >= kOffLinePlaneBytes));
    for (int i = 0; i < nd - 2; ++i) plane_stream = plane_stream && space.stride[2][i] % 64 == 0;
    // Smaller planes off a line, of contiguous images: their shared lines stream whole.
    const int64_t images = nd == 3 ? space.extent[0] : 0;
    if (!avx512 && stream && !plane_stream && plane_bytes % 64 == 0 && out_at % 64 != 0 &&
        out_at % sizeof(O) == 0 && images > 0 && space.stride[0][0] == pixels * cc.channels &&
        space.stride[2][0] == cc.channels * plane_bytes) {
      const int64_t head = int64_t((64 - out_at % 64) / sizeof(O));
      parallel_tasks(threads, threads, [&](int64_t t) {
        int64_t i0, i1;
        split_range(images, threads, t, i0, i1);
        if (i0 >= i1) return;
        if (cc.channels == 3) channels_seamed_images_avx2<3, O>(x, out, pixels, head, i0, i1, cc);
        else channels_seamed_images_avx2<4, O>(x, out, pixels, head, i0, i1, cc);
        store_fence(true);
      });
      return;
    }
    // One fence a thread, after its last image: a fence after every image (cifar's 12 KB)
    // took 1.05x-1.11x the time into a line-aligned out=.
    image_pixel_ranges(space, threads, plane_stream,
                       [&](const int64_t* offset, int64_t p0, int64_t p1) {
      const auto* xi = reinterpret_cast<const uint8_t*>(xb + offset[0]);
      O* oi = reinterpret_cast<O*>(ob + offset[2]);
      if (avx512 && cc.channels == 3)
        channels_planes_avx512<3, O>(xi, oi, pixels, p0, p1, cc, plane_stream);
      else if (avx512)
        channels_planes_avx512<4, O>(xi, oi, pixels, p0, p1, cc, plane_stream);
      else if (cc.channels == 3)
        channels_planes_avx2<3, O>(xi, oi, pixels, p0, p1, cc, plane_stream);
      else
        channels_planes_avx2<4, O>(xi, oi, pixels, p0, p1, cc, plane_stream);
    });
    return;
  }
  flat_runs(space, threads, stream, [&](const int64_t* offset, int64_t col, int64_t len) {
    const auto* xr = reinterpret_cast<const uint8_t*>(xb + offset[0] + col);
    O* const or_ = reinterpret_cast<O*>(ob + offset[2]) + col;
    if (avx512) channels_run_avx512<O>(xr, or_, len, int(col % cc.channels), cc, stream);
    else channels_run_avx2<O>(xr, or_, len, int(col % cc.channels), cc, stream);
  });
#else
  (void)x, (void)out, (void)space, (void)cc, (void)planar, (void)requested_threads, (void)fresh;
#endif
}

}  // namespace zm
