// The per-pixel arithmetic of tinyfast::augment, written once for both kernels: the CPU kernel
// (augment.cpp) calls these inside its row loops, the CUDA kernel (augment_cuda.cu) per output
// pixel, so CPU CI executes the very float32 operations the GPU runs. Only what cannot be shared
// stays in the kernels: the CPU's row staging and vector conversions, the GPU's shared-memory
// staging, block reduction and 16-byte stores.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define TINYFAST_HD __host__ __device__ __forceinline__
#define TINYFAST_UNROLL _Pragma("unroll")
#else
#define TINYFAST_HD inline __attribute__((always_inline))
#define TINYFAST_UNROLL _Pragma("GCC unroll 5")
#endif

// benchmarks/sass_count.py builds with TINYFAST_SASS_PROBE to count the hot path's instructions:
// the conditions wrapped in these macros are then taken as true / false (never in the extension's
// build, where they are the conditions themselves).
#if defined(TINYFAST_SASS_PROBE)
#define TINYFAST_PROBE_TRUE(cond) (true)
#define TINYFAST_PROBE_FALSE(cond) (false)
#else
#define TINYFAST_PROBE_TRUE(cond) (cond)
#define TINYFAST_PROBE_FALSE(cond) (cond)
#endif

namespace tinyfast {

// ITU-R BT.601 luma weights: contrast mean and saturation grey level.
constexpr float kLumaR = 0.299f;
constexpr float kLumaG = 0.587f;
constexpr float kLumaB = 0.114f;

// Per-channel normalisation out = v * scale + shift, computed in float32 as
// scale = 1 / (255 * std), shift = -mean / std (see the docstring).
struct Norm {
  float scale[3];
  float shift[3];
  float std[3];  // for the per-pixel shift of a mean image
};

inline Norm make_norm(const float mean[3], const float std[3]) {
  Norm n;
  for (int c = 0; c < 3; ++c) {
    n.scale[c] = 1.0f / (255.0f * std[c]);
    n.shift[c] = -mean[c] / std[c];
    n.std[c] = std[c];
  }
  return n;
}

// One float32 multiply / add, each rounded to nearest even on its own. On the device the
// intrinsics are never contracted into an FMA nor approximated, whatever the flags; on the host
// setup.py builds with -ffp-contract=off (and nvcc with -fmad=false) for the same guarantee.
TINYFAST_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
TINYFAST_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// clamp(v, 0, 255) as two selects, NaN -> 0 (a comparison with NaN is false). These are the forms
// x86 maxps/minps implement exactly, so the CPU row loops vectorise.
TINYFAST_HD float clamp255(float v) {
  v = 0.f < v ? v : 0.f;
  return v < 255.f ? v : 255.f;
}

// Source coordinate of output column x in a row whose part t_y*y + t_c is `base` (computed once
// per row): sx = t_x*x + (t_y*y + t_c), each step rounded, in this order on both devices.
TINYFAST_HD float row_base(float t_y, float t_c, float y) { return fadd(fmul(t_y, y), t_c); }
TINYFAST_HD float coord(float t_x, float x, float base) { return fadd(fmul(t_x, x), base); }

// floor(x) and x - floor(x) for x in [-2, 2^23) (coordinates are clamped first). Both branches
// are exact, so they agree bit for bit: the GPU has a one-instruction floor, the CPU avoids a libm
// call per pixel on baseline x86-64 (x + 2 truncates like floor when it is >= 0).
TINYFAST_HD int floor_frac(float x, float& frac) {
#if defined(__CUDA_ARCH__)
  const float f = floorf(x);
  frac = x - f;
  return static_cast<int>(f);
#else
  int i = static_cast<int>(x + 2.f) - 2;
  frac = x - static_cast<float>(i);
  if (frac < 0.f) {  // x + 2 rounded up to the next integer
    i -= 1;
    frac = x - static_cast<float>(i);
  }
  return i;
#endif
}

// floor(x) and x - floor(x) for x in [0, 2^22] (a coordinate already known to be inside the
// image), exact like floor_frac, so the two agree bit for bit. The GPU adds 2^23 rounding down: the
// sum lies in [2^23, 2^24), where float32 holds exactly the integers, so it is floor(x) + 2^23, and
// its bits and a subtraction give both results with no conversion instruction (conversions run at
// a quarter of the float rate on sm_80/sm_90; the kernel was bound by them).
TINYFAST_HD int floor_frac_inside(float x, float& frac) {
#if defined(__CUDA_ARCH__)
  const float t = __fadd_rd(x, 8388608.f);
  const float f = __fsub_rn(t, 8388608.f);
  frac = __fsub_rn(x, f);
  return __float_as_int(t) - 0x4B000000;
#else
  const int i = static_cast<int>(x);  // truncation = floor for x >= 0
  frac = x - static_cast<float>(i);
  return i;
#endif
}

// Bilinear sample at (sx, sy) of an (h, w, 3) image (uint8, or its exact float copy), `fill`
// outside: the docstring's step 1. `Index` is the offset type (int on CUDA, where an image is
// < 2^31 bytes and < 2^22 pixels wide and high; int64_t on the CPU).
template <typename Index, typename src_t>
TINYFAST_HD void bilinear(const src_t* __restrict__ img, Index h, Index w, float fill, float sx,
                          float sy, float v[3]) {
  const Index row = w * 3;
  // All four taps inside: floor(sx) in [0, w-2] and floor(sy) in [0, h-2], i.e. sx in [0, w-1)
  // and sy in [0, h-1), tested on the floats (false for NaN). No clamp is needed there.
  if (TINYFAST_PROBE_TRUE(sx >= 0.f && sx < static_cast<float>(w - 1) && sy >= 0.f &&
                          sy < static_cast<float>(h - 1))) {
    float fx, fy;
    const int x0 = floor_frac_inside(sx, fx), y0 = floor_frac_inside(sy, fy);
    const float gx = 1.f - fx, gy = 1.f - fy;
    const float w00 = fmul(gx, gy), w01 = fmul(fx, gy), w10 = fmul(gx, fy), w11 = fmul(fx, fy);
    const src_t* p = img + (static_cast<Index>(y0) * w + x0) * 3;
    const src_t* q = p + row;
TINYFAST_UNROLL
    for (int c = 0; c < 3; ++c) {
      v[c] = fadd(fadd(fadd(fmul(w00, static_cast<float>(p[c])), fmul(w01, static_cast<float>(p[3 + c]))),
                       fmul(w10, static_cast<float>(q[c]))),
                  fmul(w11, static_cast<float>(q[3 + c])));
    }
    return;
  }
  // Clamp to [-2, W+1] x [-2, H+1] with NaN-safe selects (NaN -> -2: every tap is fill), so the
  // floor and the conversions to int only ever see small finite values. (A coordinate inside the
  // image is unchanged by the clamp, so both branches sample the same function.)
  const float xmax = static_cast<float>(w) + 1.f, ymax = static_cast<float>(h) + 1.f;
  sx = sx > -2.f ? sx : -2.f;
  sx = sx < xmax ? sx : xmax;
  sy = sy > -2.f ? sy : -2.f;
  sy = sy < ymax ? sy : ymax;
  float fx, fy;
  const int x0 = floor_frac(sx, fx), y0 = floor_frac(sy, fy);
  const float gx = 1.f - fx, gy = 1.f - fy;
  const float w00 = fmul(gx, gy), w01 = fmul(fx, gy), w10 = fmul(gx, fy), w11 = fmul(fx, fy);
  const bool ix0 = static_cast<unsigned>(x0) < static_cast<unsigned>(w);
  const bool ix1 = static_cast<unsigned>(x0 + 1) < static_cast<unsigned>(w);
  const bool iy0 = static_cast<unsigned>(y0) < static_cast<unsigned>(h);
  const bool iy1 = static_cast<unsigned>(y0 + 1) < static_cast<unsigned>(h);
  const Index base = (static_cast<Index>(y0) * w + x0) * 3;  // only dereferenced where the tap is inside
TINYFAST_UNROLL
  for (int c = 0; c < 3; ++c) {
    const float a = (iy0 && ix0) ? static_cast<float>(img[base + c]) : fill;
    const float b = (iy0 && ix1) ? static_cast<float>(img[base + 3 + c]) : fill;
    const float e = (iy1 && ix0) ? static_cast<float>(img[base + row + c]) : fill;
    const float f = (iy1 && ix1) ? static_cast<float>(img[base + row + 3 + c]) : fill;
    v[c] = fadd(fadd(fadd(fmul(w00, a), fmul(w01, b)), fmul(w10, e)), fmul(w11, f));
  }
}

// ITU-R 601 luminance, summed left to right.
TINYFAST_HD float luma(float r, float g, float b) {
  return fadd(fadd(fmul(kLumaR, r), fmul(kLumaG, g)), fmul(kLumaB, b));
}

// One channel's term of the contrast mean: weight * clamp(cb * x, 0, 255) (the docstring's m is
// the mean over the image of the sum of the three terms; only the summation order is per device).
// The contrast mean's summation order, the same on every device: the CUDA kernel's block of
// kMeanThreads threads, thread t summing pixels t, t + kMeanThreads, ... as float32 partial sums
// of at most kMeanChunk terms, each flushed to its float64 accumulator; the threads' values then
// folded in halves (warp butterflies, then the warps' values). augment.cpp's mean_luma follows it.
constexpr int kMeanThreads = 256;
constexpr int kMeanChunk = 64;

TINYFAST_HD float luma_term(float weight, float cb, float x) { return fmul(weight, clamp255(fmul(cb, x))); }

// The contrast offset (1 - cc) * m added to every channel.
TINYFAST_HD float contrast_offset(float cc, float m) { return fmul(1.f - cc, m); }

// Brightness, contrast (cm = contrast_offset), saturation on one pixel: steps 2-4. Branch-free.
TINYFAST_HD void colour(float cb, float cc, float cm, float cs, float& r, float& g, float& b) {
  r = clamp255(fmul(cb, r));
  g = clamp255(fmul(cb, g));
  b = clamp255(fmul(cb, b));
  r = clamp255(fadd(fmul(cc, r), cm));
  g = clamp255(fadd(fmul(cc, g), cm));
  b = clamp255(fadd(fmul(cc, b), cm));
  const float grey = fmul(1.f - cs, luma(r, g, b));
  r = clamp255(fadd(fmul(cs, r), grey));
  g = clamp255(fadd(fmul(cs, g), grey));
  b = clamp255(fadd(fmul(cs, b), grey));
}

TINYFAST_HD float fdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// The shift of mean-image zero-centering at one pixel and channel: -m / std, as the per-channel
// shift -mean / std is computed (make_norm), so a constant mean image equals the per-channel mean.
TINYFAST_HD float image_shift(float m, float std) { return -fdiv(m, std); }

// Step 5 before rounding: v * scale + shift, a float32 multiply then a float32 add, never fused.
TINYFAST_HD float normalise(float v, float scale, float shift) { return fadd(fmul(v, scale), shift); }

// ---- blur5: the second, small kernel (a 5x5 Gaussian needs a neighbourhood, so it cannot join
// the fused op's single pass) --------------------------------------------------------------------

// Reflect an index into [0, n) the way torch's "reflect" padding does (no edge repeat), for
// offsets of at most 2 past either end (n >= 3 is checked on the host).
TINYFAST_HD int reflect2(int i, int n) {
  i = i < 0 ? -i : i;
  return i < n ? i : 2 * (n - 1) - i;
}

// One output value of the separable 5-tap Gaussian with taps wt = (w0, w1, w2) for offsets
// 0, +-1, +-2: sum_j w|j| * (sum_i w|i| * v(y + j, x + i)), each sum left to right (i, j from -2
// to 2), reflect borders. `load(yy, xx)` returns the input value there as float (exact).
template <typename Load>
TINYFAST_HD float blur5(const Load& load, int h, int w, int y, int x, const float wt[3]) {
  float acc = 0.f;
TINYFAST_UNROLL
  for (int j = -2; j <= 2; ++j) {
    const int yy = reflect2(y + j, h);
    float row = 0.f;
TINYFAST_UNROLL
    for (int i = -2; i <= 2; ++i) row = fadd(row, fmul(wt[i < 0 ? -i : i], load(yy, reflect2(x + i, w))));
    acc = fadd(acc, fmul(wt[j < 0 ? -j : j], row));
  }
  return acc;
}

}  // namespace tinyfast
