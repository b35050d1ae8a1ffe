// Shared between the CPU (augment.cpp) and CUDA (augment_cuda.cu) kernels of tinyfast::augment:
// argument validation and the per-call constants. The op's semantics are documented once, in the
// docstring of tinyfast.ops.augment; both kernels implement exactly that.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

#include <cstdint>

namespace tinyfast {

// ITU-R BT.601 luma weights: contrast mean and saturation grey level.
constexpr float kLumaR = 0.299f;
constexpr float kLumaG = 0.587f;
constexpr float kLumaB = 0.114f;

// Sizes of one call, all validated.
struct AugmentDims {
  int64_t n;      // source rows
  int64_t h, w;   // source height, width
  int64_t batch;  // output rows (index length, or n)
  int64_t out_h, out_w;
};

// Per-channel normalisation out = v * scale + shift, computed in float32 as
// scale = 1 / (255 * std), shift = -mean / std (see the docstring).
struct Norm {
  float scale[3];
  float shift[3];
};

// Validates every argument of the op (throws c10::ValueError -> Python ValueError with one line
// naming the argument). `check_index_values` reads a CPU index to check its range.
AugmentDims check_augment_args(const at::Tensor& src, const std::optional<at::Tensor>& index,
                               const at::Tensor& theta, const at::Tensor& color,
                               c10::ArrayRef<double> mean, c10::ArrayRef<double> std,
                               int64_t out_h, int64_t out_w, double fill);

// Validates a caller-provided output: (B, 3, Ho, Wo) in channels-last layout, float16/bfloat16/
// float32, on src's device.
void check_out(const at::Tensor& out, const AugmentDims& d, const at::Tensor& src);

void check_out_dtype(c10::ScalarType dtype);

Norm make_norm(c10::ArrayRef<double> mean, c10::ArrayRef<double> std);

// Allocates the output: a contiguous (B, Ho, Wo, 3) buffer, returned as the (B, 3, Ho, Wo)
// channels-last view.
at::Tensor alloc_out(const AugmentDims& d, c10::ScalarType dtype, const at::Tensor& src);

// What each backend implements: write `out_nhwc` (a (B, Ho, Wo, 3) view of the output), every
// argument already validated.
using AugmentInto = void (*)(const at::Tensor& src, const std::optional<at::Tensor>& index,
                             const at::Tensor& theta, const at::Tensor& color, const Norm& norm,
                             float fill, const AugmentDims& d, const at::Tensor& out_nhwc);

// The op's two entries (functional and out=) for a backend's kernel: validate, allocate or check
// the output, run. One definition for CPU and CUDA, registered as `&augment_entry<kernel>`.
template <AugmentInto Into>
at::Tensor augment_entry(const at::Tensor& src, const std::optional<at::Tensor>& index,
                         const at::Tensor& theta, const at::Tensor& color,
                         c10::ArrayRef<double> mean, c10::ArrayRef<double> std, int64_t out_h,
                         int64_t out_w, c10::ScalarType dtype, double fill) {
  const AugmentDims d = check_augment_args(src, index, theta, color, mean, std, out_h, out_w, fill);
  at::Tensor out = alloc_out(d, dtype, src);
  Into(src, index, theta, color, make_norm(mean, std), static_cast<float>(fill), d,
       out.permute({0, 2, 3, 1}));
  return out;
}

template <AugmentInto Into>
void augment_out_entry(const at::Tensor& src, const std::optional<at::Tensor>& index,
                       const at::Tensor& theta, const at::Tensor& color,
                       c10::ArrayRef<double> mean, c10::ArrayRef<double> std, int64_t out_h,
                       int64_t out_w, double fill, const at::Tensor& out) {
  const AugmentDims d = check_augment_args(src, index, theta, color, mean, std, out_h, out_w, fill);
  check_out(out, d, src);
  Into(src, index, theta, color, make_norm(mean, std), static_cast<float>(fill), d,
       out.permute({0, 2, 3, 1}));
}

}  // namespace tinyfast
