// tinyfast__Augment, GPU backend: the op's CUDA kernel (augment_cuda_raw, from tinyfast/_C*.so)
// enqueued on the operator's stream, one launch per run of back-to-back samples of equal size
// (see augment_dali.h). Inputs and output are device buffers owned by DALI; nothing is
// synchronised here.
#include "augment_dali.h"

#include <vector>

namespace tinyfast_dali {

template <>
void Augment<::dali::GPUBackend>::RunImpl(::dali::Workspace& ws) {
  const std::vector<tinyfast::KernelArgs> runs = merge_adjacent(collect(ws));
  cudaStream_t stream = ws.stream();
  for (const tinyfast::KernelArgs& a : runs) {
    run_raw([&] { tinyfast::augment_cuda_raw(a, stream); });
  }
}

}  // namespace tinyfast_dali

DALI_REGISTER_OPERATOR(tinyfast__Augment, ::tinyfast_dali::Augment<::dali::GPUBackend>, ::dali::GPU);
