// tinyfast::augment's CPU kernel: augment_cpu_raw (the raw-pointer contract of
// augment_kernels.h) and the mean image's shift; argument checks and the op registrations are in
// augment.cpp.
//
// CPU strategy: at::parallel_for over images (grain one image). Per image: the contrast mean
// (only when contrast != 1) in one pass, in the CUDA reduction's order (so CPU == CUDA); the
// source converted once to a float copy that stays in L2; then per output row three stages: bilinear sampling into planar
// R, G, B rows (scalar gathers, coordinates advanced along the row, a branch-free interior path
// and a checked border path), the colour steps on the planar rows (vectorised), and the
// normalisation interleaved straight into the channels-last output row (float16 through F16C).
// Each output byte is written once, sequentially. The per-pixel arithmetic inside those loops is
// augment_pixel.h's, shared with the CUDA kernel.

#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "augment.h"
#include "augment_pixel.h"

namespace tinyfast {

namespace {

// Element-wise loops are compiled twice, for AVX2 and for baseline x86-64, and picked at load
// time (GCC function multi-versioning): ~2x on the colour steps, no -march flag needed.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TINYFAST_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define TINYFAST_MULTIVERSION
#endif

// ---- float32 -> float16 rows ---------------------------------------------------------------
// c10::Half's portable conversion costs ~10 ns per element; F16C (every x86-64 CPU since 2012)
// converts 8 at a time with the same round-to-nearest-even result. Chosen at run time, so the
// build needs no -march flag.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx,f16c"))) void f32_to_f16_f16c(const float* in, c10::Half* out,
                                                          int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  for (; i < n; ++i) out[i] = c10::Half(in[i]);
}
bool has_f16c() {
  static const bool ok = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return ok;
}
#else
void f32_to_f16_f16c(const float*, c10::Half*, int64_t) {}
bool has_f16c() { return false; }
#endif

// Mean over the image of lum(clamp(cb * pixel, 0, 255)), summed in the CUDA kernel's order
// (augment_pixel.h, kMeanThreads): "thread" t's float partial sums run down column t of the image
// seen as rows of kMeanThreads pixels, so one row updates all partials at once (it vectorises).
TINYFAST_MULTIVERSION float mean_luma(const uint8_t* __restrict img, int64_t hw, float cb) {
  constexpr int T = kMeanThreads;
  float part[T];
  double acc[T];
  for (int t = 0; t < T; ++t) acc[t] = 0.0;
  const int64_t rows = (hw + T - 1) / T;
  for (int64_t r0 = 0; r0 < rows; r0 += kMeanChunk) {
    for (int t = 0; t < T; ++t) part[t] = 0.f;
    const int64_t r1 = std::min<int64_t>(rows, r0 + kMeanChunk);
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* q = img + 3 * r * T;
      const int n = static_cast<int>(std::min<int64_t>(T, hw - r * T));
      for (int t = 0; t < n; ++t) {
        const float lum = fadd(fadd(luma_term(kLumaR, cb, static_cast<float>(q[3 * t])),
                                    luma_term(kLumaG, cb, static_cast<float>(q[3 * t + 1]))),
                               luma_term(kLumaB, cb, static_cast<float>(q[3 * t + 2])));
        part[t] = fadd(part[t], lum);
      }
    }
    for (int t = 0; t < T; ++t) acc[t] += static_cast<double>(part[t]);  // + 0.0 where t had none
  }
  // The block tree: each warp of 32 folded in halves (the xor butterfly), then the warps' values.
  double red[T / 32];
  for (int wp = 0; wp < T / 32; ++wp) {
    double* v = acc + 32 * wp;
    for (int half = 16; half > 0; half >>= 1)
      for (int l = 0; l < half; ++l) v[l] += v[l + half];
    red[wp] = v[0];
  }
  for (int half = T / 64; half > 0; half >>= 1)
    for (int l = 0; l < half; ++l) red[l] += red[l + half];
  return static_cast<float>(red[0] / static_cast<double>(hw));
}

// Bilinear samples of one output row into planar R, G, B buffers (the scalar, gather-bound part).
// `img` is the source as uint8, or as a float copy (exact: every uint8 is a float), which saves
// twelve int-to-float conversions per output pixel.
template <typename src_t>
void sample_row(const src_t* __restrict img, int64_t h, int64_t w, float fill, float t00,
                float t10, float bx, float by, int64_t n, float* __restrict R,
                float* __restrict G, float* __restrict B) {
  for (int64_t ox = 0; ox < n; ++ox) {
    const float x = static_cast<float>(ox);
    float v[3];
    bilinear<int64_t>(img, h, w, fill, coord(t00, x, bx), coord(t10, x, by), v);
    R[ox] = v[0];
    G[ox] = v[1];
    B[ox] = v[2];
  }
}

// Brightness, contrast, saturation on planar buffers: branch-free, so it vectorises.
TINYFAST_MULTIVERSION void colour_row(int64_t n, float cb, float cc, float cm, float cs,
                                      float* __restrict R, float* __restrict G,
                                      float* __restrict B) {
  for (int64_t i = 0; i < n; ++i) colour(cb, cc, cm, cs, R[i], G[i], B[i]);
}

// Normalised and interleaved to channels-last; `srow` is the row of a shift image (the mean
// image's -mean / std, precomputed), or null for the per-channel shifts.
TINYFAST_MULTIVERSION void normalise_row(int64_t n, const Norm& nm, const float* __restrict srow,
                                         const float* __restrict R, const float* __restrict G,
                                         const float* __restrict B, float* __restrict out) {
  const float s0 = nm.scale[0], s1 = nm.scale[1], s2 = nm.scale[2];
  if (srow) {
    for (int64_t i = 0; i < n; ++i) {
      out[3 * i] = normalise(R[i], s0, srow[3 * i]);
      out[3 * i + 1] = normalise(G[i], s1, srow[3 * i + 1]);
      out[3 * i + 2] = normalise(B[i], s2, srow[3 * i + 2]);
    }
    return;
  }
  const float t0 = nm.shift[0], t1 = nm.shift[1], t2 = nm.shift[2];
  for (int64_t i = 0; i < n; ++i) {
    out[3 * i] = normalise(R[i], s0, t0);
    out[3 * i + 1] = normalise(G[i], s1, t1);
    out[3 * i + 2] = normalise(B[i], s2, t2);
  }
}

template <typename scalar_t>
void store_row(const float* in, scalar_t* out, int64_t n) {
  if constexpr (std::is_same_v<scalar_t, c10::Half>) {
    if (has_f16c()) return f32_to_f16_f16c(in, out, n);
  }
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<scalar_t>(in[i]);
}

TINYFAST_MULTIVERSION void to_float(const uint8_t* __restrict in, float* __restrict out, int64_t n) {
  for (int64_t k = 0; k < n; ++k) out[k] = static_cast<float>(in[k]);
}

// Sources up to this many bytes are converted to float once per image before sampling (the
// float copy, 4x the bytes, stays in L2); larger ones are sampled from the uint8 bytes directly.
constexpr int64_t kFloatCopyMaxBytes = 128 * 128 * 3;

size_t scratch_floats(const KernelArgs& d) {
  const int64_t img = d.h * d.w * 3;
  return static_cast<size_t>(6 * d.out_w + (img <= kFloatCopyMaxBytes ? img : 0));
}

// One image. `scratch` holds scratch_floats() floats: planar R, G, B rows, one interleaved row,
// then the float copy of the source.
template <typename scalar_t>
void augment_image(const uint8_t* img, const float* th, const float* col, const Norm& norm,
                   const float* shift_image, float fill, int64_t h, int64_t w, int64_t out_h,
                   int64_t out_w, scalar_t* out, float* scratch) {
  const float t00 = th[0], t01 = th[1], t02 = th[2];
  const float t10 = th[3], t11 = th[4], t12 = th[5];
  const float cb = col[0], cc = col[1], cs = col[2];
  // With factors of exactly 1 the colour steps are exact no-ops: skipping them changes no bit.
  const bool colour = !(cb == 1.f && cc == 1.f && cs == 1.f);
  const float cm = cc != 1.f ? contrast_offset(cc, mean_luma(img, h * w, cb)) : 0.f;
  float* R = scratch;
  float* G = R + out_w;
  float* B = G + out_w;
  float* row = B + out_w;
  const int64_t img_bytes = h * w * 3;
  float* fimg = row + 3 * out_w;
  const bool use_float = img_bytes <= kFloatCopyMaxBytes;
  if (use_float) to_float(img, fimg, img_bytes);
  for (int64_t oy = 0; oy < out_h; ++oy) {
    const float y = static_cast<float>(oy);
    const float bx = row_base(t01, t02, y), by = row_base(t11, t12, y);
    if (use_float) {
      sample_row(fimg, h, w, fill, t00, t10, bx, by, out_w, R, G, B);
    } else {
      sample_row(img, h, w, fill, t00, t10, bx, by, out_w, R, G, B);
    }
    if (colour) colour_row(out_w, cb, cc, cm, cs, R, G, B);
    scalar_t* o = out + oy * out_w * 3;
    const float* shift = shift_image ? shift_image + oy * out_w * 3 : nullptr;
    if constexpr (std::is_same_v<scalar_t, float>) {
      normalise_row(out_w, norm, shift, R, G, B, o);
    } else {
      normalise_row(out_w, norm, shift, R, G, B, row);
      store_row(row, o, out_w * 3);
    }
  }
}

template <typename scalar_t>
void augment_cpu_typed(const KernelArgs& a) {
  const Norm norm = make_norm(a.mean, a.std);
  const int64_t img_elems = a.h * a.w * 3, out_elems = a.out_h * a.out_w * 3;
  scalar_t* op = static_cast<scalar_t*>(a.out);
  // One image is tens of microseconds of work: grain 1 image.
  at::parallel_for(0, a.batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(scratch_floats(a));
    for (int64_t b = begin; b < end; ++b) {
      const int64_t r = a.index ? a.index[b] : b;
      scalar_t* o = op + b * out_elems;
      if (r < 0 || r >= a.n) {  // never read outside src (the torch op has checked already)
        std::fill(o, o + out_elems, static_cast<scalar_t>(std::numeric_limits<float>::quiet_NaN()));
        continue;
      }
      augment_image<scalar_t>(a.src + r * img_elems, a.theta + b * a.theta_stride0,
                              a.color + b * a.color_stride0, norm, a.shift_image, a.fill, a.h, a.w,
                              a.out_h,
                              a.out_w, o, scratch.data());
    }
  });
}

}  // namespace

at::Tensor mean_image_shift_cpu(const at::Tensor& m_any, c10::ArrayRef<double> std) {
  float s[3];
  const at::Tensor m = check_shift_args(m_any, std, s);
  at::Tensor out = at::empty_like(m);
  const float* in = m.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t i = 0, n = m.numel(); i < n; ++i) o[i] = image_shift(in[i], s[i % 3]);
  return out;
}

void augment_cpu_raw(const KernelArgs& a) {
  const std::string err = augment_args_error(a, false);
  if (!err.empty()) throw std::invalid_argument("tinyfast augment: " + err);
  switch (a.out_dtype) {
    case kOutFloat32: return augment_cpu_typed<float>(a);
    case kOutFloat16: return augment_cpu_typed<c10::Half>(a);
    default: return augment_cpu_typed<c10::BFloat16>(a);
  }
}

}  // namespace tinyfast
