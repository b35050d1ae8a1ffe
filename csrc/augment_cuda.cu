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
//      instead when the image exceeds 48 KiB; an image of exactly 48 KiB, 128x128, plus the
//      reduction scratch needs the dynamic shared-memory opt-in, set in launch()),
//   2. if the contrast factor is not 1, computes the image's mean luminance (after brightness)
//      with a block reduction (float per-thread partials flushed to double, warp shuffles, then
//      one value per warp in shared memory; the mean itself is divided in double, as on the CPU),
//   3. writes the output in groups of kPix pixels per thread (8 for 2-byte types, 4 for float),
//      i.e. 48 bytes = three 16-byte stores; consecutive threads write consecutive groups, so a
//      warp's three store instructions cover one contiguous 1.5 KiB span of channels-last output.
//      When an image's output is not a multiple of 16 bytes (Ho*Wo % kPix != 0) or the output
//      buffer is not 16-byte aligned (a user-provided `out` view), it is written element by element.
// Everything runs on the current CUDA stream; the launch never synchronises.
//
// Arithmetic: the per-pixel steps (coordinates, bilinear, colour, normalisation) are the
// __host__ __device__ functions of augment_pixel.h, the very functions the CPU kernel calls, with
// every float32 product and sum as fmul()/fadd() (__fmul_rn/__fadd_rn here: never contracted into
// an FMA, never approximated, whatever the flags; the clamps are selects, NaN -> lower bound). The
// per-pixel result is therefore the CPU's bit for bit, and the CPU sums the contrast mean in this
// kernel's reduction order (kMeanThreads, kMeanChunk, the block tree), so outputs are equal for
// every policy. setup.py also builds without --use_fast_math and with -fmad=false, so nothing else in
// this file is contracted or flushed to zero either. Only the staging, the block reduction and
// the stores are CUDA-only.
//
// Testing: tests/test_augment_op.py runs the same correctness tests on "cpu" and "cuda" (marked
// `cuda`, skipped without a GPU) against an independent float64 PyTorch reference, with a
// NaN-poisoned preallocated output so an unwritten element fails, plus torch.library.opcheck;
// tests/test_augment_cuda.py the CUDA-only ones (CPU == CUDA bit for bit, streams, graphs, 64-bit
// offsets, bad input on the device). benchmarks/op.py measures GB/s against a
// device-to-device copy; benchmarks/proof/sanitize_cases.py is the compute-sanitizer case set.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "augment.h"
#include "augment_pixel.h"

namespace tinyfast {
namespace {

constexpr int kThreads = 256;  // every launch uses exactly this block size
static_assert(kThreads == kMeanThreads, "the CPU mean (augment.cpp) emulates this block's reduction order");
constexpr int kWarps = kThreads / 32;
static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps: full-mask shuffles");
// Sources up to this many bytes are staged in shared memory. The default per-block limit is
// 48 KiB for static + dynamic shared memory together, so with the reduction scratch a 48 KiB
// image needs the opt-in (cudaFuncAttributeMaxDynamicSharedMemorySize, available on sm_70+).
constexpr int kSmemMaxImageBytes = 48 * 1024;
constexpr int kStaticSmemBytes = (kWarps + 1) * static_cast<int>(sizeof(double));  // `red`

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

// KernelArgs as the kernel reads them: 32-bit sizes (checked by augment_args_error), Norm derived.
struct Params {
  const uint8_t* src;
  const int64_t* index;  // nullptr: image b is src[b]
  const float* theta;
  const float* color;
  int64_t theta_stride0, color_stride0;
  void* out;
  int64_t n;
  int h, w, out_h, out_w;
  float fill;
  Norm norm;
  const float* shift_image;  // (out_h, out_w, 3) or nullptr: -mean_image / std, precomputed
  bool vec;  // output base 16-byte aligned and every image a multiple of 16 bytes
};

// Everything a thread needs for one pixel, loaded once per block.
struct Sample {
  float t00, t01, t02, t10, t11, t12;
  float cb, cc, cs, cm;  // colour factors and the contrast offset (1 - cc) * mean
  bool color;            // false: all factors exactly 1, colour steps skipped (they are no-ops)
};

// One output pixel at (ox, oy), whose source-row parts bx = t01*y + t02 and by = t11*y + t12 the
// caller computed (row_base, once per row): bilinear sample (fill outside), colour, normalise -> 3
// floats, through the same augment_pixel.h functions the CPU kernel's row loops call. `x` is
// float(ox), exact (the caller counts it up in floats: no int -> float conversion per pixel).
__device__ __forceinline__ void pixel(const uint8_t* __restrict__ img, const Params& p,
                                      const Sample& s, float x, float bx, float by, int ox, int oy,
                                      float v[3]) {
  bilinear<int>(img, p.h, p.w, p.fill, coord(s.t00, x, bx), coord(s.t10, x, by), v);
  if (TINYFAST_PROBE_TRUE(s.color)) colour(s.cb, s.cc, s.cm, s.cs, v[0], v[1], v[2]);  // skipped as on the CPU
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    const float t = TINYFAST_PROBE_FALSE(p.shift_image != nullptr)
                        ? __ldg(p.shift_image + (oy * p.out_w + ox) * 3 + k)
                        : p.norm.shift[k];
    v[k] = normalise(v[k], p.norm.scale[k], t);
  }
}

// Pack a group's 3*kPix floats into 48 bytes and store them with three 16-byte stores.
template <typename Out>
__device__ __forceinline__ void store_group(typename Out::Bits* out, const float* vals) {
  using Bits = typename Out::Bits;
  uint32_t wd[12];  // constant indices only: stays in registers
#pragma unroll
  for (int j = 0; j < 12; ++j) {
    if constexpr (sizeof(Bits) == 4) {
      wd[j] = Out::cvt(vals[j]);
    } else {
      wd[j] = static_cast<uint32_t>(Out::cvt(vals[2 * j])) |
              (static_cast<uint32_t>(Out::cvt(vals[2 * j + 1])) << 16);
    }
  }
  uint4* o4 = reinterpret_cast<uint4*>(out);
  o4[0] = make_uint4(wd[0], wd[1], wd[2], wd[3]);
  o4[1] = make_uint4(wd[4], wd[5], wd[6], wd[7]);
  o4[2] = make_uint4(wd[8], wd[9], wd[10], wd[11]);
}

// Sum over the block (blockDim.x == kThreads, whole warps, every thread calls it once, so the
// full shuffle masks and both barriers are reached by all threads). Returns the sum to all.
__device__ __forceinline__ double block_sum(double v, double* red) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? red[lane] : 0.0;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) red[kWarps] = v;  // own slot: no read/write overlap with red[0..kWarps)
  }
  __syncthreads();
  return red[kWarps];
}

template <typename Out, bool kSmem>
__global__ void __launch_bounds__(kThreads) augment_kernel(Params p) {
  using Bits = typename Out::Bits;
  constexpr int kPix = Out::kPix;
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ double red[kWarps + 1];

  const int64_t b = blockIdx.x;
  const int tid = threadIdx.x;
  const int64_t out_pix = static_cast<int64_t>(p.out_h) * p.out_w;
  Bits* out = static_cast<Bits*>(p.out) + static_cast<int64_t>(b) * out_pix * 3;

  const int64_t r = p.index ? p.index[b] : b;
  if (r < 0 || r >= p.n) {
    // A device-resident index cannot be range-checked on the host without a sync: never read
    // outside src, and make the bad sample impossible to miss. (Uniform over the block, and
    // before any barrier: the whole block returns.)
    for (int64_t e = tid; e < out_pix * 3; e += kThreads) out[e] = Out::nan();
    return;
  }

  const int img_bytes = p.h * p.w * 3;  // < 2^31 (checked on the host)
  const uint8_t* gimg = p.src + r * static_cast<int64_t>(img_bytes);  // 64-bit image offset
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
  const float* th = p.theta + b * p.theta_stride0;
  s.t00 = th[0]; s.t01 = th[1]; s.t02 = th[2];
  s.t10 = th[3]; s.t11 = th[4]; s.t12 = th[5];
  const float* col = p.color + b * p.color_stride0;
  s.cb = col[0]; s.cc = col[1]; s.cs = col[2];
  s.color = !(s.cb == 1.f && s.cc == 1.f && s.cs == 1.f);
  s.cm = 0.f;
  if (s.cc != 1.f) {  // uniform across the block (same global value): every thread reaches the barriers
    // Float partials of at most kMeanChunk terms each (below ~2^14: no precision loss for big
    // images), flushed to double per chunk, then the block tree; mean = float(total / (H*W)).
    // augment.cpp's mean_luma sums in exactly this order, so CPU == CUDA bit for bit.
    const int hw = p.h * p.w;
    double acc = 0.0;
    for (int i0 = tid; i0 < hw; i0 += kMeanChunk * kThreads) {
      const int end = hw - i0 < kMeanChunk * kThreads ? hw : i0 + kMeanChunk * kThreads;
      float part = 0.f;
      for (int i = i0; i < end; i += kThreads) {
        const uint8_t* q = img + 3 * i;
        const float lum = fadd(fadd(luma_term(kLumaR, s.cb, static_cast<float>(q[0])),
                                    luma_term(kLumaG, s.cb, static_cast<float>(q[1]))),
                               luma_term(kLumaB, s.cb, static_cast<float>(q[2])));
        part = fadd(part, lum);
      }
      acc += part;
    }
    const double total = block_sum(acc, red);
    const float m = static_cast<float>(total / static_cast<double>(hw));
    s.cm = contrast_offset(s.cc, m);
  }

  // out_pix < 2^31 (checked on the host): 32-bit pixel indices from here on.
  const int opix = static_cast<int>(out_pix);
  const int groups = p.vec ? opix / kPix : 0;
  if (p.out_w % kPix == 0) {
    // Every group lies in one output row: its row parts and float x are computed once per group.
    for (int g = tid; g < groups; g += kThreads) {
      float vals[3 * kPix];
      const int first = g * kPix;
      const int oy = first / p.out_w, ox = first - oy * p.out_w;
      const float y = static_cast<float>(oy), x = static_cast<float>(ox);
      const float bx = row_base(s.t01, s.t02, y), by = row_base(s.t11, s.t12, y);
#pragma unroll
      for (int k = 0; k < kPix; ++k) {
        // x + k is exact (small integers), = float(ox + k)
        pixel(img, p, s, fadd(x, static_cast<float>(k)), bx, by, ox + k, oy, vals + 3 * k);
      }
      store_group<Out>(out + static_cast<int64_t>(first) * 3, vals);
    }
  } else {
    for (int g = tid; g < groups; g += kThreads) {
      float vals[3 * kPix];
      const int first = g * kPix;
      int oy = first / p.out_w, ox = first - oy * p.out_w;
#pragma unroll
      for (int k = 0; k < kPix; ++k) {
        const float y = static_cast<float>(oy);
        pixel(img, p, s, static_cast<float>(ox), row_base(s.t01, s.t02, y), row_base(s.t11, s.t12, y),
              ox, oy, vals + 3 * k);
        if (++ox == p.out_w) {
          ox = 0;
          ++oy;
        }
      }
      store_group<Out>(out + static_cast<int64_t>(first) * 3, vals);
    }
  }
  for (int q = groups * kPix + tid; q < opix; q += kThreads) {
    const int oy = q / p.out_w, ox = q - oy * p.out_w;
    const float y = static_cast<float>(oy);
    float v[3];
    pixel(img, p, s, static_cast<float>(ox), row_base(s.t01, s.t02, y), row_base(s.t11, s.t12, y), ox, oy, v);
    const int64_t e = static_cast<int64_t>(q) * 3;
    out[e] = Out::cvt(v[0]);
    out[e + 1] = Out::cvt(v[1]);
    out[e + 2] = Out::cvt(v[2]);
  }
}

// The raw API reports CUDA errors as std::runtime_error (no c10 type crosses it).
void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear it: left set, the next launch check of any op would report it
    throw std::runtime_error(std::string("tinyfast augment: CUDA error in ") + what + ": " +
                             cudaGetErrorString(e));
  }
}

template <typename Out>
void launch(const Params& p, int64_t batch, cudaStream_t stream) {
  const int64_t img_bytes = static_cast<int64_t>(p.h) * p.w * 3;
  if (img_bytes <= kSmemMaxImageBytes) {
    auto* kernel = augment_kernel<Out, true>;
    // Opt in above the default 48 KiB (static + dynamic) once per device, before the first
    // launch of any size, so no source size near the default limit (e.g. 128x128x3 = 48 KiB plus
    // the reduction scratch) can meet it. Always the same value, so concurrent callers cannot
    // lower it under each other; it applies to the current device (the guard's).
    static std::atomic<uint64_t> opted{0};
    int dev = 0;
    check_cuda(cudaGetDevice(&dev), "querying the current device");
    const uint64_t bit = dev < 64 ? uint64_t{1} << dev : 0;
    if (bit == 0 || (opted.load(std::memory_order_acquire) & bit) == 0) {
      check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      kSmemMaxImageBytes),
                 "raising the shared-memory limit");
      opted.fetch_or(bit, std::memory_order_release);
    }
    kernel<<<static_cast<unsigned>(batch), kThreads, static_cast<size_t>(img_bytes), stream>>>(p);
  } else {
    augment_kernel<Out, false><<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(p);
  }
  check_cuda(cudaGetLastError(), "kernel launch");
}

// The mean image's per-pixel shift, -m / std[c] (image_shift: __fdiv_rn, as on the CPU).
__global__ void shift_kernel(const float* __restrict m, float* __restrict out, int64_t n, float s0,
                             float s1, float s2) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    const int64_t c = i % 3;
    out[i] = image_shift(__ldg(m + i), c == 0 ? s0 : (c == 1 ? s1 : s2));
  }
}

at::Tensor mean_image_shift_cuda(const at::Tensor& m_any, c10::ArrayRef<double> std) {
  c10::cuda::CUDAGuard guard(m_any.device());
  float s[3];
  const at::Tensor m = check_shift_args(m_any, std, s);
  at::Tensor out = at::empty_like(m);
  const int64_t n = m.numel();
  if (n > 0) {
    const auto blocks = static_cast<unsigned>((n + kThreads - 1) / kThreads);
    shift_kernel<<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream(m.device().index()).stream()>>>(
        m.data_ptr<float>(), out.data_ptr<float>(), n, s[0], s[1], s[2]);
    check_cuda(cudaGetLastError(), "mean-image shift launch");
  }
  return out;
}

// The op's CUDA registration: the raw kernel on src's device and its current stream.
void run_cuda(const KernelArgs& a, const at::Tensor& src) {
  TORCH_CHECK_VALUE(src.is_cuda(), "tinyfast.ops.augment: CUDA kernel called with src on ",
                    src.device());
  c10::cuda::CUDAGuard guard(src.device());
  augment_cuda_raw(a, c10::cuda::getCurrentCUDAStream(src.device().index()).stream());
}

}  // namespace

void augment_cuda_raw(const KernelArgs& a, void* stream_ptr) {
  const std::string err = augment_args_error(a, true);
  if (!err.empty()) throw std::invalid_argument("tinyfast augment: " + err);
  Params p;
  p.src = a.src;
  p.index = a.index;
  p.theta = a.theta;
  p.color = a.color;
  p.theta_stride0 = a.theta_stride0;
  p.color_stride0 = a.color_stride0;
  p.out = a.out;
  p.n = a.n;
  p.h = static_cast<int>(a.h);
  p.w = static_cast<int>(a.w);
  p.out_h = static_cast<int>(a.out_h);
  p.out_w = static_cast<int>(a.out_w);
  p.fill = a.fill;
  p.norm = make_norm(a.mean, a.std);
  p.shift_image = a.shift_image;
  const int64_t elt = a.out_dtype == kOutFloat32 ? 4 : 2;
  const int64_t img_out_bytes = a.out_h * a.out_w * 3 * elt;
  p.vec = (reinterpret_cast<uintptr_t>(p.out) & 15) == 0 && (img_out_bytes & 15) == 0;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  switch (a.out_dtype) {
    case kOutFloat32: launch<OutF32>(p, a.batch, stream); break;
    case kOutFloat16: launch<OutF16>(p, a.batch, stream); break;
    default: launch<OutBF16>(p, a.batch, stream); break;
  }
}

TORCH_LIBRARY_IMPL(tinyfast, CUDA, m) {
  m.impl("augment", &tinyfast::augment_entry<run_cuda>);
  m.impl("augment_out", &tinyfast::augment_out_entry<run_cuda>);
  m.impl("_mean_image_shift", &mean_image_shift_cuda);
}

}  // namespace tinyfast
