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

import torch

__all__ = ["AugParams", "Policy", "PRESETS", "affine_theta", "get_policy", "sample"]

Range = tuple[float, float]

# Columns of the uniform draw matrix, in this fixed order. Every column is drawn for every sample
# even when its range is degenerate, so changing one range never shifts the others' random streams.
_DRAWS = ("rotate", "translate_x", "translate_y", "zoom", "shear", "hflip", "vflip",
          "brightness", "contrast", "saturation")


class AugParams(NamedTuple):
    """Per-sample parameters of :func:`tinyfast.ops.augment`, on the CPU."""

    theta: torch.Tensor  #: float32 (B, 2, 3) inverse affine map, output pixel -> source pixel
    color: torch.Tensor  #: float32 (B, 3) brightness, contrast, saturation factors


def _pair(name: str, value, *, symmetric: bool = False) -> Range:
    if isinstance(value, (int, float)):
        lo, hi = ((-float(value), float(value)) if symmetric else (float(value), float(value)))
    else:
        lo, hi = (float(v) for v in value)
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

    def __post_init__(self):
        # Normalise every field to its canonical form, so equal policies compare equal.
        set_ = object.__setattr__
        set_(self, "rotate", _pair("rotate", self.rotate, symmetric=True))
        if isinstance(self.translate, (int, float)):
            t = abs(float(self.translate))
            set_(self, "translate", (t, t))
        else:
            tx, ty = (abs(float(v)) for v in self.translate)
            set_(self, "translate", (tx, ty))
        set_(self, "zoom", _pair("zoom", self.zoom))
        if self.zoom[0] <= 0:
            raise ValueError(f"Policy.zoom: factors must be > 0, got {self.zoom}")
        set_(self, "shear", _pair("shear", self.shear, symmetric=True))
        if max(abs(v) for v in self.shear) >= 89.0:
            raise ValueError(f"Policy.shear: must be within (-89, 89) degrees, got {self.shear}")
        for name in ("hflip", "vflip"):
            p = float(getattr(self, name))
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"Policy.{name}: probability must be in [0, 1], got {p}")
            set_(self, name, p)
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if isinstance(v, (int, float)):
                v = (max(0.0, 1.0 - float(v)), 1.0 + float(v))
            lo, hi = _pair(name, v)
            if lo < 0:
                raise ValueError(f"Policy.{name}: factors must be >= 0, got {(lo, hi)}")
            set_(self, name, (lo, hi))
        fill = float(self.fill)
        if not 0.0 <= fill <= 255.0:
            raise ValueError(f"Policy.fill: must be in [0, 255], got {fill}")
        set_(self, "fill", fill)

    @property
    def is_identity(self) -> bool:
        """True when every draw is the identity (the op then only normalises)."""
        return self == Policy(fill=self.fill)

    def to_dict(self) -> dict:
        """Plain-dict form (for configs and run records)."""
        return asdict(self)

    def sample(self, batch: int, height: int, width: int, generator: torch.Generator | None = None,
               out_size: tuple[int, int] | None = None) -> AugParams:
        """Draw parameters for ``batch`` source images of ``height`` x ``width``.

        Args:
            batch: number of samples B (>= 1).
            height, width: source image size.
            generator: CPU ``torch.Generator`` every number is drawn from (one ``torch.rand`` call
                of shape ``(B, 10)``); ``None`` uses torch's default CPU generator.
            out_size: ``(Ho, Wo)`` of the op's output; ``None`` = ``(height, width)``.

        Returns:
            :class:`AugParams` with CPU float32 tensors ``theta (B, 2, 3)`` and ``color (B, 3)``.
        """
        if batch < 1:
            raise ValueError(f"Policy.sample: batch must be >= 1, got {batch}")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError("Policy.sample: generator must be a CPU torch.Generator "
                             "(so a seed gives the same parameters whatever the device)")
        u = torch.rand((batch, len(_DRAWS)), generator=generator, dtype=torch.float64)
        col = {name: u[:, i] for i, name in enumerate(_DRAWS)}

        def lerp(r: Range, t: torch.Tensor) -> torch.Tensor:
            return r[0] + (r[1] - r[0]) * t

        angle = lerp(self.rotate, col["rotate"])
        shear = lerp(self.shear, col["shear"])
        zoom = lerp(self.zoom, col["zoom"])
        tx = lerp((-self.translate[0], self.translate[0]), col["translate_x"])
        ty = lerp((-self.translate[1], self.translate[1]), col["translate_y"])
        hflip = col["hflip"] < self.hflip
        vflip = col["vflip"] < self.vflip
        ho, wo = (height, width) if out_size is None else out_size
        theta = affine_theta(angle, (tx * wo, ty * ho), zoom, shear, hflip, vflip,
                             in_size=(height, width), out_size=(ho, wo))
        color = torch.stack([lerp(self.brightness, col["brightness"]),
                             lerp(self.contrast, col["contrast"]),
                             lerp(self.saturation, col["saturation"])], dim=1).to(torch.float32)
        return AugParams(theta, color)


def _snap(x: torch.Tensor) -> torch.Tensor:
    # cos(90 deg) is 6e-17 in float64, not 0: snap such residues so right-angle rotations stay
    # exact pixel permutations in the kernel.
    return torch.where(x.abs() < 1e-12, torch.zeros_like(x), x)


def affine_theta(angle, translate, zoom, shear, hflip, vflip, *, in_size: tuple[int, int],
                 out_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse affine matrices for :func:`tinyfast.ops.augment` from geometric parameters.

    All arguments broadcast over a batch (tensors of shape ``(B,)`` or scalars).

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
    f64 = dict(dtype=torch.float64)
    angle, zoom, shear = (torch.as_tensor(v, **f64) for v in (angle, zoom, shear))
    tx, ty = (torch.as_tensor(v, **f64) for v in translate)
    hflip, vflip = torch.as_tensor(hflip, dtype=torch.bool), torch.as_tensor(vflip, dtype=torch.bool)
    angle, zoom, shear, tx, ty, hflip, vflip = torch.broadcast_tensors(
        angle, zoom, shear, tx, ty, hflip, vflip)
    a = torch.deg2rad(angle)
    cos, sin, tan = _snap(torch.cos(a)), _snap(torch.sin(a)), _snap(torch.tan(torch.deg2rad(shear)))
    # Inverse = F @ diag(W/(zoom*Wo), H/(zoom*Ho)) @ Sh^-1 @ R^-1, with
    # R^-1 = [[cos, -sin], [sin, cos]] (y down) and Sh^-1 = [[1, -tan], [0, 1]].
    sh00, sh01 = cos - tan * sin, -sin - tan * cos
    sh10, sh11 = sin, cos
    fx = torch.where(hflip, -1.0, 1.0).to(torch.float64) * (w / wo) / zoom
    fy = torch.where(vflip, -1.0, 1.0).to(torch.float64) * (h / ho) / zoom
    m00, m01, m10, m11 = fx * sh00, fx * sh01, fy * sh10, fy * sh11
    cxo, cyo = (wo - 1) / 2.0, (ho - 1) / 2.0
    cxi, cyi = (w - 1) / 2.0, (h - 1) / 2.0
    ox, oy = cxo + tx, cyo + ty  # output point that maps to the source centre
    theta = torch.stack([
        torch.stack([m00, m01, cxi - m00 * ox - m01 * oy], dim=-1),
        torch.stack([m10, m11, cyi - m10 * ox - m11 * oy], dim=-1),
    ], dim=-2)
    return theta.reshape(-1, 2, 3).to(torch.float32)


PRESETS: dict[str, Policy] = {
    # Plain normalisation (evaluation, and the identity check).
    "none": Policy(),
    # What the reference notebooks used, one augmentation each.
    "hflip": Policy(hflip=0.5),
    "vflip": Policy(vflip=0.5),
    "flips": Policy(hflip=0.5, vflip=0.5),
    "rotate10": Policy(rotate=10.0),
    "rotate60-zoom-shift": Policy(rotate=60.0, zoom=(1.0 / 1.2, 1.2), translate=0.1),
    "translate10": Policy(translate=0.1),
    "contrast": Policy(contrast=(0.7, 1.3)),
    "color": Policy(brightness=(0.8, 1.2), contrast=(0.7, 1.3), saturation=(0.7, 1.3)),
    # Training ResNet-18 on 64x64 Tiny ImageNet: flips and small shifts/zooms/rotations carry most
    # of the gain; mild colour jitter on top. Shifts fill with the dataset's grey-ish mean.
    "standard": Policy(rotate=10.0, translate=0.1, zoom=(0.9, 1.2), hflip=0.5,
                       brightness=(0.8, 1.2), contrast=(0.8, 1.2), saturation=(0.8, 1.2), fill=114.0),
}
PRESETS["default"] = PRESETS["standard"]


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
