// tinyfast__Augment: the fused op (torch.ops.tinyfast.augment) as a DALI plugin operator,
// fn.tinyfast.augment in Python (wrapped by tinyfast.dali_ops.augment).
//
// Layout: input 0 is a batch of uint8 HWC images (C = 3, any H x W per sample), input 1 the
// per-sample float32 (2, 3) inverse affine maps, input 2 the per-sample float32 (3,) colour
// factors (brightness, contrast, saturation); the output is HWC (Ho, Wo, 3) per sample in float16,
// float32, or bfloat16 delivered as uint16 bits (DALI has no bfloat16 type). Semantics: the
// docstring of tinyfast.ops.augment, bit for bit, because there is no second implementation here:
// both backends call the op's own kernels through the raw-pointer API of csrc/augment_kernels.h,
// exported by tinyfast/_C*.so (the plugin links against it). The CPU backend runs one call per
// sample on DALI's thread pool; the GPU backend merges runs of samples that lie back to back in
// memory with equal sizes (a whole contiguous batch: one launch) and enqueues them on ws.stream().
//
// Tested in tests/test_dali_ops.py: the CPU backend (and, on a GPU, the GPU backend) bit-exact
// against torch.ops.tinyfast.augment on the same inputs, and the argument errors.
#pragma once

#include <string>
#include <vector>

#include "augment_kernels.h"
#include "dali/pipeline/operator/operator.h"

namespace tinyfast_dali {

// Prefix of every error this operator raises (DALI adds the operator's name around it).
inline constexpr const char* kOp = "tinyfast.dali_ops.augment: ";

// Raw-kernel arguments of each sample (n = batch = 1) of one iteration, inputs validated.
std::vector<tinyfast::KernelArgs> sample_args(const tinyfast::KernelArgs& common,
                                              const std::vector<const void*>& src,
                                              const std::vector<const void*>& theta,
                                              const std::vector<const void*>& color,
                                              const std::vector<void*>& out,
                                              const dali::TensorListShape<>& in_shape,
                                              const std::vector<int64_t>& out_hw);

// Merges consecutive samples whose images, parameters and outputs lie back to back in memory
// and share the source and output sizes into one call each (batch > 1).
std::vector<tinyfast::KernelArgs> merge_adjacent(const std::vector<tinyfast::KernelArgs>& one);

// Runs `fn(args)`, turning the raw API's exceptions into a DALI error with kOp's prefix.
template <typename Fn>
void run_raw(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    DALI_FAIL(std::string(kOp) + e.what());
  }
}

template <typename Backend>
class Augment : public ::dali::Operator<Backend> {
 public:
  explicit Augment(const ::dali::OpSpec& spec);
  ~Augment() override = default;
  Augment(const Augment&) = delete;
  Augment& operator=(const Augment&) = delete;

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc>& output_desc, const ::dali::Workspace& ws) override;
  void RunImpl(::dali::Workspace& ws) override;

  // Per-sample pointers of the current iteration's inputs/output, then the per-sample calls.
  std::vector<tinyfast::KernelArgs> collect(::dali::Workspace& ws);

  tinyfast::KernelArgs common_{};   // mean, std, fill, out_dtype (the rest per call)
  ::dali::DALIDataType out_type_;
  std::vector<int64_t> out_hw_;     // (Ho, Wo) per sample of the current iteration
};

}  // namespace tinyfast_dali
