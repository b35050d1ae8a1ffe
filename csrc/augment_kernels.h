// tinyfast::augment as raw-pointer kernels: the one implementation behind
// torch.ops.tinyfast.augment, callable without ATen (e.g. from a DALI plugin operator that links
// against tinyfast/_C*.so). This header includes no ATen, c10 or CUDA header.
//
// Contract (the semantics are those of the docstring of tinyfast.ops.augment, bit for bit):
//   src     uint8 images, (n, h, w, 3) contiguous (NHWC). Image r starts at src + r*h*w*3.
//   index   int64 (batch,) contiguous, or nullptr: output image b reads src image index[b]
//           (nullptr: image b, and then batch <= n). An index outside [0, n) is never followed:
//           that output image is written as NaN (both kernels).
//   theta   float32, per sample the 2x3 inverse affine map, row-major: sample b's six values are
//           theta[b*theta_stride0 + 0..5] (theta_stride0 >= 6, or 0 to share one map; the loaders
//           pass the (B, 2, 3) view of a (B, 9) block, stride 9).
//   color   float32, per sample (brightness, contrast, saturation) at color[b*color_stride0 + 0..2]
//           (color_stride0 >= 3, or 0).
//   mean, std  per-channel statistics in [0, 1] units (finite, std != 0); the kernels use
//           scale = 1 / (255 * std) and shift = -mean / std, computed in float32.
//   fill    value in [0, 255] of source pixels outside the image.
//   shift_image  nullptr, or float32 (out_h, out_w, 3) contiguous: mean-image zero-centering,
//           the per-pixel shift -mean_image[y, x, c] / std[c] (image_shift of augment_pixel.h)
//           replacing -mean[c] / std[c]. Precomputed once per call (the op does it with
//           tinyfast::_mean_image_shift), so the kernels add it and never divide per pixel.
//           Appended last, so a value-initialised KernelArgs{} has none.
//   out     (batch, out_h, out_w, 3) contiguous, element type out_dtype; every element written.
//           Any alignment (16-byte aligned outputs take the vector-store path on CUDA).
//   Non-finite theta or color values are not rejected here (the torch op rejects them when they
//   are on the host); they give fill pixels or NaN, never an out-of-bounds read.
// Pointers are host pointers for augment_cpu_raw and device pointers of the current CUDA device
// for augment_cuda_raw, which enqueues one kernel on `stream` (a cudaStream_t; nullptr: the
// legacy default stream) and returns without synchronising.
// Errors: augment_args_error() returns the first violated condition as one line ("" when the
// arguments are valid); both entry points call it and throw std::invalid_argument with that line.
// A CUDA launch failure throws std::runtime_error.
//
// Tested through the op: tests/test_augment_op.py (CPU) and tests/test_augment_cuda.py (CUDA)
// compare torch.ops.tinyfast.augment, which calls these functions, with a float64 reference.
#pragma once

#include <cstdint>
#include <string>

#if defined(__GNUC__)
#define TINYFAST_API __attribute__((visibility("default")))
#else
#define TINYFAST_API
#endif

namespace tinyfast {

// Element type of `out`.
enum OutDtype : int { kOutFloat32 = 0, kOutFloat16 = 1, kOutBFloat16 = 2 };

struct KernelArgs {
  const uint8_t* src;
  int64_t n, h, w;        // source images and their height, width
  const int64_t* index;   // (batch,) or nullptr
  int64_t batch;          // output images
  const float* theta;
  int64_t theta_stride0;  // floats between consecutive samples' maps
  const float* color;
  int64_t color_stride0;  // floats between consecutive samples' factors
  float mean[3], std[3];
  float fill;
  int64_t out_h, out_w;
  void* out;              // (batch, out_h, out_w, 3) contiguous
  int out_dtype;          // OutDtype
  const float* shift_image;  // (out_h, out_w, 3) or nullptr: -mean_image / std
};

// "" when `a` satisfies the contract above, else one line naming the offending field. `cuda`
// adds the CUDA kernel's limits (batch < 2^31 images, each image < 2^31 bytes).
TINYFAST_API std::string augment_args_error(const KernelArgs& a, bool cuda);

// CPU kernel: runs on ATen's intra-op thread pool (at::parallel_for over images), returns when done.
TINYFAST_API void augment_cpu_raw(const KernelArgs& a);

// CUDA kernel (CUDA builds only): enqueues on `stream` (cudaStream_t) of the current device.
TINYFAST_API void augment_cuda_raw(const KernelArgs& a, void* stream);

}  // namespace tinyfast
