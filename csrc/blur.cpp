// tinyfast::blur5: a per-sample 5x5 Gaussian blur of the fused op's output, and its CPU kernel.
//
// Layout: x is (B, 3, H, W) in channels-last layout (a view of a contiguous (B, H, W, 3) buffer,
// what tinyfast.ops.augment returns), float32/float16/bfloat16; weights is float32 (B, 3): per
// sample the normalised taps (w0, w1, w2) for offsets 0, +-1, +-2 (tinyfast.ops.blur5 derives
// them from sigma). The output has x's shape, dtype and layout. Borders reflect (as torch's
// "reflect" padding and torchvision's gaussian_blur). Arithmetic: augment_pixel.h's blur5(), in
// float32, shared with the CUDA kernel (blur_cuda.cu), so both give the same bits; the input is
// read through an exact conversion to float and the result rounded to nearest even once.
// Tested in tests/test_augment_op.py against a float64 conv2d reference and torchvision.

#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include "augment_pixel.h"
#include "blur.h"

namespace tinyfast {

void check_blur_args(const at::Tensor& x, const at::Tensor& weights) {
  const char* op = "tinyfast.ops.blur5: ";
  TORCH_CHECK_VALUE(x.dim() == 4 && x.size(1) == 3, op, "x must be (B, 3, H, W), got ", x.sizes());
  const auto dt = x.scalar_type();
  TORCH_CHECK_VALUE(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16, op,
                    "x must be float32, float16 or bfloat16, got ", dt);
  TORCH_CHECK_VALUE(x.size(0) > 0, op, "empty batch (B = 0)");
  TORCH_CHECK_VALUE(x.size(2) >= 3 && x.size(3) >= 3, op,
                    "images must be at least 3x3 for a reflected 5-tap blur, got ", x.sizes());
  TORCH_CHECK_VALUE(x.size(2) * x.size(3) * 3 < (int64_t{1} << 31), op, "images of 2^31 elements or more");
  TORCH_CHECK_VALUE(x.permute({0, 2, 3, 1}).is_contiguous(), op,
                    "x must be channels-last (a (B, 3, H, W) view of a contiguous (B, H, W, 3) buffer)");
  TORCH_CHECK_VALUE(weights.scalar_type() == at::kFloat && weights.dim() == 2 &&
                        weights.size(0) == x.size(0) && weights.size(1) == 3,
                    op, "weights must be float32 (B, 3) with B = ", x.size(0), ", got ",
                    weights.scalar_type(), " ", weights.sizes());
  TORCH_CHECK_VALUE(weights.device() == x.device(), op, "weights is on ", weights.device(),
                    " but x is on ", x.device());
}

namespace {

template <typename scalar_t>
void blur_cpu_typed(const at::Tensor& x, const at::Tensor& wts, const at::Tensor& out) {
  const int64_t b = x.size(0);
  const int h = static_cast<int>(x.size(2)), w = static_cast<int>(x.size(3));
  const scalar_t* in = x.const_data_ptr<scalar_t>();
  scalar_t* o = out.data_ptr<scalar_t>();
  const float* wp = wts.const_data_ptr<float>();
  const int64_t img = static_cast<int64_t>(h) * w * 3;
  at::parallel_for(0, b, 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const scalar_t* im = in + s * img;
      for (int c = 0; c < 3; ++c) {
        const auto load = [&](int yy, int xx) { return static_cast<float>(im[(yy * w + xx) * 3 + c]); };
        for (int y = 0; y < h; ++y) {
          for (int xx = 0; xx < w; ++xx) {
            o[s * img + (y * w + xx) * 3 + c] = static_cast<scalar_t>(blur5(load, h, w, y, xx, wp + s * 3));
          }
        }
      }
    }
  });
}

at::Tensor blur5_cpu(const at::Tensor& x, const at::Tensor& weights) {
  check_blur_args(x, weights);
  const at::Tensor wts = weights.contiguous();
  at::Tensor out = at::empty_like(x);  // preserves the channels-last layout
  switch (x.scalar_type()) {
    case at::kFloat: blur_cpu_typed<float>(x, wts, out); break;
    case at::kHalf: blur_cpu_typed<c10::Half>(x, wts, out); break;
    default: blur_cpu_typed<c10::BFloat16>(x, wts, out); break;
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(tinyfast, m) { m.def("blur5(Tensor x, Tensor weights) -> Tensor"); }

TORCH_LIBRARY_IMPL(tinyfast, CPU, m) { m.impl("blur5", &blur5_cpu); }

}  // namespace tinyfast
