// tinyfast::augment, CUDA kernel.
//
// Memory layout
//   src    uint8 (N, H, W, 3) contiguous (NHWC); one image = H*W*3 bytes (12 KiB at 64x64).
//   index  optional int64 (B,): image b reads src[index[b]] (the gather is fused).
//   theta  float32 (B, 2, 3), color float32 (B, 3): per-sample parameters.
//   out    a contiguous (B, Ho, Wo, 3) buffer of fp16/bf16/fp32 (returned to Python as the
//          (B, 3, Ho, Wo) channels-last view); image b starts at element b*Ho*Wo*3.
//
// Work decomposition: one thread block per output image. The block
//   1. copies its source image into shared memory as uint8 with 16-byte loads (global path
//      instead when the image exceeds 48 KiB of shared memory),
//   2. if the contrast factor is not 1, computes the image's mean luminance (after brightness)
//      with a block reduction (warp shuffles, then one value per warp in shared memory),
//   3. writes the output in groups of kPix pixels per thread (8 for 2-byte types, 4 for float),
//      i.e. 48 bytes = three 16-byte stores; consecutive threads write consecutive groups, so a
//      warp's three store instructions cover one contiguous 1.5 KiB span of channels-last output.
//      When an image's output is not a multiple of 16 bytes (Ho*Wo % kPix != 0) or the output
//      buffer is not 16-byte aligned (a user-provided `out` view), it is written element by element.
// Everything runs on the current CUDA stream; the launch never synchronises.
//
// Arithmetic follows the docstring of tinyfast.ops.augment. The final normalisation uses
// __fmul_rn/__fadd_rn so that it is neither fused into an FMA nor approximated under
// --use_fast_math: identity parameters then give the same bits as the CPU kernel.
//
// Testing: tests/test_augment_op.py runs the same correctness tests on "cpu" and "cuda" (marked
// `cuda`, skipped without a GPU) against an independent float64 PyTorch reference, with a
// NaN-poisoned preallocated output so an unwritten element fails, plus torch.library.opcheck.
// benchmarks/bench_augment.py measures GB/s against a device-to-device copy.

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <cstdint>

#include "augment.h"

namespace tinyfast {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxStaticSmem = 48 * 1024;  // needs no opt-in on any architecture

// Output element types: storage bits, pixels per 48-byte group, float -> bits conversion.
struct OutF32 {
  using Bits = uint32_t;
  static constexpr int kPix = 4;
  __device__ static Bits cvt(float v) { return __float_as_uint(v); }
  __device__ static Bits nan() { return 0x7fc00000u; }
};
struct OutF16 {
  using Bits = uint16_t;
  static constexpr int kPix = 8;
  __device__ static Bits cvt(float v) { return __half_as_ushort(__float2half_rn(v)); }
  __device__ static Bits nan() { return 0x7e00u; }
};
struct OutBF16 {
  using Bits = uint16_t;
  static constexpr int kPix = 8;
  __device__ static Bits cvt(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
  __device__ static Bits nan() { return 0x7fc0u; }
};

struct Params {
  const uint8_t* src;
  const int64_t* index;  // nullptr: image b is src[b]
  const float* theta;
  const float* color;
  void* out;
  int64_t n;
  int h, w, out_h, out_w;
  float fill;
  Norm norm;
  bool vec;  // output base 16-byte aligned and every image a multiple of 16 bytes
};

__device__ __forceinline__ float clamp255(float v) { return fminf(fmaxf(v, 0.f), 255.f); }

// Everything a thread needs for one pixel, loaded once per block.
struct Sample {
  float t00, t01, t02, t10, t11, t12;
  float cb, cc, cs, cm;  // colour factors and the contrast offset (1 - cc) * mean
  bool color;            // false: all factors exactly 1, colour steps skipped (they are no-ops)
};

// One output pixel: bilinear sample (fill outside), colour, normalise -> 3 floats.
__device__ __forceinline__ void pixel(const uint8_t* __restrict__ img, const Params& p,
                                      const Sample& s, int ox, int oy, float v[3]) {
  const float fx_ = static_cast<float>(ox), fy_ = static_cast<float>(oy);
  float sx = fmaf(s.t00, fx_, fmaf(s.t01, fy_, s.t02));
  float sy = fmaf(s.t10, fx_, fmaf(s.t11, fy_, s.t12));
  // fmaxf/fminf return the non-NaN operand: NaN coordinates become -2 (all taps fill).
  sx = fminf(fmaxf(sx, -2.f), static_cast<float>(p.w) + 1.f);
  sy = fminf(fmaxf(sy, -2.f), static_cast<float>(p.h) + 1.f);
  const float flx = floorf(sx), fly = floorf(sy);
  const int x0 = static_cast<int>(flx), y0 = static_cast<int>(fly);
  const float fx = sx - flx, fy = sy - fly;
  const float gx = 1.f - fx, gy = 1.f - fy;
  const float w00 = gx * gy, w01 = fx * gy, w10 = gx * fy, w11 = fx * fy;
  const int row = p.w * 3;
  if (static_cast<unsigned>(x0) < static_cast<unsigned>(p.w - 1) &&
      static_cast<unsigned>(y0) < static_cast<unsigned>(p.h - 1)) {
    const uint8_t* a = img + (y0 * p.w + x0) * 3;
    const uint8_t* c = a + row;
#pragma unroll
    for (int k = 0; k < 3; ++k) {
      v[k] = w00 * a[k] + w01 * a[3 + k] + w10 * c[k] + w11 * c[3 + k];
    }
  } else {
    const bool ix0 = static_cast<unsigned>(x0) < static_cast<unsigned>(p.w);
    const bool ix1 = static_cast<unsigned>(x0 + 1) < static_cast<unsigned>(p.w);
    const bool iy0 = static_cast<unsigned>(y0) < static_cast<unsigned>(p.h);
    const bool iy1 = static_cast<unsigned>(y0 + 1) < static_cast<unsigned>(p.h);
    const int64_t base = (static_cast<int64_t>(y0) * p.w + x0) * 3;  // read only when inside
#pragma unroll
    for (int k = 0; k < 3; ++k) {
      const float a = (iy0 && ix0) ? static_cast<float>(img[base + k]) : p.fill;
      const float b = (iy0 && ix1) ? static_cast<float>(img[base + 3 + k]) : p.fill;
      const float c = (iy1 && ix0) ? static_cast<float>(img[base + row + k]) : p.fill;
      const float d = (iy1 && ix1) ? static_cast<float>(img[base + row + 3 + k]) : p.fill;
      v[k] = w00 * a + w01 * b + w10 * c + w11 * d;
    }
  }
  if (s.color) {
#pragma unroll
    for (int k = 0; k < 3; ++k) v[k] = clamp255(s.cb * v[k]);
#pragma unroll
    for (int k = 0; k < 3; ++k) v[k] = clamp255(s.cc * v[k] + s.cm);
    const float g = (1.f - s.cs) * (kLumaR * v[0] + kLumaG * v[1] + kLumaB * v[2]);
#pragma unroll
    for (int k = 0; k < 3; ++k) v[k] = clamp255(s.cs * v[k] + g);
  }
#pragma unroll
  for (int k = 0; k < 3; ++k) v[k] = __fadd_rn(__fmul_rn(v[k], p.norm.scale[k]), p.norm.shift[k]);
}

__device__ __forceinline__ float block_sum(float v, float* red) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (kThreads / 32) ? red[lane] : 0.f;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  return red[0];
}

template <typename Out, bool kSmem>
__global__ void __launch_bounds__(kThreads) augment_kernel(Params p) {
  using Bits = typename Out::Bits;
  constexpr int kPix = Out::kPix;
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ float red[kThreads / 32];

  const int b = blockIdx.x;
  const int tid = threadIdx.x;
  const int64_t out_pix = static_cast<int64_t>(p.out_h) * p.out_w;
  Bits* out = static_cast<Bits*>(p.out) + static_cast<int64_t>(b) * out_pix * 3;

  const int64_t r = p.index ? p.index[b] : b;
  if (r < 0 || r >= p.n) {
    // A device-resident index cannot be range-checked on the host without a sync: never read
    // outside src, and make the bad sample impossible to miss.
    for (int64_t e = tid; e < out_pix * 3; e += kThreads) out[e] = Out::nan();
    return;
  }

  const int img_bytes = p.h * p.w * 3;
  const uint8_t* gimg = p.src + r * static_cast<int64_t>(img_bytes);
  const uint8_t* img = gimg;
  if (kSmem) {
    if ((reinterpret_cast<uintptr_t>(gimg) & 15) == 0 && (img_bytes & 15) == 0) {
      const uint4* s4 = reinterpret_cast<const uint4*>(gimg);
      uint4* d4 = reinterpret_cast<uint4*>(smem);
      for (int i = tid; i < img_bytes / 16; i += kThreads) d4[i] = __ldg(s4 + i);
    } else {
      for (int i = tid; i < img_bytes; i += kThreads) smem[i] = __ldg(gimg + i);
    }
    __syncthreads();
    img = smem;
  }

  Sample s;
  const float* th = p.theta + b * 6;
  s.t00 = th[0]; s.t01 = th[1]; s.t02 = th[2];
  s.t10 = th[3]; s.t11 = th[4]; s.t12 = th[5];
  const float* col = p.color + b * 3;
  s.cb = col[0]; s.cc = col[1]; s.cs = col[2];
  s.color = !(s.cb == 1.f && s.cc == 1.f && s.cs == 1.f);
  s.cm = 0.f;
  if (s.cc != 1.f) {  // uniform across the block: every thread reaches the barriers
    float acc = 0.f;
    for (int i = tid; i < p.h * p.w; i += kThreads) {
      acc += kLumaR * clamp255(s.cb * img[3 * i]) + kLumaG * clamp255(s.cb * img[3 * i + 1]) +
             kLumaB * clamp255(s.cb * img[3 * i + 2]);
    }
    const float total = block_sum(acc, red);
    s.cm = (1.f - s.cc) * (total / static_cast<float>(p.h * p.w));
  }

  const int64_t groups = p.vec ? out_pix / kPix : 0;
  for (int64_t g = tid; g < groups; g += kThreads) {
    float vals[3 * kPix];
    const int64_t first = g * kPix;
    int oy = static_cast<int>(first / p.out_w);
    int ox = static_cast<int>(first - static_cast<int64_t>(oy) * p.out_w);
#pragma unroll
    for (int k = 0; k < kPix; ++k) {
      pixel(img, p, s, ox, oy, vals + 3 * k);
      if (++ox == p.out_w) {
        ox = 0;
        ++oy;
      }
    }
    // Pack 48 bytes into twelve 32-bit words (constant indices: they stay in registers).
    uint32_t wd[12];
#pragma unroll
    for (int j = 0; j < 12; ++j) {
      if constexpr (sizeof(Bits) == 4) {
        wd[j] = Out::cvt(vals[j]);
      } else {
        wd[j] = static_cast<uint32_t>(Out::cvt(vals[2 * j])) |
                (static_cast<uint32_t>(Out::cvt(vals[2 * j + 1])) << 16);
      }
    }
    uint4* o4 = reinterpret_cast<uint4*>(out + first * 3);
    o4[0] = make_uint4(wd[0], wd[1], wd[2], wd[3]);
    o4[1] = make_uint4(wd[4], wd[5], wd[6], wd[7]);
    o4[2] = make_uint4(wd[8], wd[9], wd[10], wd[11]);
  }
  for (int64_t q = groups * kPix + tid; q < out_pix; q += kThreads) {
    const int oy = static_cast<int>(q / p.out_w);
    const int ox = static_cast<int>(q - static_cast<int64_t>(oy) * p.out_w);
    float v[3];
    pixel(img, p, s, ox, oy, v);
    out[q * 3] = Out::cvt(v[0]);
    out[q * 3 + 1] = Out::cvt(v[1]);
    out[q * 3 + 2] = Out::cvt(v[2]);
  }
}

template <typename Out>
void launch(const Params& p, int64_t batch, cudaStream_t stream) {
  const int64_t img_bytes = static_cast<int64_t>(p.h) * p.w * 3;
  if (img_bytes <= kMaxStaticSmem) {
    augment_kernel<Out, true><<<static_cast<unsigned>(batch), kThreads, img_bytes, stream>>>(p);
  } else {
    augment_kernel<Out, false><<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(p);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void augment_cuda_into(const at::Tensor& src, const std::optional<at::Tensor>& index,
                       const at::Tensor& theta_, const at::Tensor& color_, const Norm& norm,
                       float fill, const AugmentDims& d, const at::Tensor& out_nhwc) {
  TORCH_CHECK_VALUE(src.is_cuda(), "tinyfast.ops.augment: CUDA kernel called with src on ",
                    src.device());
  TORCH_CHECK_VALUE(d.batch <= 0x7fffffff, "tinyfast.ops.augment: batch too large for one launch");
  // Pixel offsets inside one image are 32-bit in the kernel.
  TORCH_CHECK_VALUE(d.h * d.w * 3 < (int64_t{1} << 31) && d.out_h * d.out_w * 3 < (int64_t{1} << 31),
                    "tinyfast.ops.augment: images over 2^31 bytes are not supported on CUDA");
  c10::cuda::CUDAGuard guard(src.device());
  const at::Tensor theta = theta_.contiguous();
  const at::Tensor color = color_.contiguous();
  at::Tensor ix;
  if (index.has_value() && index->defined()) ix = index->contiguous();

  Params p;
  p.src = src.data_ptr<uint8_t>();
  p.index = ix.defined() ? ix.data_ptr<int64_t>() : nullptr;
  p.theta = theta.data_ptr<float>();
  p.color = color.data_ptr<float>();
  p.out = out_nhwc.data_ptr();
  p.n = d.n;
  p.h = static_cast<int>(d.h);
  p.w = static_cast<int>(d.w);
  p.out_h = static_cast<int>(d.out_h);
  p.out_w = static_cast<int>(d.out_w);
  p.fill = fill;
  p.norm = norm;
  const int64_t img_out_bytes = d.out_h * d.out_w * 3 * out_nhwc.element_size();
  p.vec = (reinterpret_cast<uintptr_t>(p.out) & 15) == 0 && (img_out_bytes & 15) == 0;

  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(src.device().index());
  switch (out_nhwc.scalar_type()) {
    case at::kFloat: launch<OutF32>(p, d.batch, stream); break;
    case at::kHalf: launch<OutF16>(p, d.batch, stream); break;
    case at::kBFloat16: launch<OutBF16>(p, d.batch, stream); break;
    default: check_out_dtype(out_nhwc.scalar_type());
  }
}

at::Tensor augment_cuda(const at::Tensor& src, const std::optional<at::Tensor>& index,
                        const at::Tensor& theta, const at::Tensor& color,
                        c10::ArrayRef<double> mean, c10::ArrayRef<double> std, int64_t out_h,
                        int64_t out_w, c10::ScalarType dtype, double fill) {
  const AugmentDims d = check_augment_args(src, index, theta, color, mean, std, out_h, out_w, fill);
  at::Tensor out = alloc_out(d, dtype, src);
  augment_cuda_into(src, index, theta, color, make_norm(mean, std), static_cast<float>(fill), d,
                    out.permute({0, 2, 3, 1}));
  return out;
}

void augment_out_cuda(const at::Tensor& src, const std::optional<at::Tensor>& index,
                      const at::Tensor& theta, const at::Tensor& color,
                      c10::ArrayRef<double> mean, c10::ArrayRef<double> std, int64_t out_h,
                      int64_t out_w, double fill, const at::Tensor& out) {
  const AugmentDims d = check_augment_args(src, index, theta, color, mean, std, out_h, out_w, fill);
  check_out(out, d, src);
  augment_cuda_into(src, index, theta, color, make_norm(mean, std), static_cast<float>(fill), d,
                    out.permute({0, 2, 3, 1}));
}

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CUDA, m) {
  m.impl("augment", &augment_cuda);
  m.impl("augment_out", &augment_out_cuda);
}

}  // namespace tinyfast
