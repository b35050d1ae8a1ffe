// tinyfast::augment: schema, argument checks, the translation of a call into the raw kernel
// arguments (augment_kernels.h) and the op registrations that call the kernels.
//
// Layout: src is uint8 (N, H, W, 3) contiguous (NHWC); the output is written as a contiguous
// (B, Ho, Wo, 3) buffer and returned as its (B, 3, Ho, Wo) permuted view, i.e. channels-last.
// The semantics are those of the docstring of tinyfast.ops.augment (the authority); the CPU kernel
// (augment_cpu.cpp) is checked against an independent float64 PyTorch reference in tests/test_augment_op.py.

#include <Python.h>

#include <ATen/core/dispatch/Dispatcher.h>
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
  a.shift_image = nullptr;
  a.out_dtype = dt == at::kFloat ? kOutFloat32 : (dt == at::kHalf ? kOutFloat16 : kOutBFloat16);
  // The kernels' own limits first: a refused call allocates (and launches) nothing, and reports
  // std as this op (not as the shift's internal op) when it is 0 in float32.
  const std::string err = args_error_before_out(a, src.is_cuda());
  TORCH_CHECK_VALUE(err.empty(), kOp, err);
  if (mean_image.has_value() && mean_image->defined()) {
    // The per-pixel shift -mean_image / std once per call (on src's device, on its stream), so
    // the kernels add it instead of dividing for every image of the batch.
    c.shift_image = mean_image_shift(check_mean_image(*mean_image, d, src), std);
    a.shift_image = c.shift_image.data_ptr<float>();
  }
  return c;
}

namespace {

// The op's CPU registration: src is only needed by the CUDA side (device guard, stream).
void run_cpu(const KernelArgs& a, const at::Tensor&) { augment_cpu_raw(a); }

}  // namespace

at::Tensor check_shift_args(const at::Tensor& m, c10::ArrayRef<double> std, float s[3]) {
  const char* const op = "tinyfast._mean_image_shift: ";
  TORCH_CHECK_VALUE(m.scalar_type() == at::kFloat && m.dim() == 3 && m.size(2) == 3, op,
                    "mean_image must be float32 (H, W, 3), got ", m.scalar_type(), " ", m.sizes());
  bool ok = std.size() == 3;
  for (size_t c = 0; ok && c < 3; ++c) {
    s[c] = static_cast<float>(std[c]);
    ok = std::isfinite(s[c]) && s[c] != 0.f;
  }
  TORCH_CHECK_VALUE(ok, op, "std must be 3 finite non-zero values (in float32), got ", std);
  return m.contiguous();
}

at::Tensor mean_image_shift(const at::Tensor& m, c10::ArrayRef<double> std) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tinyfast::_mean_image_shift", "")
                             .typed<at::Tensor(const at::Tensor&, c10::ArrayRef<double>)>();
  return op.call(m, std);
}

TORCH_LIBRARY(tinyfast, m) {
  m.def(
      "augment(Tensor src, Tensor? index, Tensor theta, Tensor color, float[] mean, float[] std, "
      "int out_h, int out_w, ScalarType dtype, float fill, Tensor? mean_image=None) -> Tensor");
  m.def(
      "augment_out(Tensor src, Tensor? index, Tensor theta, Tensor color, float[] mean, "
      "float[] std, int out_h, int out_w, float fill, Tensor(a!) out, Tensor? mean_image=None) -> ()");
  // Internal: the mean image's per-pixel shift -mean_image / std (float32 (Ho, Wo, 3), checked).
  m.def("_mean_image_shift(Tensor mean_image, float[] std) -> Tensor");
}

TORCH_LIBRARY_IMPL(tinyfast, CPU, m) {
  m.impl("augment", &tinyfast::augment_entry<run_cpu>);
  m.impl("augment_out", &tinyfast::augment_out_entry<run_cpu>);
  m.impl("_mean_image_shift", &mean_image_shift_cpu);
}

}  // namespace tinyfast
