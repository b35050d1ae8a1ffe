"""Augmentation policies: the random draws that feed :func:`tinyfast.ops.augment`.

A :class:`Policy` is a frozen set of ranges. :meth:`Policy.sample` draws every random number of a
batch from one seeded ``torch.Generator`` (on the CPU, in a fixed order) and turns them into the
op's per-sample parameters (:class:`AugParams`): an inverse affine matrix ``theta`` (rotation,
shear, zoom, translation and flips folded into one 2x3 map from output pixel to source pixel) and
colour factors. The kernels are deterministic functions of these, so one seed gives identical
parameters, and identical images, on CPU and CUDA.

Geometry (pixel centres at integer coordinates, y pointing down). With ``c_in = ((W-1)/2, (H-1)/2)``,
``c_out = ((Wo-1)/2, (Ho-1)/2)``, the forward map of a sample is::

    out - c_out = t + R(angle) @ Sh(shear) @ diag(zoom*Wo/W, zoom*Ho/H) @ F @ (src - c_in)

where ``R`` rotates counter-clockwise on screen by ``angle`` degrees, ``Sh = [[1, tan(shear)],
[0, 1]]``, ``F = diag(±1, ±1)`` are the flips, ``t`` is the shift in output pixels; ``theta`` is its
inverse. ``zoom > 1`` magnifies (shows a smaller part of the source). With an output size different
from the input, the identity policy is a plain bilinear resize (``align_corners=False``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["AugParams", "Params", "Policy", "finish", "PRESETS", "affine_theta", "get_policy", "sample"]

Range = tuple[float, float]

# Columns of the uniform draw matrix, in this fixed order. Every column is drawn for every sample
# even when its range is degenerate, so changing one range never shifts the others' random streams.
_DRAWS = ("rotate", "translate_x", "translate_y", "zoom", "shear", "hflip", "vflip",
          "brightness", "contrast", "saturation")


class AugParams(NamedTuple):
    """Per-sample parameters of :func:`tinyfast.ops.augment`, on the CPU, and of the optional blur and
    cutout that follow it (:func:`finish`); a 2-tuple ``(theta, color)`` when those are off, so
    ``theta, color = params`` keeps working for the policies without them."""

    theta: torch.Tensor  #: float32 (B, 2, 3) inverse affine map, output pixel -> source pixel
    color: torch.Tensor  #: float32 (B, 3) brightness, contrast, saturation factors

    def with_geometry(self, theta: torch.Tensor, color: torch.Tensor) -> "AugParams":
        """The same draws with ``theta`` / ``color`` replaced (e.g. by device copies); blur and
        cutout are kept (``_replace`` would drop them)."""
        if self.blur is None and self.cutout is None:
            return AugParams(theta, color)
        return Params(theta, color, self.blur, self.cutout)

    @property
    def blur(self) -> torch.Tensor | None:
        """float32 ``(B,)`` blur sigma per sample in output pixels, 0 = not blurred; None = no blur."""
        return getattr(self, "_blur", None)

    @property
    def cutout(self) -> torch.Tensor | None:
        """int64 ``(B, 4)`` cutout boxes ``(y0, x0, y1, x1)`` in output pixels (empty = none); None = no cutout."""
        return getattr(self, "_cutout", None)


class Params(AugParams):
    """:class:`AugParams` carrying the blur / cutout draws (what :meth:`Policy.sample` returns when
    the policy enables either); still unpacks as ``(theta, color)``."""

    def __new__(cls, theta, color, blur=None, cutout=None):
        self = super().__new__(cls, theta, color)
        self._blur, self._cutout = blur, cutout
        return self

    def __getnewargs__(self):
        # Pickling (DataLoader workers) keeps the extra draws.
        return (self.theta, self.color, self._blur, self._cutout)


def _num(name: str, value, what: str = "a number") -> float:
    """``float(value)`` of a real number (not a string, not None); else one line naming the field."""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    raise ValueError(f"Policy.{name}: must be {what}, got {value!r}")


def _pair(name: str, value, *, symmetric: bool = False) -> Range:
    what = "a number or a (lo, hi) pair of numbers"
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list, np.ndarray)):
        v = _num(name, value, what)
        lo, hi = (-v, v) if symmetric else (v, v)
    elif len(value) != 2:
        raise ValueError(f"Policy.{name}: must be {what}, got {value!r}")
    else:
        lo, hi = (_num(name, v, what) for v in value)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"Policy.{name}: need a finite range lo <= hi, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class Policy:
    """Ranges of the random augmentation; ``Policy()`` is the identity (plain normalisation).

    Every value is drawn uniformly and independently per sample.

    Attributes:
        rotate: degrees; a number ``a`` means ``[-a, a]``, or an explicit ``(lo, hi)``.
        translate: fraction of the output size; a number ``t`` means ``[-t, t]`` on both axes, or
            ``(tx, ty)`` for per-axis maxima.
        zoom: ``(lo, hi)`` magnification factor (``> 1`` zooms in); a number ``z`` means fixed ``z``.
        shear: x-shear angle in degrees; a number ``a`` means ``[-a, a]``, or ``(lo, hi)``.
        hflip, vflip: probabilities of a horizontal / vertical flip.
        brightness, contrast, saturation: ``(lo, hi)`` factor ranges (1 = unchanged); a number
            ``f`` means ``[max(0, 1-f), 1+f]`` like torchvision's ``ColorJitter``.
        fill: value, in ``0..255`` pixel units, of pixels brought in from outside the image
            (passed as ``fill`` to the op).
        blur: probability of a 5x5 Gaussian blur (:func:`tinyfast.ops.blur5`) after the op, with a
            sigma drawn from ``blur_sigma`` (output pixels).
        cutout: probability of one cutout square (DeVries & Taylor): side ``cutout_size`` (a
            fraction of the output size, drawn from a range or fixed), centre uniform over the
            image, clipped at the border, set to 0 in normalised units (the mean).
    """

    rotate: float | Range = 0.0
    translate: float | Range = 0.0
    zoom: float | Range = 1.0
    shear: float | Range = 0.0
    hflip: float = 0.0
    vflip: float = 0.0
    brightness: float | Range = (1.0, 1.0)
    contrast: float | Range = (1.0, 1.0)
    saturation: float | Range = (1.0, 1.0)
    fill: float = 0.0
    blur: float = 0.0
    blur_sigma: float | Range = (0.1, 2.0)
    cutout: float = 0.0
    cutout_size: float | Range = 0.5

    def __post_init__(self):
        # Normalise every field to its canonical form, so equal policies compare equal.
        set_ = object.__setattr__
        set_(self, "rotate", _pair("rotate", self.rotate, symmetric=True))
        t, what = self.translate, "a number or a (tx, ty) pair of numbers"
        t = (t, t) if not isinstance(t, (tuple, list, np.ndarray, str, bytes)) else t
        if isinstance(t, (str, bytes)) or len(t) != 2:
            raise ValueError(f"Policy.translate: must be {what}, got {self.translate!r}")
        set_(self, "translate", tuple(abs(_num("translate", v, what)) for v in t))
        if not all(math.isfinite(v) for v in self.translate):
            raise ValueError(f"Policy.translate: must be finite, got {self.translate}")
        set_(self, "zoom", _pair("zoom", self.zoom))
        if self.zoom[0] <= 0:
            raise ValueError(f"Policy.zoom: factors must be > 0, got {self.zoom}")
        set_(self, "shear", _pair("shear", self.shear, symmetric=True))
        if max(abs(v) for v in self.shear) >= 89.0:
            raise ValueError(f"Policy.shear: must be within (-89, 89) degrees, got {self.shear}")
        for name in ("hflip", "vflip", "blur", "cutout"):
            p = _num(name, getattr(self, name), "a probability (a number)")
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"Policy.{name}: probability must be in [0, 1], got {p}")
            set_(self, name, p)
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if not isinstance(v, (tuple, list, np.ndarray, str, bytes)):
                f = _num(name, v, "a number or a (lo, hi) pair of numbers")
                v = (max(0.0, 1.0 - f), 1.0 + f)
            lo, hi = _pair(name, v)
            if lo < 0:
                raise ValueError(f"Policy.{name}: factors must be >= 0, got {(lo, hi)}")
            set_(self, name, (lo, hi))
        set_(self, "blur_sigma", _pair("blur_sigma", self.blur_sigma))
        if self.blur_sigma[0] <= 0:
            raise ValueError(f"Policy.blur_sigma: must be > 0, got {self.blur_sigma}")
        set_(self, "cutout_size", _pair("cutout_size", self.cutout_size))
        if not (0.0 <= self.cutout_size[0] and self.cutout_size[1] <= 1.0):
            raise ValueError(f"Policy.cutout_size: must be within [0, 1], got {self.cutout_size}")
        fill = _num("fill", self.fill)
        if not 0.0 <= fill <= 255.0:
            raise ValueError(f"Policy.fill: must be in [0, 255], got {fill}")
        set_(self, "fill", fill)

    @property
    def is_identity(self) -> bool:
        """True when every draw is the identity (the op then only normalises)."""
        # The blur / cutout ranges do not matter while their probabilities are 0.
        return self == Policy(fill=self.fill, blur_sigma=self.blur_sigma, cutout_size=self.cutout_size)

    def to_dict(self) -> dict:
        """Plain-dict form (for configs and run records)."""
        return asdict(self)

    def _ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) of the value each column of the uniform draw is mapped to (see _DRAWS)."""
        tx, ty = self.translate
        pairs = [self.rotate, (-tx, tx), (-ty, ty), self.zoom, self.shear, (0.0, 1.0), (0.0, 1.0),
                 self.brightness, self.contrast, self.saturation]
        arr = np.array(pairs, dtype=np.float64)
        return arr[:, 0], arr[:, 1]

    def sample(self, batch: int, height: int, width: int, generator: torch.Generator | None = None,
               out_size: tuple[int, int] | None = None) -> AugParams:
        """Draw parameters for ``batch`` source images of ``height`` x ``width``.

        Args:
            batch: number of samples B (>= 1).
            height, width: source image size.
            generator: CPU ``torch.Generator`` every number is drawn from (one ``torch.rand`` call
                of shape ``(B, 10)``, then ``(B, 2)`` when blur is enabled and ``(B, 4)`` when
                cutout is); ``None`` uses torch's default CPU generator.
            out_size: ``(Ho, Wo)`` of the op's output; ``None`` = ``(height, width)``.

        Returns:
            :class:`AugParams` with CPU float32 tensors ``theta (B, 2, 3)`` and ``color (B, 3)``;
            a :class:`Params` (also carrying ``blur`` and ``cutout``, drawn for ``out_size``)
            when the policy enables blur or cutout.
        """
        if batch < 1:
            raise ValueError(f"Policy.sample: batch must be >= 1, got {batch}")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError("Policy.sample: generator must be a CPU torch.Generator "
                             "(so a seed gives the same parameters whatever the device)")
        # One draw, then float64 NumPy: a few microseconds per call even for one sample (a
        # DataLoader worker calls this per image), and the same code for any batch size.
        u = torch.rand((batch, len(_DRAWS)), generator=generator, dtype=torch.float64).numpy()
        lo, hi = self._ranges()
        v = lo + (hi - lo) * u
        ho, wo = (height, width) if out_size is None else out_size
        theta = affine_theta(v[:, 0], (v[:, 1] * wo, v[:, 2] * ho), v[:, 3], v[:, 4],
                             u[:, 5] < self.hflip, u[:, 6] < self.vflip,
                             in_size=(height, width), out_size=(ho, wo))
        color = torch.from_numpy(v[:, 7:10].astype(np.float32))
        if self.blur == 0 and self.cutout == 0:
            return AugParams(theta, color)
        # Drawn after the columns above, and only when enabled: the other policies' streams (and
        # the pinned draws of the presets without blur/cutout) do not move.
        return Params(theta, color, _blur_sigmas(self, batch, generator),
                      _cutout_boxes(self, batch, ho, wo, generator))


def _blur_sigmas(pol: Policy, batch: int, generator) -> torch.Tensor | None:
    """float32 ``(B,)`` sigma (0 = no blur): one ``(B, 2)`` draw (apply?, sigma)."""
    if pol.blur == 0:
        return None
    u = torch.rand((batch, 2), generator=generator, dtype=torch.float64).numpy()
    lo, hi = pol.blur_sigma
    return torch.from_numpy(np.where(u[:, 0] < pol.blur, lo + (hi - lo) * u[:, 1], 0.0).astype(np.float32))


def _cutout_boxes(pol: Policy, batch: int, ho: int, wo: int, generator) -> torch.Tensor | None:
    """int64 ``(B, 4)`` boxes ``(y0, x0, y1, x1)``: one ``(B, 4)`` draw (apply?, size, cy, cx)."""
    if pol.cutout == 0:
        return None
    u = torch.rand((batch, 4), generator=generator, dtype=torch.float64).numpy()
    lo, hi = pol.cutout_size
    frac = lo + (hi - lo) * u[:, 1]
    sh, sw = np.rint(frac * ho).astype(np.int64), np.rint(frac * wo).astype(np.int64)
    cy, cx = np.floor(u[:, 2] * ho).astype(np.int64), np.floor(u[:, 3] * wo).astype(np.int64)
    y0, x0 = np.clip(cy - sh // 2, 0, ho), np.clip(cx - sw // 2, 0, wo)
    y1, x1 = np.clip(cy - sh // 2 + sh, 0, ho), np.clip(cx - sw // 2 + sw, 0, wo)
    boxes = np.stack([y0, x0, y1, x1], axis=1)
    boxes[u[:, 0] >= pol.cutout] = 0
    return torch.from_numpy(boxes)


def _snap(x: np.ndarray) -> np.ndarray:
    # cos(90 deg) is 6e-17 in float64, not 0: snap such residues so right-angle rotations stay
    # exact pixel permutations in the kernel.
    return np.where(np.abs(x) < 1e-12, 0.0, x)


def _f64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def affine_theta(angle, translate, zoom, shear, hflip, vflip, *, in_size: tuple[int, int],
                 out_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse affine matrices for :func:`tinyfast.ops.augment` from geometric parameters.

    All arguments broadcast over a batch (tensors/arrays of shape ``(B,)`` or scalars).

    Args:
        angle: counter-clockwise rotation in degrees.
        translate: ``(tx, ty)`` shift of the content in output pixels.
        zoom: magnification (> 0).
        shear: x-shear angle in degrees.
        hflip, vflip: bool flips (applied to the source, before everything else).
        in_size: source ``(H, W)``; out_size: output ``(Ho, Wo)``, default ``in_size``.

    Returns:
        float32 ``(B, 2, 3)`` CPU tensor; the geometry is in this module's docstring.
    """
    h, w = in_size
    ho, wo = in_size if out_size is None else out_size
    angle, zoom, shear, tx, ty = (_f64(v) for v in (angle, zoom, shear, *translate))
    hflip, vflip = (np.asarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v, dtype=bool)
                    for v in (hflip, vflip))
    shape = np.broadcast(angle, zoom, shear, tx, ty, hflip, vflip).shape
    a = np.deg2rad(angle)
    cos, sin, tan = _snap(np.cos(a)), _snap(np.sin(a)), _snap(np.tan(np.deg2rad(shear)))
    # Inverse = F @ diag(W/(zoom*Wo), H/(zoom*Ho)) @ Sh^-1 @ R^-1, with
    # R^-1 = [[cos, -sin], [sin, cos]] (y down) and Sh^-1 = [[1, -tan], [0, 1]].
    fx = np.where(hflip, -w / wo, w / wo) / zoom
    fy = np.where(vflip, -h / ho, h / ho) / zoom
    theta = np.empty(shape + (6,), dtype=np.float64)
    m00 = theta[..., 0] = fx * (cos - tan * sin)
    m01 = theta[..., 1] = fx * (-sin - tan * cos)
    m10 = theta[..., 3] = fy * sin
    m11 = theta[..., 4] = fy * cos
    ox, oy = (wo - 1) / 2.0 + tx, (ho - 1) / 2.0 + ty  # output point that maps to the source centre
    theta[..., 2] = (w - 1) / 2.0 - m00 * ox - m01 * oy
    theta[..., 5] = (h - 1) / 2.0 - m10 * ox - m11 * oy
    return torch.from_numpy(theta.reshape(-1, 2, 3).astype(np.float32))


PRESETS: dict[str, Policy] = {
    # Plain normalisation (evaluation, and the identity check).
    "none": Policy(),
    # What the reference notebooks used, one augmentation each.
    "hflip": Policy(hflip=0.5),
    "vflip": Policy(vflip=0.5),
    "flips": Policy(hflip=0.5, vflip=0.5),
    "rotate10": Policy(rotate=10.0),
    # Bastidas: rotations up to 60 degrees, "zoomed in up to 1.2x" (never out), 10% shifts (chosen).
    "rotate60-zoom-shift": Policy(rotate=60.0, zoom=(1.0, 1.2), translate=0.1),
    "translate10": Policy(translate=0.1),
    "contrast": Policy(contrast=(0.7, 1.3)),
    "color": Policy(brightness=(0.8, 1.2), contrast=(0.7, 1.3), saturation=(0.7, 1.3)),
    # Centre crop 56x56 resized back to 64x64 is a fixed zoom of 64/56 about the centre (bilinear).
    "crop56": Policy(zoom=64.0 / 56.0),
    # Mkrtchyan's set 1 (horizontal flip, centre crop 56, resize 64) and set 2 without its Gaussian
    # blur (rotate +-10 degrees, horizontal and vertical flips).
    "hflip-crop56": Policy(zoom=64.0 / 56.0, hflip=0.5),
    "rotate10-flips": Policy(rotate=10.0, hflip=0.5, vflip=0.5),
    # Mkrtchyan's set 2 in full: that plus a 5x5 Gaussian blur, sigma 0.1-2 (torchvision's
    # GaussianBlur(5, (0.1, 2)), applied to every image).
    "skoltech2": Policy(rotate=10.0, hflip=0.5, vflip=0.5, blur=1.0, blur_sigma=(0.1, 2.0)),
    # Cutout (DeVries & Taylor 2017): one half-size square per image, with horizontal flips.
    "cutout": Policy(hflip=0.5, cutout=1.0, cutout_size=0.5),
    # UCI CS172B names flips, shifts and rotations without amounts: 10% shifts, +-10 degrees.
    "uci": Policy(rotate=10.0, translate=0.1, hflip=0.5),
    # Kran's Keras ImageDataGenerator as tf.keras 2.x reads it: rotation_range 8 (degrees), shifts
    # 0.1 (of the size), shear_range 0.3 (degrees since Keras 2.2.4; radians before), zoom_range
    # 0.1 (Keras maps output to input by z in [0.9, 1.1]: a magnification 1/z, in and out; it draws
    # x and y apart, this one isotropic factor), both flips. Keras fills with the nearest edge
    # pixel; the op fills with a constant (grey here).
    "ucsc": Policy(rotate=8.0, translate=0.1, shear=0.3, zoom=(1.0 / 1.1, 1.0 / 0.9),
                   hflip=0.5, vflip=0.5, fill=114.0),
    # Training ResNet-18 on 64x64 Tiny ImageNet: flips and small shifts/zooms/rotations carry most
    # of the gain; mild colour jitter on top. Shifts fill with the dataset's grey-ish mean.
    "standard": Policy(rotate=10.0, translate=0.1, zoom=(0.9, 1.2), hflip=0.5,
                       brightness=(0.8, 1.2), contrast=(0.8, 1.2), saturation=(0.8, 1.2), fill=114.0),
}
PRESETS["default"] = PRESETS["standard"]


def finish(x: torch.Tensor, params: AugParams) -> torch.Tensor:
    """The blur and cutout of ``params`` applied to the op's output ``x`` (``(B, 3, Ho, Wo)``,
    channels-last, on any device): what every fused loader runs after :func:`tinyfast.ops.augment`,
    so they stay bit-identical. Returns ``x`` itself when there is neither (cutout is in place)."""
    from tinyfast import ops

    sigma, boxes = params.blur, params.cutout
    if sigma is not None and bool((sigma > 0).any()):
        # One pass over the batch; samples not drawn for a blur get the taps (1, 0, 0), an exact
        # identity, so no gather/scatter of the blurred subset is needed.
        on = sigma > 0
        w = torch.zeros(len(sigma), 3)
        w[:, 0] = 1.0
        w[on] = ops.blur5_weights(sigma[on], int(on.sum()))
        cuda = x.device.type == "cuda"
        # Pinned, so the copy is queued on the stream and the host does not wait.
        x = torch.ops.tinyfast.blur5(x, (w.pin_memory() if cuda else w).to(x.device, non_blocking=cuda))
    if boxes is not None and bool((boxes[:, 2:] > boxes[:, :2]).all(1).any()):
        ops.cutout_(x, boxes.pin_memory() if x.device.type == "cuda" else boxes)
    return x


def get_policy(name_or_policy: str | Policy | None) -> Policy:
    """A :class:`Policy` from a preset name (see :data:`PRESETS`), a Policy, or ``None`` (= "none")."""
    if name_or_policy is None:
        return PRESETS["none"]
    if isinstance(name_or_policy, Policy):
        return name_or_policy
    try:
        return PRESETS[str(name_or_policy)]
    except KeyError:
        raise ValueError(f"unknown augmentation policy {name_or_policy!r}; "
                         f"choose one of {', '.join(sorted(PRESETS))}") from None


def sample(policy: str | Policy | None, batch: int, height: int, width: int,
           generator: torch.Generator | None = None,
           out_size: tuple[int, int] | None = None) -> AugParams:
    """``get_policy(policy).sample(batch, height, width, generator, out_size)``."""
    return get_policy(policy).sample(batch, height, width, generator, out_size)


if __name__ == "__main__":  # the preview's CLI lives with the other CLIs (no import back here)
    raise SystemExit("python -m tinyfast.augment: error: the preview grid is "
                     "`python -m tinyfast.preview --preview OUT.png`")
