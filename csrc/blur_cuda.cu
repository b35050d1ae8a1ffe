// tinyfast::blur5, CUDA kernel.
//
// Memory layout: x and out are contiguous (B, H, W, 3) buffers (the (B, 3, H, W) channels-last
// views Python sees) of float32/float16/bfloat16; weights float32 (B, 3). One thread per output
// element (grid-stride), reading its 25 taps through the cache: a small kernel next to the fused
// op, whose single pass a neighbourhood cannot join. The arithmetic is augment_pixel.h's blur5(),
// the CPU kernel's (blur.cpp), with __fmul_rn/__fadd_rn: the same bits on both devices. Runs on
// the current stream, never synchronises. Tested in tests/test_augment_cuda.py (CUDA == CPU).

#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <stdexcept>
#include <string>

#include "augment_pixel.h"
#include "blur.h"

namespace tinyfast {
namespace {

struct F32 {
  using T = float;
  __device__ static float in(T v) { return v; }
  __device__ static T out(float v) { return v; }
};
struct F16 {
  using T = __half;
  __device__ static float in(T v) { return __half2float(v); }
  __device__ static T out(float v) { return __float2half_rn(v); }
};
struct BF16 {
  using T = __nv_bfloat16;
  __device__ static float in(T v) { return __bfloat162float(v); }
  __device__ static T out(float v) { return __float2bfloat16_rn(v); }
};

template <typename D>
__global__ void blur5_kernel(const typename D::T* __restrict__ x, const float* __restrict__ wts,
                             typename D::T* __restrict__ out, int64_t total, int h, int w) {
  const int64_t img = static_cast<int64_t>(h) * w * 3;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t s = e / img;
    const int r = static_cast<int>(e - s * img);
    const int c = r % 3, px = r / 3, y = px / w, xx = px - y * w;
    const typename D::T* im = x + s * img;
    const auto load = [&](int yy, int xi) { return D::in(im[(yy * w + xi) * 3 + c]); };
    out[e] = D::out(blur5(load, h, w, y, xx, wts + s * 3));
  }
}

template <typename D>
void launch(const at::Tensor& x, const at::Tensor& wts, const at::Tensor& out, cudaStream_t stream) {
  const int h = static_cast<int>(x.size(2)), w = static_cast<int>(x.size(3));
  const int64_t total = x.numel();
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, int64_t{1} << 20);
  blur5_kernel<D><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      reinterpret_cast<const typename D::T*>(x.const_data_ptr()), wts.const_data_ptr<float>(),
      reinterpret_cast<typename D::T*>(out.data_ptr()), total, h, w);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("tinyfast.ops.blur5: CUDA launch failed: ") + cudaGetErrorString(err));
  }
}

at::Tensor blur5_cuda(const at::Tensor& x, const at::Tensor& weights) {
  check_blur_args(x, weights);
  c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor wts = weights.contiguous();
  at::Tensor out = at::empty_like(x);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index()).stream();
  switch (x.scalar_type()) {
    case at::kFloat: launch<F32>(x, wts, out, stream); break;
    case at::kHalf: launch<F16>(x, wts, out, stream); break;
    default: launch<BF16>(x, wts, out, stream); break;
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CUDA, m) { m.impl("blur5", &blur5_cuda); }

}  // namespace tinyfast
