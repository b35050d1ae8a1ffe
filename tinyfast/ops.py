"""The fused augmentation op: ``tinyfast.ops.augment``.

One compiled op (``torch.ops.tinyfast.augment``, C++ on CPU and CUDA, source in ``csrc/``) turns a
batch of uint8 NHWC images into the augmented, normalised, channels-last batch a model consumes, in
one pass over memory. Every loader except the torchvision baseline calls it, so the augmentation
semantics live here and nowhere else; :func:`augment`'s docstring is their authority.

The compiled extension is loaded when this module is imported. If it is missing (the package was
not built), importing still works, :func:`available_backends` returns ``[]`` and :func:`augment`
raises a ``RuntimeError`` saying how to build it.
"""
from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence

import torch
from torch.utils.weak import WeakTensorKeyDictionary

try:  # registers torch.ops.tinyfast.* with the dispatcher
    from tinyfast import _C  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only on an unbuilt checkout
    _C = None
    _LOAD_ERROR: ImportError | None = exc
else:
    _LOAD_ERROR = None

__all__ = ["augment", "blur5", "blur5_weights", "cutout_", "available_backends", "compiled_backends", "is_built", "LUMA_WEIGHTS"]

#: ITU-R BT.601 luma weights (R, G, B) used for the contrast mean and for saturation.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

_OUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def is_built() -> bool:
    """True when the compiled extension ``tinyfast._C`` could be imported."""
    return _C is not None


def compiled_backends() -> list[str]:
    """Device types the extension has kernels for (``"cuda"`` even when no GPU is visible)."""
    if _C is None:
        return []
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return [name for name, key in (("cpu", "CPU"), ("cuda", "CUDA")) if has("tinyfast::augment", key)]


def available_backends() -> list[str]:
    """Device types :func:`augment` can run on here: compiled in *and* a device present."""
    return [b for b in compiled_backends() if b == "cpu" or (b == "cuda" and torch.cuda.is_available())]


def _require_built() -> None:
    if _C is None:
        raise RuntimeError(
            "tinyfast.ops: the compiled extension tinyfast._C is missing "
            f"({_LOAD_ERROR}); build it with `pip install --no-build-isolation -e .` "
            "from the repository root"
        )


# Device-resident mean/std tensors already read back: reading one costs a host sync, so it is done
# once per tensor (and again only if the tensor is modified in place). Keyed by identity: tensors
# compare elementwise, so a plain WeakKeyDictionary cannot look one up.
_DEVICE_STATS = WeakTensorKeyDictionary()


def _three_floats(name: str, value) -> list[float]:
    if isinstance(value, torch.Tensor):
        if value.device.type == "cpu":
            value = value.detach().reshape(-1).tolist()
        else:
            hit = _DEVICE_STATS.get(value)
            if hit is None or hit[0] != value._version:
                hit = (value._version, value.detach().reshape(-1).tolist())
                _DEVICE_STATS[value] = hit
            value = hit[1]
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"tinyfast.ops.augment: {name} must be 3 numbers (R, G, B), got {value!r}") from None
    if len(out) != 3:
        raise ValueError(f"tinyfast.ops.augment: {name} must have 3 values (R, G, B), got {len(out)}")
    return out


def _out_size(out_size, src) -> tuple[int, int]:
    if out_size is None:
        if not isinstance(src, torch.Tensor) or src.dim() != 4:
            raise ValueError(f"tinyfast.ops.augment: src must be (N, H, W, 3), got shape {tuple(src.shape)}")
        return int(src.shape[1]), int(src.shape[2])
    try:
        if isinstance(out_size, (str, bytes)) or len(out_size) != 2:
            raise TypeError
        h, w = (operator.index(v) for v in out_size)
    except TypeError:
        raise ValueError("tinyfast.ops.augment: out_size must be (height, width), two integers, "
                         f"got {out_size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"tinyfast.ops.augment: out_size must be positive, got ({h}, {w})")
    return h, w


def _to_device(name: str, t, dev: torch.device):
    """``t`` on ``dev``. Host tensors are checked first (free there, a sync once on the GPU); the copy
    is asynchronous only towards CUDA: a CUDA-to-CPU copy with ``non_blocking`` returns before the
    data lands, and the CPU kernel would read it too early."""
    if not isinstance(t, torch.Tensor) or t.device == dev:
        return t
    if t.device.type == "cpu" and t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        row = int((~torch.isfinite(t.reshape(t.shape[0], -1))).any(1).nonzero()[0]) if t.dim() else 0
        raise ValueError(f"tinyfast.ops.augment: {name}[{row}] has a non-finite value "
                         f"{t[row].reshape(-1).tolist()[:9]}; parameters must be finite")
    return t.to(dev, non_blocking=dev.type == "cuda")


def augment(
    src: torch.Tensor,
    theta: torch.Tensor,
    color: torch.Tensor,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    *,
    index: torch.Tensor | None = None,
    out_size: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float16,
    fill: float = 0.0,
    out: torch.Tensor | None = None,
    mean_image: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Gather, affine-warp, colour-jitter and normalise a batch of uint8 images in one pass.

    Args:
        src: uint8 ``(N, H, W, 3)`` contiguous (NHWC) images, on CPU or CUDA.
        theta: float32 ``(B, 2, 3)``, per sample the *inverse* affine map from output pixel
            ``(x, y, 1)`` to source pixel coordinates (flips are folded into it; build it with
            :mod:`tinyfast.augment`). Host tensors are copied to a CUDA ``src``'s device
            asynchronously: a pinned host ``theta``/``color`` must not be written again until the
            stream has reached this op (record an event after the call and wait on it, or use a
            fresh buffer per call, as the loaders do), or the kernel may read the new values.
        color: float32 ``(B, 3)``, per sample the factors (brightness, contrast, saturation);
            ``1.0`` leaves the image unchanged.
        mean, std: 3 floats each, per-channel statistics in ``[0, 1]`` units. 3-element tensors are
            accepted too; a device tensor is read back (one host sync) the first time it is seen.
        index: optional int64 ``(B,)`` rows of ``src`` to use (the gather is fused);
            ``None`` uses every row (``B = N``).
        out_size: ``(Ho, Wo)``; ``None`` keeps ``(H, W)``.
        dtype: output dtype: ``torch.float16``, ``torch.bfloat16`` or ``torch.float32``.
        fill: value, in ``0..255`` pixel units, of source pixels outside the image.
        out: optional preallocated output, ``(B, 3, Ho, Wo)`` in channels-last layout on ``src``'s
            device, float16/bfloat16/float32 (its dtype is used, ``dtype`` is ignored); it is
            written and returned.
        mean_image: optional float32 ``(Ho, Wo, 3)`` image in ``[0, 1]`` units (e.g. the training
            set's mean image at the output size): mean-image zero-centering, subtracted per pixel
            instead of ``mean`` (which is then unused). Copied to ``src``'s device when elsewhere.

    Returns:
        ``(B, 3, Ho, Wo)`` tensor of ``dtype`` on ``src``'s device, in ``torch.channels_last``
        (a permuted view of a contiguous ``(B, Ho, Wo, 3)`` buffer).

    Semantics (the CPU and CUDA kernels evaluate this in float32, the tests compare both with a
    float64 reference of it; only the normalisation's rounding is pinned down bit for bit). The two
    kernels give the same bits as each other for every input: they share every per-pixel float32
    step, and the CPU sums the contrast mean in the CUDA block reduction's order (256 partial
    sums of pixels ``t, t+256, ...`` in float32, flushed to float64 every 64 terms, folded in
    halves; ``m = float32(total / (H*W))``).
    For output sample ``b`` with source image ``I = src[index[b]]``,
    ``theta = T``, ``color = (cb, cc, cs)``, at every output pixel ``(x, y)`` (integers,
    ``0 <= x < Wo``, ``0 <= y < Ho``) and channel ``c``:

    1. **Sampling.** Pixel centres are at integer coordinates. ``sx = T00*x + T01*y + T02``,
       ``sy = T10*x + T11*y + T12``; ``x0 = floor(sx)``, ``y0 = floor(sy)``,
       ``fx = sx - x0``, ``fy = sy - y0``; with ``p(i, j) = I[j, i, c]`` when
       ``0 <= i < W`` and ``0 <= j < H`` and ``fill`` otherwise, bilinear
       ``v = (1-fy)*((1-fx)*p(x0,y0) + fx*p(x0+1,y0)) + fy*((1-fx)*p(x0,y0+1) + fx*p(x0+1,y0+1))``.
       Coordinates are clamped to ``[-2, W+1]`` x ``[-2, H+1]`` first, which changes nothing
       (every neighbour there is ``fill``) but keeps huge or infinite values defined.
    2. **Brightness.** ``v = clamp(cb * v, 0, 255)``.
    3. **Contrast.** ``v = clamp(cc * v + (1 - cc) * m, 0, 255)`` where ``m`` is the mean ITU-R 601
       luminance (0.299 R + 0.587 G + 0.114 B) over *all H*W pixels of the source image* after
       brightness, ``m = mean_ij lum(clamp(cb * I[i, j], 0, 255))``. The source, not the warped
       output, is used because (a) it does not depend on the geometry, so the fill pixels a
       rotation or shift brings in do not darken the mean, and (b) it is one block reduction over
       the image already staged in shared memory, before any output is written, so the op stays
       a single pass. (torchvision computes the mean over whatever image it is given; applied
       before the geometric transforms, as here, the two agree.) ``m`` is only needed, and only
       computed, when ``cc != 1``.
    4. **Saturation.** ``g = lum(v_R, v_G, v_B)`` of this pixel, then
       ``v = clamp(cs * v + (1 - cs) * g, 0, 255)``.
    5. **Normalisation and rounding.** In float32, ``s_c = 1 / (255 * std_c)`` and
       ``t_c = -mean_c / std_c`` (``mean``/``std`` first rounded to float32), then
       ``out = v * s_c + t_c`` (a float32 multiply, then a float32 add, never fused), which is
       ``(v/255 - mean)/std``; finally a round-to-nearest-even cast to ``dtype``. With a
       ``mean_image`` ``M``, ``t_c`` is ``-M[y, x, c] / std_c`` at each pixel instead (a float32
       division, as ``-mean_c / std_c`` is: a constant ``M`` equal to ``mean`` gives the same bits;
       computed once per call, not per image). No intermediate
       value is rounded to an integer (torchvision's uint8 colour ops truncate after each step).

    Consequences relied on by the tests: identity parameters (``theta = [[1,0,0],[0,1,0]]``,
    ``color = (1,1,1)``, same size) reproduce ``(src*s + t).to(dtype)`` bit for bit; a theta with
    integer entries and 0/±1 rotation part (90° rotations, flips) is an exact pixel permutation.

    Errors: wrong dtype, rank, channel count, a non-contiguous ``src``, an empty batch, shape
    mismatches, ``fill`` outside ``[0, 255]``, ``std`` containing 0, a malformed ``mean``/``std``
    or ``out_size``, a non-finite ``theta``/``color`` value on the host and (for an index on the
    CPU) an out-of-range index raise ``ValueError`` with one line naming the argument (CPU
    parameters and index for a CUDA ``src`` are checked before they are copied). An ``out_size``
    whose output cannot be allocated raises ``RuntimeError`` (``torch.OutOfMemoryError`` on CUDA)
    naming ``out_size`` and the bytes. *Device-resident* parameters are not read on the host (that
    would cost a sync per batch): a CUDA ``index`` out of range makes that sample all NaN instead of
    reading outside ``src``; a non-finite CUDA ``theta`` samples ``fill`` (every coordinate is
    clamped first, NaN to the lower bound) and a non-finite CUDA ``color`` gives NaN or clamped
    values; nothing is ever read or written out of bounds.

    ``theta``, ``color`` and ``index`` on another device than ``src`` are copied to it. For
    ``torch.compile(fullgraph=True)`` pass ``mean``/``std`` as Python floats.
    """
    _require_built()
    if not isinstance(src, torch.Tensor):
        raise ValueError(f"tinyfast.ops.augment: src must be a tensor, got {type(src).__name__}")
    if dtype not in _OUT_DTYPES:
        raise ValueError(f"tinyfast.ops.augment: dtype must be float16, bfloat16 or float32, got {dtype}")
    mean_l = _three_floats("mean", mean)
    std_l = _three_floats("std", std)
    dev = src.device
    theta = _to_device("theta", theta, dev)
    color = _to_device("color", color, dev)
    if index is not None and isinstance(index, torch.Tensor) and index.device != dev:
        if index.device.type == "cpu" and src.dim() >= 1 and index.numel() and not index.is_floating_point():
            # Free to check here, impossible without a sync once it is on the GPU.
            lo, hi = int(index.min()), int(index.max())
            if lo < 0 or hi >= src.shape[0]:
                bad = lo if lo < 0 else hi
                raise ValueError(f"tinyfast.ops.augment: index value {bad} is out of range for src "
                                 f"with {src.shape[0]} rows")
        index = _to_device("index", index, dev)
    out_h, out_w = _out_size(out_size, src)
    if mean_image is not None:
        if not isinstance(mean_image, torch.Tensor):
            raise ValueError(f"tinyfast.ops.augment: mean_image must be a float32 (Ho, Wo, 3) tensor, "
                             f"got {type(mean_image).__name__}")
        mean_image = _to_device("mean_image", mean_image, dev)
    if out is not None:
        torch.ops.tinyfast.augment_out(src, index, theta, color, mean_l, std_l, out_h, out_w,
                                       float(fill), out, mean_image)
        return out
    return torch.ops.tinyfast.augment(src, index, theta, color, mean_l, std_l, out_h, out_w, dtype,
                                      float(fill), mean_image)


#: Smallest sigma :func:`blur5_weights` computes with: exp(-1 / (2 * 0.05**2)) = 1.4e-87 is 0 in
#: float32, so every sigma in (0, 0.05] blurs nothing.
BLUR_MIN_SIGMA = 0.05


def blur5_weights(sigma, batch: int) -> torch.Tensor:
    """float32 ``(B, 3)`` taps ``(w0, w1, w2)`` of a normalised 5-tap Gaussian of each ``sigma``
    (``w_k = exp(-k^2 / (2 sigma^2)) / sum``, computed in float64 on the host, then rounded).
    A sigma below :data:`BLUR_MIN_SIGMA` is taken as that value, whose taps are already ``(1, 0, 0)``
    in float32 (the identity, the limit as sigma -> 0; a tinier sigma would underflow sigma^2 to 0)."""
    try:
        if isinstance(sigma, (str, bytes)):
            raise TypeError
        s = torch.as_tensor(sigma, dtype=torch.float64).cpu().reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"tinyfast.ops.blur5: sigma must be one number or one per sample ({batch}), "
                         f"got {sigma!r}") from None
    if s.numel() == 1:
        s = s.expand(batch)
    if s.numel() != batch:
        raise ValueError(f"tinyfast.ops.blur5: sigma must be one value or {batch} (one per sample), got {s.numel()}")
    if not bool((torch.isfinite(s) & (s > 0)).all()):
        raise ValueError(f"tinyfast.ops.blur5: sigma must be finite and > 0, got {s.tolist()[:8]}")
    s = s.clamp(min=BLUR_MIN_SIGMA)
    k = torch.arange(3, dtype=torch.float64)
    w = torch.exp(-(k[None] ** 2) / (2 * s[:, None] ** 2))
    return (w / (w[:, :1] + 2 * w[:, 1:].sum(1, keepdim=True))).float()


def blur5(x: torch.Tensor, sigma) -> torch.Tensor:
    r"""Per-sample 5x5 Gaussian blur of a batch in :func:`augment`'s output layout.

    A second small kernel next to the fused op (a neighbourhood cannot join its single pass).

    Args:
        x: ``(B, 3, H, W)`` float32/float16/bfloat16 in channels-last layout (what :func:`augment`
            returns), ``H, W >= 3``, on CPU or CUDA.
        sigma: one standard deviation for the batch, or ``B`` of them (floats or a tensor), each
            finite and > 0 (at most :data:`BLUR_MIN_SIGMA`: no blur).

    Returns:
        A new tensor like ``x``: ``out = sum_j w|j| * (sum_i w|i| * x[y+j, x+i])`` for
        ``i, j in -2..2`` (each sum left to right, in float32), ``w`` the taps of
        :func:`blur5_weights`, reflected borders (torch's ``"reflect"`` padding, as torchvision's
        ``gaussian_blur``), rounded to nearest even once. CPU and CUDA give the same bits.
    """
    _require_built()
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"tinyfast.ops.blur5: x must be a (B, 3, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    w = blur5_weights(sigma, x.shape[0])
    return torch.ops.tinyfast.blur5(x, w.to(x.device, non_blocking=x.device.type == "cuda"))


def cutout_(x: torch.Tensor, boxes: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """In place: per sample ``b``, ``x[b, :, y0:y1, x0:x1] = value`` with ``boxes[b] = (y0, x0, y1, x1)``.

    ``x`` is any ``(B, C, H, W)`` tensor (e.g. :func:`augment`'s output; ``value`` is then in
    normalised units, 0 being the dataset mean); ``boxes`` an integer ``(B, 4)`` tensor, clipped to
    the image (an empty or outside box changes nothing). One masked fill over the batch, on ``x``'s
    device, with no host sync. Returns ``x``.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"tinyfast.ops.cutout_: x must be a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    if (not isinstance(boxes, torch.Tensor) or boxes.shape != (x.shape[0], 4)
            or boxes.is_floating_point() or boxes.is_complex()):
        raise ValueError(f"tinyfast.ops.cutout_: boxes must be an integer (B, 4) tensor with B = {x.shape[0]}, "
                         f"got {getattr(boxes, 'dtype', type(boxes))} {tuple(getattr(boxes, 'shape', ()))}")
    number = isinstance(value, numbers.Real) or (isinstance(value, torch.Tensor) and value.numel() == 1)
    if not number or not math.isfinite(float(value)):
        raise ValueError(f"tinyfast.ops.cutout_: value must be a finite number, got {value!r}")
    b = boxes.to(x.device, non_blocking=x.device.type == "cuda")
    ys = torch.arange(x.shape[2], device=x.device)[None]
    xs = torch.arange(x.shape[3], device=x.device)[None]
    in_y = (ys >= b[:, 0:1]) & (ys < b[:, 2:3])
    in_x = (xs >= b[:, 1:2]) & (xs < b[:, 3:4])
    return x.masked_fill_(in_y[:, None, :, None] & in_x[:, None, None, :], float(value))


if _C is not None:
    # Shape/dtype propagation without running a kernel, so the op traces under torch.compile.

    @torch.library.register_fake("tinyfast::blur5")
    def _blur5_fake(x, weights):
        return torch.empty_like(x)

    @torch.library.register_fake("tinyfast::augment")
    def _augment_fake(src, index, theta, color, mean, std, out_h, out_w, dtype, fill, mean_image=None):
        torch._check(src.dim() == 4 and src.dtype == torch.uint8, lambda: "src must be uint8 (N,H,W,3)")
        batch = index.shape[0] if index is not None else src.shape[0]
        buf = torch.empty((batch, out_h, out_w, 3), dtype=dtype, device=src.device)
        return buf.permute(0, 3, 1, 2)

    @torch.library.register_fake("tinyfast::_mean_image_shift")
    def _mean_image_shift_fake(mean_image, std):
        return torch.empty(mean_image.shape, dtype=torch.float32, device=mean_image.device)

    @torch.library.register_fake("tinyfast::augment_out")
    def _augment_out_fake(src, index, theta, color, mean, std, out_h, out_w, fill, out, mean_image=None):
        return None
