// A test build's AVX-512: the kernels' AVX-512 intrinsics run through SIMDe's portable
// implementations (over AVX2), so that the AVX-512 and VNNI kernels can be tested on a
// CPU without them. Only with -DZMFAST_EMULATE_AVX512=ON (see CMakeLists.txt), never in a
// wheel: the emulated kernels are many times slower than the real ones.
//
// SIMDe takes GCC's own vector types once <immintrin.h> is in (simde__m512i is __m512i), so
// only the function names are aliased. What SIMDe lacks, or does differently from the CPU, is
// defined below, lane by lane as Intel's pseudocode says:
// - masked loads and stores touch only their lanes (SIMDe's masked stores write zeros over the
//   other lanes, which would overwrite their neighbours' values, and its masked loads read
//   them, which could fault);
// - aligned loads and stores, and streaming stores, abort on a misaligned address, as the CPU
//   faults on one.
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#define SIMDE_X86_AVX512F_ENABLE_NATIVE_ALIASES
#define SIMDE_X86_AVX512BW_ENABLE_NATIVE_ALIASES
#define SIMDE_X86_AVX512DQ_ENABLE_NATIVE_ALIASES
#define SIMDE_X86_AVX512VL_ENABLE_NATIVE_ALIASES
#define SIMDE_X86_AVX512VNNI_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

namespace zm::emulated {

inline void require_aligned(const void* p, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 64 != 0) {
    std::fprintf(stderr, "zmfast (emulated AVX-512): %s at %p, not 64-byte aligned\n", what, p);
    std::abort();
  }
}

// The lanes of `src`, those in k loaded from p.
template <typename Lane, typename Vector>
inline Vector mask_load(Vector src, uint64_t k, const void* p) {
  Lane lanes[sizeof(Vector) / sizeof(Lane)];
  std::memcpy(lanes, &src, sizeof(src));
  for (unsigned i = 0; i < sizeof(Vector) / sizeof(Lane); ++i)
    if ((k >> i) & 1)
      std::memcpy(&lanes[i], static_cast<const char*>(p) + i * sizeof(Lane), sizeof(Lane));
  std::memcpy(&src, lanes, sizeof(src));
  return src;
}

template <typename Lane, typename Vector>
inline void mask_store(void* p, uint64_t k, Vector a) {
  Lane lanes[sizeof(Vector) / sizeof(Lane)];
  std::memcpy(lanes, &a, sizeof(a));
  for (unsigned i = 0; i < sizeof(Vector) / sizeof(Lane); ++i)
    if ((k >> i) & 1)
      std::memcpy(static_cast<char*>(p) + i * sizeof(Lane), &lanes[i], sizeof(Lane));
}

template <typename To, typename From>
inline To bits(const From& v) {
  static_assert(sizeof(To) == sizeof(From));
  To t;
  std::memcpy(&t, &v, sizeof(t));
  return t;
}

struct Halves128i {
  __m128i lo, hi;
};
struct Halves256i {
  __m256i lo, hi;
};
struct Halves256 {
  __m256 lo, hi;
};
struct Halves256d {
  __m256d lo, hi;
};

inline __m512i join(__m256i lo, __m256i hi) { return bits<__m512i>(Halves256i{lo, hi}); }
inline __m512 join(__m256 lo, __m256 hi) { return bits<__m512>(Halves256{lo, hi}); }
inline __m512d join(__m256d lo, __m256d hi) { return bits<__m512d>(Halves256d{lo, hi}); }

// double -> float rounded toward zero: the nearest float, stepped toward zero where it is
// farther from zero than the double (an infinity from a finite double becomes FLT_MAX).
inline float to_float_toward_zero(double d) {
  const float f = static_cast<float>(d);
  return std::fabs(static_cast<double>(f)) > std::fabs(d) ? std::nextafter(f, 0.0f) : f;
}

}  // namespace zm::emulated

// Every masked load and store of 512 and 256 bits (SIMDe's masked stores write zeros over the
// other lanes, and its masked loads read them).
#undef _mm512_maskz_loadu_epi8
#define _mm512_maskz_loadu_epi8(k, p) \
  ::zm::emulated::mask_load<uint8_t>(__m512i{}, uint64_t(k), (p))
#undef _mm512_mask_loadu_epi8
#define _mm512_mask_loadu_epi8(src, k, p) \
  ::zm::emulated::mask_load<uint8_t>((src), uint64_t(k), (p))
#undef _mm512_mask_storeu_epi8
#define _mm512_mask_storeu_epi8(p, k, a) ::zm::emulated::mask_store<uint8_t>((p), uint64_t(k), (a))
#undef _mm512_maskz_loadu_epi16
#define _mm512_maskz_loadu_epi16(k, p) \
  ::zm::emulated::mask_load<uint16_t>(__m512i{}, uint64_t(k), (p))
#undef _mm512_mask_loadu_epi16
#define _mm512_mask_loadu_epi16(src, k, p) \
  ::zm::emulated::mask_load<uint16_t>((src), uint64_t(k), (p))
#undef _mm512_mask_storeu_epi16
#define _mm512_mask_storeu_epi16(p, k, a) \
  ::zm::emulated::mask_store<uint16_t>((p), uint64_t(k), (a))
#undef _mm512_maskz_loadu_epi32
#define _mm512_maskz_loadu_epi32(k, p) \
  ::zm::emulated::mask_load<uint32_t>(__m512i{}, uint64_t(k), (p))
#undef _mm512_mask_loadu_epi32
#define _mm512_mask_loadu_epi32(src, k, p) \
  ::zm::emulated::mask_load<uint32_t>((src), uint64_t(k), (p))
#undef _mm512_mask_storeu_epi32
#define _mm512_mask_storeu_epi32(p, k, a) \
  ::zm::emulated::mask_store<uint32_t>((p), uint64_t(k), (a))
#undef _mm512_maskz_loadu_epi64
#define _mm512_maskz_loadu_epi64(k, p) \
  ::zm::emulated::mask_load<uint64_t>(__m512i{}, uint64_t(k), (p))
#undef _mm512_mask_loadu_epi64
#define _mm512_mask_loadu_epi64(src, k, p) \
  ::zm::emulated::mask_load<uint64_t>((src), uint64_t(k), (p))
#undef _mm512_mask_storeu_epi64
#define _mm512_mask_storeu_epi64(p, k, a) \
  ::zm::emulated::mask_store<uint64_t>((p), uint64_t(k), (a))
#undef _mm512_maskz_loadu_ps
#define _mm512_maskz_loadu_ps(k, p) ::zm::emulated::mask_load<float>(__m512{}, uint64_t(k), (p))
#undef _mm512_mask_loadu_ps
#define _mm512_mask_loadu_ps(src, k, p) ::zm::emulated::mask_load<float>((src), uint64_t(k), (p))
#undef _mm512_mask_storeu_ps
#define _mm512_mask_storeu_ps(p, k, a) ::zm::emulated::mask_store<float>((p), uint64_t(k), (a))
#undef _mm512_maskz_loadu_pd
#define _mm512_maskz_loadu_pd(k, p) ::zm::emulated::mask_load<double>(__m512d{}, uint64_t(k), (p))
#undef _mm512_mask_loadu_pd
#define _mm512_mask_loadu_pd(src, k, p) ::zm::emulated::mask_load<double>((src), uint64_t(k), (p))
#undef _mm512_mask_storeu_pd
#define _mm512_mask_storeu_pd(p, k, a) ::zm::emulated::mask_store<double>((p), uint64_t(k), (a))
#undef _mm256_maskz_loadu_epi8
#define _mm256_maskz_loadu_epi8(k, p) \
  ::zm::emulated::mask_load<uint8_t>(__m256i{}, uint64_t(k), (p))
#undef _mm256_mask_loadu_epi8
#define _mm256_mask_loadu_epi8(src, k, p) \
  ::zm::emulated::mask_load<uint8_t>((src), uint64_t(k), (p))
#undef _mm256_mask_storeu_epi8
#define _mm256_mask_storeu_epi8(p, k, a) ::zm::emulated::mask_store<uint8_t>((p), uint64_t(k), (a))
#undef _mm256_maskz_loadu_epi16
#define _mm256_maskz_loadu_epi16(k, p) \
  ::zm::emulated::mask_load<uint16_t>(__m256i{}, uint64_t(k), (p))
#undef _mm256_mask_loadu_epi16
#define _mm256_mask_loadu_epi16(src, k, p) \
  ::zm::emulated::mask_load<uint16_t>((src), uint64_t(k), (p))
#undef _mm256_mask_storeu_epi16
#define _mm256_mask_storeu_epi16(p, k, a) \
  ::zm::emulated::mask_store<uint16_t>((p), uint64_t(k), (a))
#undef _mm256_maskz_loadu_epi32
#define _mm256_maskz_loadu_epi32(k, p) \
  ::zm::emulated::mask_load<uint32_t>(__m256i{}, uint64_t(k), (p))
#undef _mm256_mask_loadu_epi32
#define _mm256_mask_loadu_epi32(src, k, p) \
  ::zm::emulated::mask_load<uint32_t>((src), uint64_t(k), (p))
#undef _mm256_mask_storeu_epi32
#define _mm256_mask_storeu_epi32(p, k, a) \
  ::zm::emulated::mask_store<uint32_t>((p), uint64_t(k), (a))
#undef _mm256_maskz_loadu_epi64
#define _mm256_maskz_loadu_epi64(k, p) \
  ::zm::emulated::mask_load<uint64_t>(__m256i{}, uint64_t(k), (p))
#undef _mm256_mask_loadu_epi64
#define _mm256_mask_loadu_epi64(src, k, p) \
  ::zm::emulated::mask_load<uint64_t>((src), uint64_t(k), (p))
#undef _mm256_mask_storeu_epi64
#define _mm256_mask_storeu_epi64(p, k, a) \
  ::zm::emulated::mask_store<uint64_t>((p), uint64_t(k), (a))
#undef _mm256_maskz_loadu_ps
#define _mm256_maskz_loadu_ps(k, p) ::zm::emulated::mask_load<float>(__m256{}, uint64_t(k), (p))
#undef _mm256_mask_loadu_ps
#define _mm256_mask_loadu_ps(src, k, p) ::zm::emulated::mask_load<float>((src), uint64_t(k), (p))
#undef _mm256_mask_storeu_ps
#define _mm256_mask_storeu_ps(p, k, a) ::zm::emulated::mask_store<float>((p), uint64_t(k), (a))
#undef _mm256_maskz_loadu_pd
#define _mm256_maskz_loadu_pd(k, p) ::zm::emulated::mask_load<double>(__m256d{}, uint64_t(k), (p))
#undef _mm256_mask_loadu_pd
#define _mm256_mask_loadu_pd(src, k, p) ::zm::emulated::mask_load<double>((src), uint64_t(k), (p))
#undef _mm256_mask_storeu_pd
#define _mm256_mask_storeu_pd(p, k, a) ::zm::emulated::mask_store<double>((p), uint64_t(k), (a))

// Every aligned 512-bit load and store, streaming ones included (stored as normal ones), as a
// function zm_emulated<name> that checks the address.
#define ZM_EMULATED_LOAD(name, Vector, load)       \
  inline Vector zm_emulated##name(const void* p) { \
    ::zm::emulated::require_aligned(p, #name);     \
    return load(p);                                \
  }
#define ZM_EMULATED_STORE(name, Vector, store)       \
  inline void zm_emulated##name(void* p, Vector a) { \
    ::zm::emulated::require_aligned(p, #name);       \
    store(p, a);                                     \
  }
ZM_EMULATED_LOAD(_mm512_load_si512, __m512i, simde_mm512_load_si512)
ZM_EMULATED_LOAD(_mm512_load_epi32, __m512i, simde_mm512_load_si512)
ZM_EMULATED_LOAD(_mm512_load_epi64, __m512i, simde_mm512_load_si512)
ZM_EMULATED_LOAD(_mm512_load_ps, __m512, simde_mm512_load_ps)
ZM_EMULATED_LOAD(_mm512_load_pd, __m512d, simde_mm512_load_pd)
ZM_EMULATED_LOAD(_mm512_stream_load_si512, __m512i, simde_mm512_load_si512)
ZM_EMULATED_STORE(_mm512_store_si512, __m512i, simde_mm512_storeu_si512)
ZM_EMULATED_STORE(_mm512_store_epi32, __m512i, simde_mm512_storeu_si512)
ZM_EMULATED_STORE(_mm512_store_epi64, __m512i, simde_mm512_storeu_si512)
ZM_EMULATED_STORE(_mm512_store_ps, __m512, simde_mm512_storeu_ps)
ZM_EMULATED_STORE(_mm512_store_pd, __m512d, simde_mm512_storeu_pd)
ZM_EMULATED_STORE(_mm512_stream_si512, __m512i, simde_mm512_storeu_si512)
ZM_EMULATED_STORE(_mm512_stream_ps, __m512, simde_mm512_storeu_ps)
ZM_EMULATED_STORE(_mm512_stream_pd, __m512d, simde_mm512_storeu_pd)
#undef _mm512_load_si512
#define _mm512_load_si512 zm_emulated_mm512_load_si512
#undef _mm512_load_epi32
#define _mm512_load_epi32 zm_emulated_mm512_load_epi32
#undef _mm512_load_epi64
#define _mm512_load_epi64 zm_emulated_mm512_load_epi64
#undef _mm512_load_ps
#define _mm512_load_ps zm_emulated_mm512_load_ps
#undef _mm512_load_pd
#define _mm512_load_pd zm_emulated_mm512_load_pd
#undef _mm512_stream_load_si512
#define _mm512_stream_load_si512 zm_emulated_mm512_stream_load_si512
#undef _mm512_store_si512
#define _mm512_store_si512 zm_emulated_mm512_store_si512
#undef _mm512_store_epi32
#define _mm512_store_epi32 zm_emulated_mm512_store_epi32
#undef _mm512_store_epi64
#define _mm512_store_epi64 zm_emulated_mm512_store_epi64
#undef _mm512_store_ps
#define _mm512_store_ps zm_emulated_mm512_store_ps
#undef _mm512_store_pd
#define _mm512_store_pd zm_emulated_mm512_store_pd
#undef _mm512_stream_si512
#define _mm512_stream_si512 zm_emulated_mm512_stream_si512
#undef _mm512_stream_ps
#define _mm512_stream_ps zm_emulated_mm512_stream_ps
#undef _mm512_stream_pd
#define _mm512_stream_pd zm_emulated_mm512_stream_pd

inline __mmask64 zm_emulated_cvtu64_mask64(uint64_t k) { return k; }
#undef _cvtu64_mask64
#define _cvtu64_mask64 zm_emulated_cvtu64_mask64

inline __m512i zm_emulated_cvtepu8_epi32(__m128i a) {
  return ::zm::emulated::join(_mm256_cvtepu8_epi32(a), _mm256_cvtepu8_epi32(_mm_srli_si128(a, 8)));
}
#undef _mm512_cvtepu8_epi32
#define _mm512_cvtepu8_epi32 zm_emulated_cvtepu8_epi32

inline __m512i zm_emulated_cvtepu16_epi32(__m256i a) {
  return ::zm::emulated::join(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(a)),
                              _mm256_cvtepu16_epi32(_mm256_extracti128_si256(a, 1)));
}
#undef _mm512_cvtepu16_epi32
#define _mm512_cvtepu16_epi32 zm_emulated_cvtepu16_epi32

inline __m512i zm_emulated_cvtepu32_epi64(__m256i a) {
  return ::zm::emulated::join(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(a)),
                              _mm256_cvtepu32_epi64(_mm256_extracti128_si256(a, 1)));
}
#undef _mm512_cvtepu32_epi64
#define _mm512_cvtepu32_epi64 zm_emulated_cvtepu32_epi64

inline __m512i zm_emulated_cvtepi32_epi64(__m256i a) {
  return ::zm::emulated::join(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(a)),
                              _mm256_cvtepi32_epi64(_mm256_extracti128_si256(a, 1)));
}
#undef _mm512_cvtepi32_epi64
#define _mm512_cvtepi32_epi64 zm_emulated_cvtepi32_epi64

inline __m256i zm_emulated_cvtepi32_epi16(__m512i a) {
  int32_t in[16];
  int16_t out[16];
  std::memcpy(in, &a, sizeof(in));
  for (int i = 0; i < 16; ++i) out[i] = static_cast<int16_t>(in[i]);  // truncates, as vpmovdw
  return ::zm::emulated::bits<__m256i>(out);
}
#undef _mm512_cvtepi32_epi16
#define _mm512_cvtepi32_epi16 zm_emulated_cvtepi32_epi16

inline __m512d zm_emulated_cvtepi32_pd(__m256i a) {
  return ::zm::emulated::join(_mm256_cvtepi32_pd(_mm256_castsi256_si128(a)),
                              _mm256_cvtepi32_pd(_mm256_extracti128_si256(a, 1)));
}
#undef _mm512_cvtepi32_pd
#define _mm512_cvtepi32_pd zm_emulated_cvtepi32_pd

inline __m512d zm_emulated_cvtps_pd(__m256 a) {
  return ::zm::emulated::join(_mm256_cvtps_pd(_mm256_castps256_ps128(a)),
                              _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
}
#undef _mm512_cvtps_pd
#define _mm512_cvtps_pd zm_emulated_cvtps_pd

inline __m256 zm_emulated_cvtpd_ps(__m512d a) {
  const auto h = ::zm::emulated::bits<::zm::emulated::Halves256d>(a);
  return _mm256_set_m128(_mm256_cvtpd_ps(h.hi), _mm256_cvtpd_ps(h.lo));
}
#undef _mm512_cvtpd_ps
#define _mm512_cvtpd_ps zm_emulated_cvtpd_ps

inline __m256 zm_emulated_cvt_roundpd_ps(__m512d a, int rounding) {
  if ((rounding & 3) != _MM_FROUND_TO_ZERO) {
    std::fprintf(stderr, "zmfast (emulated AVX-512): _mm512_cvt_roundpd_ps rounding %d\n",
                 rounding);
    std::abort();
  }
  double in[8];
  float out[8];
  std::memcpy(in, &a, sizeof(in));
  for (int i = 0; i < 8; ++i) out[i] = ::zm::emulated::to_float_toward_zero(in[i]);
  return ::zm::emulated::bits<__m256>(out);
}
#undef _mm512_cvt_roundpd_ps
#define _mm512_cvt_roundpd_ps zm_emulated_cvt_roundpd_ps

// F16C's conversion of each half, with the same rounding (an immediate: hence a macro).
#undef _mm512_cvtps_ph
#define _mm512_cvtps_ph(a, rounding)                                            \
  ([](__m512 v) {                                                               \
    const auto h = ::zm::emulated::bits<::zm::emulated::Halves256>(v);          \
    return ::zm::emulated::bits<__m256i>(::zm::emulated::Halves128i{            \
        _mm256_cvtps_ph(h.lo, (rounding)), _mm256_cvtps_ph(h.hi, (rounding))}); \
  }(a))

inline long long zm_emulated_reduce_add_epi64(__m512i a) {
  uint64_t lanes[8], sum = 0;  // wraps, as the CPU's adds
  std::memcpy(lanes, &a, sizeof(lanes));
  for (uint64_t lane : lanes) sum += lane;
  return static_cast<long long>(sum);
}
#undef _mm512_reduce_add_epi64
#define _mm512_reduce_add_epi64 zm_emulated_reduce_add_epi64

inline int zm_emulated_reduce_add_epi32(__m512i a) {
  uint32_t lanes[16], sum = 0;
  std::memcpy(lanes, &a, sizeof(lanes));
  for (uint32_t lane : lanes) sum += lane;
  return static_cast<int>(sum);
}
#undef _mm512_reduce_add_epi32
#define _mm512_reduce_add_epi32 zm_emulated_reduce_add_epi32

inline __m256i zm_emulated_mask_or_epi32(__m256i src, __mmask8 k, __m256i a, __m256i b) {
  const __m256i ored = _mm256_or_si256(a, b);
  const __m256i lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i chosen =
      _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(k), lane_bits), lane_bits);
  return _mm256_blendv_epi8(src, ored, chosen);
}
#undef _mm256_mask_or_epi32
#define _mm256_mask_or_epi32 zm_emulated_mask_or_epi32

inline __mmask16 zm_emulated_cmpeq_epi16_mask(__m256i a, __m256i b) {
  int16_t x[16], y[16];
  std::memcpy(x, &a, sizeof(x));
  std::memcpy(y, &b, sizeof(y));
  unsigned k = 0;
  for (int i = 0; i < 16; ++i) k |= unsigned(x[i] == y[i]) << i;
  return static_cast<__mmask16>(k);
}
#undef _mm256_cmpeq_epi16_mask
#define _mm256_cmpeq_epi16_mask zm_emulated_cmpeq_epi16_mask
