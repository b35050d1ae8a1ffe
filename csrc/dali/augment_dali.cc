// tinyfast__Augment: schema, argument and input checks, the CPU backend (see augment_dali.h).
#include "augment_dali.h"

#include <cstdint>
#include <string>
#include <vector>

namespace tinyfast_dali {

using ::dali::CPUBackend;
using ::dali::GPUBackend;
using ::dali::TensorListShape;
using tinyfast::KernelArgs;

namespace {

int64_t elt_size(int out_dtype) { return out_dtype == tinyfast::kOutFloat32 ? 4 : 2; }

// dtype argument -> (raw API element type, DALI type of the output buffer).
void parse_dtype(const std::string& name, KernelArgs& a, ::dali::DALIDataType& type) {
  if (name == "float16") {
    a.out_dtype = tinyfast::kOutFloat16, type = DALI_FLOAT16;
  } else if (name == "float32") {
    a.out_dtype = tinyfast::kOutFloat32, type = DALI_FLOAT;
  } else if (name == "bfloat16") {  // DALI has no bfloat16: its bits travel as uint16
    a.out_dtype = tinyfast::kOutBFloat16, type = DALI_UINT16;
  } else {
    DALI_FAIL(std::string(kOp) + "dtype must be float16, bfloat16 or float32, got '" + name + "'");
  }
}

std::vector<float> three(const ::dali::OpSpec& spec, const char* name) {
  std::vector<float> v = spec.GetRepeatedArgument<float>(name);
  DALI_ENFORCE(v.size() == 3, ::dali::make_string(kOp, name, " must have 3 values (R, G, B), got ",
                                                  v.size()));
  return v;
}

// (Ho, Wo) of each sample: the out_size argument (one pair, or a per-sample tensor input), or the
// source's size.
std::vector<int64_t> out_sizes(const ::dali::OpSpec& spec, const ::dali::Workspace& ws,
                               const TensorListShape<>& in) {
  const int n = in.num_samples();
  std::vector<int64_t> hw(2 * n);
  std::vector<int> fixed;
  const bool tensor = spec.HasTensorArgument("out_size");
  if (!tensor && spec.TryGetRepeatedArgument(fixed, "out_size")) {
    DALI_ENFORCE(fixed.size() == 2, ::dali::make_string(kOp, "out_size must be (Ho, Wo), got ",
                                                        fixed.size(), " values"));
  }
  for (int i = 0; i < n; ++i) {
    int64_t h = in.tensor_shape_span(i)[0], w = in.tensor_shape_span(i)[1];
    if (tensor) {
      const auto& t = ws.ArgumentInput("out_size");
      DALI_ENFORCE(t.type() == DALI_INT32 && t.tensor_shape(i).num_elements() == 2,
                   ::dali::make_string(kOp, "out_size must be int32 (Ho, Wo) per sample, got ",
                                       t.type(), " of shape ", t.tensor_shape(i)));
      const int32_t* p = t.tensor<int32_t>(i);
      h = p[0], w = p[1];
    } else if (fixed.size() == 2) {
      h = fixed[0], w = fixed[1];
    }
    DALI_ENFORCE(h > 0 && w > 0, ::dali::make_string(kOp, "out_size must be positive, got (", h,
                                                     ", ", w, ")"));
    hw[2 * i] = h, hw[2 * i + 1] = w;
  }
  return hw;
}

// Per-sample shape and type checks of the three inputs.
void check_inputs(const ::dali::DALIDataType types[3], const TensorListShape<>& img,
                  const TensorListShape<>& theta, const TensorListShape<>& color) {
  using ::dali::make_string;
  DALI_ENFORCE(types[0] == DALI_UINT8,
               make_string(kOp, "images must be uint8, got ", types[0]));
  DALI_ENFORCE(types[1] == DALI_FLOAT,
               make_string(kOp, "theta must be float32, got ", types[1]));
  DALI_ENFORCE(types[2] == DALI_FLOAT,
               make_string(kOp, "color must be float32, got ", types[2]));
  DALI_ENFORCE(img.sample_dim() == 3,
               make_string(kOp, "images must be HWC with 3 channels, got ", img.sample_dim(),
                           " dimensions"));
  for (int i = 0; i < img.num_samples(); ++i) {
    const auto s = img.tensor_shape(i), t = theta.tensor_shape(i), c = color.tensor_shape(i);
    DALI_ENFORCE(s[2] == 3 && s[0] > 0 && s[1] > 0,
                 make_string(kOp, "images must be non-empty HWC with 3 channels, sample ", i,
                             " has shape ", s));
    DALI_ENFORCE(t.sample_dim() == 2 && t[0] == 2 && t[1] == 3,
                 make_string(kOp, "theta must be (2, 3) per sample, sample ", i, " has shape ", t));
    DALI_ENFORCE(c.sample_dim() == 1 && c[0] == 3,
                 make_string(kOp, "color must be (3,) per sample, sample ", i, " has shape ", c));
  }
}

}  // namespace

std::vector<KernelArgs> sample_args(const KernelArgs& common, const std::vector<const void*>& src,
                                    const std::vector<const void*>& theta,
                                    const std::vector<const void*>& color,
                                    const std::vector<void*>& out, const TensorListShape<>& in_shape,
                                    const std::vector<int64_t>& out_hw) {
  std::vector<KernelArgs> calls(src.size(), common);
  for (size_t i = 0; i < calls.size(); ++i) {
    KernelArgs& a = calls[i];
    a.src = static_cast<const uint8_t*>(src[i]);
    a.n = a.batch = 1;
    a.h = in_shape.tensor_shape_span(i)[0];
    a.w = in_shape.tensor_shape_span(i)[1];
    a.index = nullptr;
    a.theta = static_cast<const float*>(theta[i]);
    a.theta_stride0 = 6;
    a.color = static_cast<const float*>(color[i]);
    a.color_stride0 = 3;
    a.out_h = out_hw[2 * i];
    a.out_w = out_hw[2 * i + 1];
    a.out = out[i];
  }
  return calls;
}

std::vector<KernelArgs> merge_adjacent(const std::vector<KernelArgs>& one) {
  std::vector<KernelArgs> runs;
  for (const KernelArgs& a : one) {
    if (!runs.empty()) {
      KernelArgs& r = runs.back();
      const int64_t k = r.batch;
      const bool same_size = a.h == r.h && a.w == r.w && a.out_h == r.out_h && a.out_w == r.out_w;
      const auto* out_end = static_cast<const char*>(r.out) + k * r.out_h * r.out_w * 3 *
                                                                 elt_size(r.out_dtype);
      if (same_size && a.src == r.src + k * r.h * r.w * 3 && a.theta == r.theta + 6 * k &&
          a.color == r.color + 3 * k && a.out == out_end) {
        r.n = r.batch = k + 1;
        continue;
      }
    }
    runs.push_back(a);
  }
  return runs;
}

template <typename Backend>
Augment<Backend>::Augment(const ::dali::OpSpec& spec) : ::dali::Operator<Backend>(spec) {
  const std::vector<float> mean = three(spec, "mean"), std = three(spec, "std");
  for (int c = 0; c < 3; ++c) common_.mean[c] = mean[c], common_.std[c] = std[c];
  common_.fill = spec.template GetArgument<float>("fill");
  parse_dtype(spec.template GetArgument<std::string>("dtype"), common_, out_type_);
  // The kernels' own rules for mean/std/fill, checked once here on a one-pixel dummy call (the
  // function only inspects the arguments).
  KernelArgs probe = common_;
  uint8_t px[3] = {};
  float th[6] = {}, col[3] = {};
  probe.src = px, probe.theta = th, probe.color = col, probe.out = th;
  probe.n = probe.h = probe.w = probe.batch = probe.out_h = probe.out_w = 1;
  const std::string err = tinyfast::augment_args_error(probe, false);
  DALI_ENFORCE(err.empty(), std::string(kOp) + err);
}

template <typename Backend>
bool Augment<Backend>::SetupImpl(std::vector<::dali::OutputDesc>& output_desc,
                                 const ::dali::Workspace& ws) {
  const auto& img = ws.Input<Backend>(0);
  const auto& theta = ws.Input<Backend>(1);
  const auto& color = ws.Input<Backend>(2);
  const ::dali::DALIDataType types[3] = {img.type(), theta.type(), color.type()};
  check_inputs(types, img.shape(), theta.shape(), color.shape());
  out_hw_ = out_sizes(this->spec_, ws, img.shape());
  const int n = img.num_samples();
  TensorListShape<> shape(n, 3);
  for (int i = 0; i < n; ++i) shape.set_tensor_shape(i, {out_hw_[2 * i], out_hw_[2 * i + 1], 3});
  output_desc.resize(1);
  output_desc[0] = {shape, out_type_};
  return true;
}

template <typename Backend>
std::vector<KernelArgs> Augment<Backend>::collect(::dali::Workspace& ws) {
  const auto& img = ws.Input<Backend>(0);
  const auto& theta = ws.Input<Backend>(1);
  const auto& color = ws.Input<Backend>(2);
  auto& out = ws.Output<Backend>(0);
  out.SetLayout("HWC");
  const int n = img.num_samples();
  std::vector<const void*> s(n), t(n), c(n);
  std::vector<void*> o(n);
  for (int i = 0; i < n; ++i) {
    s[i] = img.raw_tensor(i), t[i] = theta.raw_tensor(i), c[i] = color.raw_tensor(i);
    o[i] = out.raw_mutable_tensor(i);
  }
  return sample_args(common_, s, t, c, o, img.shape(), out_hw_);
}

template <>
void Augment<CPUBackend>::RunImpl(::dali::Workspace& ws) {
  const std::vector<KernelArgs> calls = collect(ws);
  auto& pool = ws.GetThreadPool();
  for (size_t i = 0; i < calls.size(); ++i) {
    // One sample per task: the raw CPU kernel then runs in the pool's thread (its parallel_for
    // over a single image does not fan out), so DALI's num_threads is what runs.
    pool.AddWork([a = calls[i]](int) { run_raw([&] { tinyfast::augment_cpu_raw(a); }); },
                 calls[i].out_h * calls[i].out_w);
  }
  pool.RunAll();
}

template class Augment<CPUBackend>;
#ifdef TINYFAST_DALI_WITH_CUDA
template <>
void Augment<GPUBackend>::RunImpl(::dali::Workspace& ws);  // augment_dali.cu
template class Augment<GPUBackend>;
#endif

}  // namespace tinyfast_dali

DALI_REGISTER_OPERATOR(tinyfast__Augment, ::tinyfast_dali::Augment<::dali::CPUBackend>, ::dali::CPU);

DALI_SCHEMA(tinyfast__Augment)
    .DocStr(R"(tinyfast's fused augmentation (torch.ops.tinyfast.augment, the same kernels): inverse
affine warp with bilinear sampling, brightness, contrast, saturation, normalisation, one pass.

Inputs: uint8 HWC images (3 channels), per-sample float32 (2, 3) inverse affine maps (output pixel
to source pixel, pixel centres at integers), per-sample float32 (3,) factors (brightness,
contrast, saturation). Output: HWC (Ho, Wo, 3) in `dtype` (bfloat16 as its uint16 bits).
Exact semantics: the docstring of tinyfast.ops.augment.)")
    .NumInput(3)
    .NumOutput(1)
    .InputLayout(0, "HWC")
    .AddArg("mean", "Per-channel mean, 3 floats in [0, 1] units.", DALI_FLOAT_VEC)
    .AddArg("std", "Per-channel standard deviation, 3 floats in [0, 1] units.",
            DALI_FLOAT_VEC)
    .AddOptionalArg("dtype", "Output type: 'float16', 'bfloat16' (as uint16 bits) or 'float32'.",
                    "float16")
    .AddOptionalArg("out_size", "(Ho, Wo) of the output; default: the source's size.",
                    DALI_INT_VEC, nullptr, true)
    .AddOptionalArg("fill", "Value (0..255) of source pixels outside the image.", 0.f);
