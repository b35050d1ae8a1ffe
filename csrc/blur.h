// tinyfast::blur5 argument checks, shared by the CPU (blur.cpp) and CUDA (blur_cuda.cu) kernels.
#pragma once

#include <ATen/core/Tensor.h>

namespace tinyfast {

// x: (B, 3, H, W) channels-last float32/float16/bfloat16, H, W >= 3; weights: float32 (B, 3) on
// x's device. Throws c10::ValueError naming the argument.
void check_blur_args(const at::Tensor& x, const at::Tensor& weights);

}  // namespace tinyfast
