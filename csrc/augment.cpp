// tinyfast::augment: schema, argument checks, the raw-pointer CPU kernel (augment_cpu_raw, see
// augment_kernels.h for its contract) and the op registrations that call it.
//
// Layout: src is uint8 (N, H, W, 3) contiguous (NHWC); the output is written as a contiguous
// (B, Ho, Wo, 3) buffer and returned as its (B, 3, Ho, Wo) permuted view, i.e. channels-last.
// The semantics are those of the docstring of tinyfast.ops.augment (the authority); the CPU kernel
// below is checked against an independent float64 PyTorch reference in tests/test_augment_op.py.
//
// CPU strategy: at::parallel_for over images (grain one image). Per image: the contrast mean
// (only when contrast != 1) in one vectorised pass over the bytes; the source converted once to a
// float copy that stays in L2; then per output row three stages: bilinear sampling into planar
// R, G, B rows (scalar gathers, coordinates advanced along the row, a branch-free interior path
// and a checked border path), the colour steps on the planar rows (vectorised), and the
// normalisation interleaved straight into the channels-last output row (float16 through F16C).
// Each output byte is written once, sequentially. The per-pixel arithmetic inside those loops is
// augment_pixel.h's, shared with the CUDA kernel.

#include <Python.h>

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "augment.h"
#include "augment_pixel.h"

extern "C" {
// The extension is imported as the Python module tinyfast._C; importing it runs the static
// registrations below. The module itself has no Python-visible members.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace tinyfast {

namespace {
const char* const kOp = "tinyfast.ops.augment: ";
// First row of a CPU float tensor (rows = dim 0) holding a non-finite value, as "[v0, v1, ...]".
bool finite_rows(const at::Tensor& t, int64_t& bad_row, std::string& values) {
  const at::Tensor f = t.reshape({t.size(0), -1});
  const auto acc = f.accessor<float, 2>();
  for (int64_t i = 0; i < f.size(0); ++i) {
    bool ok = true;
    for (int64_t j = 0; j < f.size(1); ++j) ok = ok && std::isfinite(acc[i][j]);
    if (!ok) {
      bad_row = i;
      std::ostringstream os;
      for (int64_t j = 0; j < f.size(1); ++j) os << (j ? ", " : "[") << acc[i][j];
      values = os.str() + "]";
      return false;
    }
  }
  return true;
}

// Host-resident parameters are free to check; a device tensor is not read (that would cost a
// sync per batch): there non-finite values give fill pixels or NaN, as documented.
void check_finite_params(const at::Tensor& theta, const at::Tensor& color) {
  int64_t bad = 0;
  std::string v;
  if (theta.device().is_cpu()) {
    TORCH_CHECK_VALUE(finite_rows(theta, bad, v), kOp, "theta[", bad,
                      "] has a non-finite value ", v, "; parameters must be finite");
  }
  if (color.device().is_cpu()) {
    TORCH_CHECK_VALUE(finite_rows(color, bad, v), kOp, "color[", bad,
                      "] has a non-finite value ", v, "; parameters must be finite");
  }
}
}  // namespace

void check_out_dtype(c10::ScalarType dtype) {
  TORCH_CHECK_VALUE(dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat, kOp,
                    "dtype must be float16, bfloat16 or float32, got ", dtype);
}

AugmentDims check_augment_args(const at::Tensor& src, const std::optional<at::Tensor>& index,
                               const at::Tensor& theta, const at::Tensor& color,
                               c10::ArrayRef<double> mean, c10::ArrayRef<double> std,
                               int64_t out_h, int64_t out_w, double fill) {
  TORCH_CHECK_VALUE(src.dim() == 4, kOp, "src must be uint8 (N, H, W, 3), got ", src.dim(),
                    " dimensions ", src.sizes());
  TORCH_CHECK_VALUE(src.scalar_type() == at::kByte, kOp, "src must be uint8, got ",
                    src.scalar_type());
  TORCH_CHECK_VALUE(src.size(3) == 3, kOp, "src must have 3 channels last (N, H, W, 3), got ",
                    src.sizes());
  TORCH_CHECK_VALUE(src.is_contiguous(), kOp,
                    "src must be contiguous (N, H, W, 3); call .contiguous() first");
  AugmentDims d{src.size(0), src.size(1), src.size(2), src.size(0), out_h, out_w};
  TORCH_CHECK_VALUE(d.n > 0 && d.h > 0 && d.w > 0, kOp, "src is empty: ", src.sizes());
  TORCH_CHECK_VALUE(out_h > 0 && out_w > 0, kOp, "out_size must be positive, got (", out_h, ", ",
                    out_w, ")");
  const auto dev = src.device();
  if (index.has_value() && index->defined()) {
    const at::Tensor& ix = *index;
    TORCH_CHECK_VALUE(ix.scalar_type() == at::kLong, kOp, "index must be int64, got ",
                      ix.scalar_type());
    TORCH_CHECK_VALUE(ix.dim() == 1, kOp, "index must be 1-D (B,), got shape ", ix.sizes());
    TORCH_CHECK_VALUE(ix.device() == dev, kOp, "index is on ", ix.device(), " but src is on ",
                      dev);
    d.batch = ix.size(0);
    if (ix.device().is_cpu()) {
      const at::Tensor c = ix.contiguous();
      const int64_t* p = c.data_ptr<int64_t>();
      for (int64_t i = 0; i < d.batch; ++i) {
        TORCH_CHECK_VALUE(p[i] >= 0 && p[i] < d.n, kOp, "index[", i, "] = ", p[i],
                          " is out of range for src with ", d.n, " rows");
      }
    }
  }
  TORCH_CHECK_VALUE(d.batch > 0, kOp, "empty batch (B = 0)");
  TORCH_CHECK_VALUE(theta.scalar_type() == at::kFloat, kOp, "theta must be float32, got ",
                    theta.scalar_type());
  TORCH_CHECK_VALUE(theta.dim() == 3 && theta.size(0) == d.batch && theta.size(1) == 2 &&
                        theta.size(2) == 3,
                    kOp, "theta must be (B, 2, 3) with B = ", d.batch, ", got ", theta.sizes());
  TORCH_CHECK_VALUE(color.scalar_type() == at::kFloat, kOp, "color must be float32, got ",
                    color.scalar_type());
  TORCH_CHECK_VALUE(color.dim() == 2 && color.size(0) == d.batch && color.size(1) == 3, kOp,
                    "color must be (B, 3) with B = ", d.batch, ", got ", color.sizes());
  TORCH_CHECK_VALUE(theta.device() == dev, kOp, "theta is on ", theta.device(),
                    " but src is on ", dev);
  TORCH_CHECK_VALUE(color.device() == dev, kOp, "color is on ", color.device(),
                    " but src is on ", dev);
  check_finite_params(theta, color);
  TORCH_CHECK_VALUE(mean.size() == 3 && std.size() == 3, kOp,
                    "mean and std must have 3 values, got ", mean.size(), " and ", std.size());
  for (int c = 0; c < 3; ++c) {
    TORCH_CHECK_VALUE(std::isfinite(mean[c]) && std::isfinite(std[c]) && std[c] != 0.0, kOp,
                      "mean/std must be finite and std non-zero, got mean ", mean, " std ", std);
  }
  TORCH_CHECK_VALUE(std::isfinite(fill) && fill >= 0.0 && fill <= 255.0, kOp,
                    "fill must be in [0, 255] (pixel units), got ", fill);
  return d;
}

void check_out(const at::Tensor& out, const AugmentDims& d, const at::Tensor& src) {
  check_out_dtype(out.scalar_type());
  TORCH_CHECK_VALUE(out.device() == src.device(), kOp, "out is on ", out.device(),
                    " but src is on ", src.device());
  TORCH_CHECK_VALUE(out.dim() == 4 && out.size(0) == d.batch && out.size(1) == 3 &&
                        out.size(2) == d.out_h && out.size(3) == d.out_w,
                    kOp, "out must be (", d.batch, ", 3, ", d.out_h, ", ", d.out_w, "), got ",
                    out.sizes());
  TORCH_CHECK_VALUE(out.permute({0, 2, 3, 1}).is_contiguous(), kOp,
                    "out must be channels-last: a (B, 3, Ho, Wo) view of a contiguous "
                    "(B, Ho, Wo, 3) buffer");
}

at::Tensor alloc_out(const AugmentDims& d, c10::ScalarType dtype, const at::Tensor& src) {
  check_out_dtype(dtype);
  int64_t elems = 0, bytes = 0;
  const int64_t elt = static_cast<int64_t>(c10::elementSize(dtype));
  TORCH_CHECK_VALUE(!__builtin_mul_overflow(d.batch * 3, d.out_h, &elems) &&
                        !__builtin_mul_overflow(elems, d.out_w, &elems) &&
                        !__builtin_mul_overflow(elems, elt, &bytes),
                    kOp, "out_size (", d.out_h, ", ", d.out_w, ") is too large: ", d.batch,
                    " images of that size overflow a 64-bit byte count");
  try {
    return at::empty({d.batch, d.out_h, d.out_w, 3}, src.options().dtype(dtype))
        .permute({0, 3, 1, 2});
  } catch (const c10::OutOfMemoryError& e) {
    TORCH_CHECK_WITH(OutOfMemoryError, false, kOp, "out_size (", d.out_h, ", ", d.out_w,
                     ") needs ", bytes, " bytes for ", d.batch, " images on ", src.device(),
                     ", which could not be allocated");
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, kOp, "out_size (", d.out_h, ", ", d.out_w, ") needs ", bytes, " bytes for ",
                d.batch, " images on ", src.device(), ", which could not be allocated");
  }
}


namespace {
// augment_args_error() less the check of `out`, so a call is validated before its output exists.
std::string args_error_before_out(const KernelArgs& a, bool cuda) {
  auto mul_ok = [](int64_t x, int64_t y, int64_t z, int64_t limit) {
    int64_t r = 0;
    return x > 0 && y > 0 && z > 0 && !__builtin_mul_overflow(x, y, &r) &&
           !__builtin_mul_overflow(r, z, &r) && r < limit;
  };
  constexpr int64_t kBig = int64_t{1} << 62;
  if (!a.src || !a.theta || !a.color) return "src, theta and color must be non-null";
  if (a.n <= 0 || a.h <= 0 || a.w <= 0) return "src is empty (n, h and w must be positive)";
  if (a.batch <= 0) return "empty batch (B = 0)";
  if (!a.index && a.batch > a.n) return "batch exceeds n and there is no index";
  if (a.out_h <= 0 || a.out_w <= 0) return "out_size must be positive";
  if (!mul_ok(a.h, a.w, 3, kBig)) return "src images are too large: h * w * 3 overflows 64-bit offsets";
  if (!mul_ok(a.batch, a.out_h, a.out_w, kBig / 3))
    return "out_size (" + std::to_string(a.out_h) + ", " + std::to_string(a.out_w) +
           ") is too large: batch * out_h * out_w * 3 overflows 64-bit offsets";
  if (a.theta_stride0 != 0 && a.theta_stride0 < 6) return "theta_stride0 must be 0 or >= 6";
  if (a.color_stride0 != 0 && a.color_stride0 < 3) return "color_stride0 must be 0 or >= 3";
  if (a.out_dtype < kOutFloat32 || a.out_dtype > kOutBFloat16)
    return "out_dtype must be 0 (float32), 1 (float16) or 2 (bfloat16)";
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite(a.mean[c]) || !std::isfinite(a.std[c]) || a.std[c] == 0.f)
      return "mean/std must be finite and std non-zero";
  }
  if (!(a.fill >= 0.f && a.fill <= 255.f)) return "fill must be in [0, 255] (pixel units)";
  // The inside-the-image floor (augment_pixel.h floor_frac_inside) is exact up to 2^22.
  if (a.h > (int64_t{1} << 22) || a.w > (int64_t{1} << 22))
    return "source images more than 2^22 pixels high or wide are not supported";
  if (cuda) {
    if (a.batch > 0x7fffffff) return "batch too large for one CUDA launch (at most 2^31 - 1)";
    if (!mul_ok(a.h, a.w, 3, int64_t{1} << 31) || !mul_ok(a.out_h, a.out_w, 3, int64_t{1} << 31))
      return "images of 2^31 bytes or more are not supported on CUDA";
  }
  return "";
}
}  // namespace

std::string augment_args_error(const KernelArgs& a, bool cuda) {
  if (!a.out) return "out must be non-null";
  return args_error_before_out(a, cuda);
}

namespace {
at::Tensor check_mean_image(const at::Tensor& m, const AugmentDims& d, const at::Tensor& src) {
  TORCH_CHECK_VALUE(m.scalar_type() == at::kFloat, kOp, "mean_image must be float32, got ",
                    m.scalar_type());
  TORCH_CHECK_VALUE(m.dim() == 3 && m.size(0) == d.out_h && m.size(1) == d.out_w && m.size(2) == 3,
                    kOp, "mean_image must be (", d.out_h, ", ", d.out_w, ", 3) (the output size, "
                    "channels last), got ", m.sizes());
  TORCH_CHECK_VALUE(m.device() == src.device(), kOp, "mean_image is on ", m.device(),
                    " but src is on ", src.device());
  const at::Tensor c = m.contiguous();
  if (c.device().is_cpu()) {  // free on the host; a device image is not read back (no sync)
    const float* p = c.data_ptr<float>();
    for (int64_t i = 0; i < c.numel(); ++i) {
      TORCH_CHECK_VALUE(std::isfinite(p[i]), kOp, "mean_image has a non-finite value at element ", i);
    }
  }
  return c;
}
}  // namespace

PreparedCall prepare_call(const at::Tensor& src, const std::optional<at::Tensor>& index,
                          const at::Tensor& theta, const at::Tensor& color,
                          c10::ArrayRef<double> mean, c10::ArrayRef<double> std, double fill,
                          const AugmentDims& d, c10::ScalarType dt,
                          const std::optional<at::Tensor>& mean_image) {
  PreparedCall c;
  // Samples may be any (non-overlapping) stride apart; inside one the values must be dense.
  const bool theta_ok = theta.stride(2) == 1 && theta.stride(1) == 3 &&
                        (d.batch == 1 || theta.stride(0) == 0 || theta.stride(0) >= 6);
  c.theta = theta_ok ? theta : theta.contiguous();
  const bool color_ok =
      color.stride(1) == 1 && (d.batch == 1 || color.stride(0) == 0 || color.stride(0) >= 3);
  c.color = color_ok ? color : color.contiguous();
  if (index.has_value() && index->defined()) c.index = index->contiguous();
  KernelArgs& a = c.args;
  a.src = src.data_ptr<uint8_t>();
  a.n = d.n;
  a.h = d.h;
  a.w = d.w;
  a.index = c.index.defined() ? c.index.data_ptr<int64_t>() : nullptr;
  a.batch = d.batch;
  a.theta = c.theta.data_ptr<float>();
  a.theta_stride0 = d.batch == 1 ? 6 : c.theta.stride(0);
  a.color = c.color.data_ptr<float>();
  a.color_stride0 = d.batch == 1 ? 3 : c.color.stride(0);
  for (int k = 0; k < 3; ++k) {
    a.mean[k] = static_cast<float>(mean[k]);
    a.std[k] = static_cast<float>(std[k]);
  }
  a.fill = static_cast<float>(fill);
  a.out_h = d.out_h;
  a.out_w = d.out_w;
  a.out = nullptr;  // set once allocated (or checked)
  a.mean_image = nullptr;
  if (mean_image.has_value() && mean_image->defined()) {
    c.mean_image = check_mean_image(*mean_image, d, src);
    a.mean_image = c.mean_image.data_ptr<float>();
  }
  a.out_dtype = dt == at::kFloat ? kOutFloat32 : (dt == at::kHalf ? kOutFloat16 : kOutBFloat16);
  const std::string err = args_error_before_out(a, src.is_cuda());
  TORCH_CHECK_VALUE(err.empty(), kOp, err);
  return c;
}

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

// Mean over the image of lum(clamp(cb * pixel, 0, 255)). The bytes are walked contiguously in
// blocks of 24 (a multiple of both the 3 channels and 8 SIMD lanes) into 24 partial sums, which
// the compiler vectorises without reassociation flags.
TINYFAST_MULTIVERSION float mean_luma(const uint8_t* __restrict img, int64_t n_bytes, float cb) {
  constexpr int kBlock = 24;
  static constexpr float kW[kBlock] = {kLumaR, kLumaG, kLumaB, kLumaR, kLumaG, kLumaB,
                                       kLumaR, kLumaG, kLumaB, kLumaR, kLumaG, kLumaB,
                                       kLumaR, kLumaG, kLumaB, kLumaR, kLumaG, kLumaB,
                                       kLumaR, kLumaG, kLumaB, kLumaR, kLumaG, kLumaB};
  float acc[kBlock] = {};
  double total = 0.0;
  int64_t k = 0, since_flush = 0;
  for (; k + kBlock <= n_bytes; k += kBlock) {
    for (int j = 0; j < kBlock; ++j) acc[j] = fadd(acc[j], luma_term(kW[j], cb, static_cast<float>(img[k + j])));
    // Flush to double now and then so float partial sums never grow past ~2^20.
    if (++since_flush == 4096) {
      for (int j = 0; j < kBlock; ++j) total += acc[j], acc[j] = 0.f;
      since_flush = 0;
    }
  }
  for (int j = 0; j < kBlock; ++j) total += acc[j];
  for (; k < n_bytes; ++k) total += luma_term(kW[k % 3], cb, static_cast<float>(img[k]));
  return static_cast<float>(total / static_cast<double>(n_bytes / 3));
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

// Normalised and interleaved to channels-last; `mrow` is the row of a mean image, or null for the
// per-channel shifts.
TINYFAST_MULTIVERSION void normalise_row(int64_t n, const Norm& nm, const float* __restrict mrow,
                                         const float* __restrict R, const float* __restrict G,
                                         const float* __restrict B, float* __restrict out) {
  const float s0 = nm.scale[0], s1 = nm.scale[1], s2 = nm.scale[2];
  if (mrow) {
    const float d0 = nm.std[0], d1 = nm.std[1], d2 = nm.std[2];
    for (int64_t i = 0; i < n; ++i) {
      out[3 * i] = normalise(R[i], s0, image_shift(mrow[3 * i], d0));
      out[3 * i + 1] = normalise(G[i], s1, image_shift(mrow[3 * i + 1], d1));
      out[3 * i + 2] = normalise(B[i], s2, image_shift(mrow[3 * i + 2], d2));
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
                   const float* mean_image, float fill, int64_t h, int64_t w, int64_t out_h,
                   int64_t out_w, scalar_t* out, float* scratch) {
  const float t00 = th[0], t01 = th[1], t02 = th[2];
  const float t10 = th[3], t11 = th[4], t12 = th[5];
  const float cb = col[0], cc = col[1], cs = col[2];
  // With factors of exactly 1 the colour steps are exact no-ops: skipping them changes no bit.
  const bool colour = !(cb == 1.f && cc == 1.f && cs == 1.f);
  const float cm = cc != 1.f ? contrast_offset(cc, mean_luma(img, h * w * 3, cb)) : 0.f;
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
    const float* shift = mean_image ? mean_image + oy * out_w * 3 : nullptr;
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
                              a.color + b * a.color_stride0, norm, a.mean_image, a.fill, a.h, a.w,
                              a.out_h,
                              a.out_w, o, scratch.data());
    }
  });
}

// The op's CPU registration: src is only needed by the CUDA side (device guard, stream).
void run_cpu(const KernelArgs& a, const at::Tensor&) { augment_cpu_raw(a); }

}  // namespace

void augment_cpu_raw(const KernelArgs& a) {
  const std::string err = augment_args_error(a, false);
  if (!err.empty()) throw std::invalid_argument("tinyfast augment: " + err);
  switch (a.out_dtype) {
    case kOutFloat32: return augment_cpu_typed<float>(a);
    case kOutFloat16: return augment_cpu_typed<c10::Half>(a);
    default: return augment_cpu_typed<c10::BFloat16>(a);
  }
}

TORCH_LIBRARY(tinyfast, m) {
  m.def(
      "augment(Tensor src, Tensor? index, Tensor theta, Tensor color, float[] mean, float[] std, "
      "int out_h, int out_w, ScalarType dtype, float fill, Tensor? mean_image=None) -> Tensor");
  m.def(
      "augment_out(Tensor src, Tensor? index, Tensor theta, Tensor color, float[] mean, "
      "float[] std, int out_h, int out_w, float fill, Tensor(a!) out, Tensor? mean_image=None) -> ()");
}

TORCH_LIBRARY_IMPL(tinyfast, CPU, m) {
  m.impl("augment", &tinyfast::augment_entry<run_cpu>);
  m.impl("augment_out", &tinyfast::augment_out_entry<run_cpu>);
}

}  // namespace tinyfast
