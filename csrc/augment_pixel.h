// The per-pixel arithmetic of tinyfast::augment, written once for both kernels: the CPU kernel
// (augment.cpp) calls these inside its row loops, the CUDA kernel (augment_cuda.cu) per output
// pixel, so CPU CI executes the very float32 operations the GPU runs. Only what cannot be shared
// stays in the kernels: the CPU's row staging and vector conversions, the GPU's shared-memory
// staging, block reduction and 16-byte stores.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define TINYFAST_HD __host__ __device__ __forceinline__
#else
#define TINYFAST_HD inline __attribute__((always_inline))
#endif

namespace tinyfast {

// ITU-R BT.601 luma weights: contrast mean and saturation grey level.
constexpr float kLumaR = 0.299f;
constexpr float kLumaG = 0.587f;
constexpr float kLumaB = 0.114f;

// Per-channel normalisation out = v * scale + shift, computed in float32 as
// scale = 1 / (255 * std), shift = -mean / std (see the docstring).
struct Norm {
  float scale[3];
  float shift[3];
};

inline Norm make_norm(const float mean[3], const float std[3]) {
  Norm n;
  for (int c = 0; c < 3; ++c) {
    n.scale[c] = 1.0f / (255.0f * std[c]);
    n.shift[c] = -mean[c] / std[c];
  }
  return n;
}

}  // namespace tinyfast
