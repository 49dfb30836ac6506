// Runtime SIMD dispatch: hot loops are compiled for the baseline ISA and, on x86-64 with
// GCC or Clang, also for AVX2 and AVX-512 through function-level target attributes. The CPU is
// checked once; ZMFAST_SIMD=baseline|avx2|avx512 (or set_level) caps the level in use, so tests
// can run every path this machine supports.
#pragma once

#include <atomic>
#include <cstdlib>
#include <cstring>

// -DZMFAST_NO_DISPATCH builds only the baseline loops, as on other CPUs and compilers.
// -DZMFAST_EMULATE_AVX512 (a test build, compiled for AVX2): the AVX-512 kernels run on
// SIMDe's emulation of their intrinsics, and an AVX2 CPU counts as one with AVX-512 and VNNI,
// so that tests reach every kernel on a CPU without them.
#if defined(ZMFAST_EMULATE_AVX512)
#define ZMFAST_X86_DISPATCH 1
#define ZM_TARGET_AVX2
#define ZM_TARGET_AVX512
#define ZM_TARGET_AVX512_VNNI
#include "avx512_emulation.hpp"
#elif !defined(ZMFAST_NO_DISPATCH) && (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__x86_64__) || defined(__i386__))
#define ZMFAST_X86_DISPATCH 1
#define ZM_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define ZM_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")))
#define ZM_TARGET_AVX512_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))
#include <immintrin.h>
#else
#define ZMFAST_X86_DISPATCH 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ZM_INLINE inline __attribute__((always_inline))
#else
#define ZM_INLINE inline
#endif

namespace zm {

enum class Level : int { baseline = 0, avx2 = 1, avx512 = 2 };

inline const char* level_name(Level level) {
  switch (level) {
    case Level::avx2: return "avx2";
    case Level::avx512: return "avx512";
    default: return "baseline";
  }
}

// Whether the AVX-512 kernels are SIMDe's emulation (a test build).
constexpr bool kEmulatedAvx512 =
#if defined(ZMFAST_EMULATE_AVX512)
    true;
#else
    false;
#endif

#if ZMFAST_X86_DISPATCH
// What the CPU has (a feature name as __builtin_cpu_supports takes it, a string literal), or
// in the emulating test build what it is taken to have.
#define ZM_CPU_SUPPORTS(feature) \
  (__builtin_cpu_init(), ::zm::cpu_feature(feature, __builtin_cpu_supports(feature) != 0))

inline bool cpu_feature(const char* name, bool supported) {
  if (kEmulatedAvx512 && std::strncmp(name, "avx512", 6) == 0)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
  return supported;
}
#endif

inline Level detect_level() {
#if ZMFAST_X86_DISPATCH
  if (ZM_CPU_SUPPORTS("avx512f") && ZM_CPU_SUPPORTS("avx512bw") && ZM_CPU_SUPPORTS("avx512dq") &&
      ZM_CPU_SUPPORTS("avx512vl"))
    return Level::avx512;
  if (ZM_CPU_SUPPORTS("avx2") && ZM_CPU_SUPPORTS("fma")) return Level::avx2;
#endif
  return Level::baseline;
}

// The best level the CPU supports, capped by ZMFAST_SIMD when set.
inline Level initial_level() {
  Level level = detect_level();
  if (const char* env = std::getenv("ZMFAST_SIMD")) {
    Level cap = level;
    if (std::strcmp(env, "baseline") == 0) cap = Level::baseline;
    if (std::strcmp(env, "avx2") == 0) cap = Level::avx2;
    if (std::strcmp(env, "avx512") == 0) cap = Level::avx512;
    if (int(cap) < int(level)) level = cap;
  }
  return level;
}

inline std::atomic<int>& level_slot() {
  static std::atomic<int> slot{int(initial_level())};
  return slot;
}

inline Level current_level() { return Level(level_slot().load(std::memory_order_relaxed)); }

// AVX512-VNNI (vpdpbusd: Ice Lake, Zen 4 and later) within the AVX-512 level: detected once,
// and switchable off (set_vnni) so that tests also run the plain AVX-512 kernels here.
inline bool detect_vnni() {
#if ZMFAST_X86_DISPATCH
  return detect_level() == Level::avx512 && ZM_CPU_SUPPORTS("avx512vnni");
#else
  return false;
#endif
}

inline std::atomic<bool>& vnni_slot() {
  static std::atomic<bool> slot{detect_vnni()};
  return slot;
}

// VNNI kernels run at the AVX-512 level only.
inline bool use_vnni() {
  return vnni_slot().load(std::memory_order_relaxed) && current_level() == Level::avx512;
}

inline bool set_vnni(bool wanted) {
  vnni_slot().store(wanted && detect_vnni());
  return vnni_slot().load();
}

// Use `wanted`, or the best supported level below it; returns the level now in use.
inline Level set_level(Level wanted) {
  const Level best = detect_level();
  const Level level = int(wanted) <= int(best) ? wanted : best;
  level_slot().store(int(level));
  return level;
}

// One kernel compiled for every level: Levels<Signature, impl>::pick(level) is the copy of
// `impl` (a ZM_INLINE function, so it inlines into each copy) built with that level's
// instructions. Kernels whose levels differ by more than their target take their own set.
template <class Signature, Signature* kImpl> struct Levels;
template <class R, class... Args, R (*kImpl)(Args...)> struct Levels<R(Args...), kImpl> {
  static R baseline(Args... args) { return kImpl(args...); }
#if ZMFAST_X86_DISPATCH
  ZM_TARGET_AVX2 static R avx2(Args... args) { return kImpl(args...); }
  ZM_TARGET_AVX512 static R avx512(Args... args) { return kImpl(args...); }
#endif
  static R (*pick(Level level))(Args...) {
#if ZMFAST_X86_DISPATCH
    if (level == Level::avx512) return avx512;
    if (level == Level::avx2) return avx2;
#endif
    (void)level;
    return baseline;
  }
};

}  // namespace zm
