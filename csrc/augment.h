// The torch op's side of tinyfast::augment, shared by its CPU (augment.cpp) and CUDA
// (augment_cuda.cu) registrations: tensor argument validation and the translation of a call into
// the raw KernelArgs of augment_kernels.h. The op's semantics are documented once, in the
// docstring of tinyfast.ops.augment; both kernels implement exactly that.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

#include <cstdint>

#include "augment_kernels.h"

namespace tinyfast {

// Sizes of one call, all validated.
struct AugmentDims {
  int64_t n;      // source rows
  int64_t h, w;   // source height, width
  int64_t batch;  // output rows (index length, or n)
  int64_t out_h, out_w;
};

// Validates every argument of the op (throws c10::ValueError -> Python ValueError with one line
// naming the argument); a CPU index is read to check its range.
AugmentDims check_augment_args(const at::Tensor& src, const std::optional<at::Tensor>& index,
                               const at::Tensor& theta, const at::Tensor& color,
                               c10::ArrayRef<double> mean, c10::ArrayRef<double> std,
                               int64_t out_h, int64_t out_w, double fill);

// Validates a caller-provided output: (B, 3, Ho, Wo) in channels-last layout, float16/bfloat16/
// float32, on src's device.
void check_out(const at::Tensor& out, const AugmentDims& d, const at::Tensor& src);

void check_out_dtype(c10::ScalarType dtype);

// Allocates the output: a contiguous (B, Ho, Wo, 3) buffer, returned as the (B, 3, Ho, Wo)
// channels-last view. An out_size that cannot be allocated is reported naming out_size.
at::Tensor alloc_out(const AugmentDims& d, c10::ScalarType dtype, const at::Tensor& src);

// The per-pixel shift of mean-image zero-centering, -m / std[c] in float32 (image_shift), on m's
// device (tinyfast::_mean_image_shift, CPU and CUDA kernels): computed once per call.
at::Tensor mean_image_shift(const at::Tensor& m, c10::ArrayRef<double> std);
at::Tensor mean_image_shift_cpu(const at::Tensor& m, c10::ArrayRef<double> std);  // its CPU kernel
// Both kernels' argument check (the op is reachable as torch.ops.tinyfast._mean_image_shift):
// m float32 (H, W, 3), std 3 values finite and non-zero in float32 (one-line ValueError otherwise).
// Returns m contiguous (the kernels index it as a dense (H, W, 3) buffer) and std as float32.
at::Tensor check_shift_args(const at::Tensor& m, c10::ArrayRef<double> std, float s[3]);

// The raw kernel arguments of one validated call, with the tensors they point into kept alive
// (theta/color/index made contiguous where the kernels need it; theta's (B, 2, 3) view of a
// (B, 9) block is passed as is, with its stride). Everything is validated (the raw kernels'
// limits too) before the output exists, so a call the kernel would refuse allocates nothing;
// `args.out` is set by the caller.
struct PreparedCall {
  at::Tensor theta, color, index, shift_image;
  KernelArgs args;
};
PreparedCall prepare_call(const at::Tensor& src, const std::optional<at::Tensor>& index,
                          const at::Tensor& theta, const at::Tensor& color,
                          c10::ArrayRef<double> mean, c10::ArrayRef<double> std, double fill,
                          const AugmentDims& d, c10::ScalarType out_dtype,
                          const std::optional<at::Tensor>& mean_image);

// What each backend registers: run the raw kernel of a prepared call on src's device.
using RunKernel = void (*)(const KernelArgs& args, const at::Tensor& src);

// The op's two entries (functional and out=) for a backend: validate, allocate or check the
// output, run. One definition for CPU and CUDA, registered as `&augment_entry<run>`.
template <RunKernel Run>
at::Tensor augment_entry(const at::Tensor& src, const std::optional<at::Tensor>& index,
                         const at::Tensor& theta, const at::Tensor& color,
                         c10::ArrayRef<double> mean, c10::ArrayRef<double> std, int64_t out_h,
                         int64_t out_w, c10::ScalarType dtype, double fill,
                         const std::optional<at::Tensor>& mean_image) {
  const AugmentDims d = check_augment_args(src, index, theta, color, mean, std, out_h, out_w, fill);
  check_out_dtype(dtype);
  PreparedCall call = prepare_call(src, index, theta, color, mean, std, fill, d, dtype, mean_image);
  at::Tensor out = alloc_out(d, dtype, src);
  call.args.out = out.data_ptr();
  Run(call.args, src);
  return out;
}

template <RunKernel Run>
void augment_out_entry(const at::Tensor& src, const std::optional<at::Tensor>& index,
                       const at::Tensor& theta, const at::Tensor& color,
                       c10::ArrayRef<double> mean, c10::ArrayRef<double> std, int64_t out_h,
                       int64_t out_w, double fill, const at::Tensor& out,
                       const std::optional<at::Tensor>& mean_image) {
  const AugmentDims d = check_augment_args(src, index, theta, color, mean, std, out_h, out_w, fill);
  check_out(out, d, src);
  PreparedCall call =
      prepare_call(src, index, theta, color, mean, std, fill, d, out.scalar_type(), mean_image);
  call.args.out = out.data_ptr();
  Run(call.args, src);
}

}  // namespace tinyfast
