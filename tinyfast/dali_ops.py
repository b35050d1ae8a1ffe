"""The fused op inside a DALI pipeline: :func:`augment` (extra ``tinyfast[dali]``).

``augment(images, theta, color, mean=..., std=..., dtype=...)`` adds the DALI plugin operator
``fn.tinyfast.augment`` (C++ source in ``csrc/dali/``) to the pipeline being defined. The plugin
calls the very kernels of ``torch.ops.tinyfast.augment`` (CPU and CUDA), so its output is bit for
bit the op's on the same inputs, and it runs in DALI's executor, prefetched like any operator::

    from nvidia.dali import fn, pipeline_def
    from tinyfast import dali_ops

    MEAN, STD = read_manifest(data)["mean"], read_manifest(data)["std"]   # tinyfast.data

    @pipeline_def(batch_size=256, num_threads=4, device_id=0)     # device_id=None: CPU only
    def pipe():
        jpegs, labels = fn.readers.webdataset(paths=shards, ext=["jpg", "cls"])  # DIR/train/jpeg/*.tar
        images = fn.decoders.image(jpegs, device="mixed")        # uint8 HWC on the GPU ("cpu" on a CPU)
        theta, color = fn.external_source(source=params, num_outputs=2, batch=True)
        return dali_ops.augment(images, theta, color, mean=MEAN, std=STD, dtype="bfloat16"), labels

(the README's version of this runs as written on a CPU or a GPU, and a test runs it).

``theta`` is per sample the float32 (2, 3) inverse affine map and ``color`` the float32 (3,)
factors, as drawn by :meth:`tinyfast.augment.Policy.sample`. :func:`as_torch` turns the output
batch into the ``(B, 3, Ho, Wo)`` channels-last torch tensor (bfloat16 travels through DALI as its
uint16 bits, DALI having no bfloat16 type).

The plugin ``tinyfast/libtinyfast_dali.so`` is built by ``python csrc/dali/build.py`` (``install.sh``
runs it when DALI is installed) and loaded once, on first use, by
``nvidia.dali.plugin_manager.load_library``.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import torch

try:
    from nvidia.dali import fn, plugin_manager, types
except ImportError as _e:  # the message names what to install
    raise ImportError(f"tinyfast.dali_ops needs NVIDIA DALI, which is not installed ({_e}); "
                      "pip install 'tinyfast[dali]' (package nvidia-dali-cuda130), then build the "
                      "plugin: python csrc/dali/build.py") from None

__all__ = ["PLUGIN", "augment", "as_torch", "load_plugin", "plugin_available"]

#: Where the built plugin lives: next to ``tinyfast/_C*.so``, which it links against.
PLUGIN = Path(__file__).resolve().with_name("libtinyfast_dali.so")

_LOCK = threading.Lock()
_LOADED = False
_DTYPES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}


def plugin_available() -> bool:
    """True when the plugin is built (it may not be loaded yet)."""
    return PLUGIN.is_file()


def load_plugin() -> Path:
    """Load the plugin into DALI (once per process); returns its path.

    Raises:
        RuntimeError: the plugin is not built, or the fused op's extension is missing.
    """
    global _LOADED
    with _LOCK:
        if _LOADED:
            return PLUGIN
        from tinyfast import ops

        ops._require_built()  # torch and tinyfast._C first: the plugin resolves its kernels there
        if not PLUGIN.is_file():
            raise RuntimeError(f"tinyfast.dali_ops: the DALI plugin {PLUGIN} is not built; run "
                               "`python csrc/dali/build.py` from the repository root")
        plugin_manager.load_library(str(PLUGIN))
        _LOADED = True
    return PLUGIN


_NAMES = tuple(_DTYPES.values())
_ACCEPTED = ("float16, bfloat16 or float32: a name, torch.float16/bfloat16/float32, numpy.float16/float32 "
             "or DALI's types.FLOAT16/FLOAT")


def _dtype_name(dtype, where: str = "augment") -> str:
    """The output dtype's name from any of its spellings: ``"float16"``, ``torch.float16``,
    ``numpy.float16`` (or ``numpy.dtype``), DALI's ``types.FLOAT16`` (``types.FLOAT`` is float32;
    ``types.BFLOAT16`` where DALI has it); anything else is one ``ValueError`` naming ``dtype``."""
    name = None
    if isinstance(dtype, torch.dtype):
        name = _DTYPES.get(dtype)
    elif isinstance(dtype, types.DALIDataType):
        name = {"FLOAT16": "float16", "FLOAT": "float32", "BFLOAT16": "bfloat16"}.get(dtype.name)
    elif isinstance(dtype, str):
        name = dtype if dtype in _NAMES else None
    else:
        import numpy as np
        try:  # numpy.float16, numpy.dtype("float32"); never a string (np.dtype("float") is float64)
            name = np.dtype(dtype).name if dtype is not None and not isinstance(dtype, (int, float)) else None
        except TypeError:
            pass
        name = name if name in _NAMES else None
    if name is None:
        raise ValueError(f"tinyfast.dali_ops.{where}: dtype must be {_ACCEPTED}; got {dtype!r}")
    return name


def _check_host_params(theta: list, color: list) -> tuple[list, list]:
    """Refuse non-finite host ``theta``/``color`` as :func:`tinyfast.ops.augment` does, by its own
    check (one rule, one message), on a one-pixel dummy batch; other faults (shapes, dtypes) are
    left to the operator's checks, which name them."""
    import numpy as np

    from tinyfast import ops
    ok = (len(theta) == len(color) and len(theta) > 0
          and all(t.dtype == np.float32 and t.shape == (2, 3) for t in theta)
          and all(c.dtype == np.float32 and c.shape == (3,) for c in color))
    if ok:
        t, c = torch.from_numpy(np.stack(theta)), torch.from_numpy(np.stack(color))
        try:
            ops.augment(torch.zeros((len(t), 1, 1, 3), dtype=torch.uint8), t, c, (0.0,) * 3, (1.0,) * 3,
                        out_size=(1, 1))
        except ValueError as e:
            raise ValueError(f"tinyfast.dali_ops.augment: {str(e).removeprefix('tinyfast.ops.augment: ')}") from None
    return theta, color


def augment(images, theta, color, *, mean: Sequence[float], std: Sequence[float],
            dtype=torch.float16, out_size=None, fill: float = 0.0):
    """Add the fused augmentation to the DALI pipeline being defined (inside a ``pipeline_def``).

    Args:
        images: DALI node of uint8 HWC images with 3 channels (CPU or GPU; any size per sample).
        theta: node of per-sample float32 ``(2, 3)`` inverse affine maps (output pixel -> source
            pixel), e.g. from ``fn.external_source`` fed by :meth:`tinyfast.augment.Policy.sample`.
        color: node of per-sample float32 ``(3,)`` factors (brightness, contrast, saturation).
        mean, std: 3 floats each, per-channel statistics in ``[0, 1]`` units.
        dtype: float16, bfloat16 or float32, spelt as a name (``"float16"``), a torch dtype, a numpy
            dtype or DALI's ``types.FLOAT16`` / ``types.FLOAT`` (as ``fn.cast`` takes them); any
            other value is a ``ValueError`` naming ``dtype`` and these.
        out_size: ``(Ho, Wo)`` for every sample, or a node of per-sample int32 ``(2,)``;
            ``None`` keeps each source's size.
        fill: value (0..255) of source pixels outside the image.

    Returns:
        The output node: HWC ``(Ho, Wo, 3)`` per sample, on ``images``' device (float16, float32,
        or bfloat16 as uint16 bits; :func:`as_torch` converts a run's output). Invalid arguments or
        inputs fail in DALI (at build or run) with a message starting ``tinyfast.dali_ops.augment:``;
        as in :func:`tinyfast.ops.augment`, a non-finite ``theta``/``color`` on the host is one
        (device-resident parameters are not read back).
    """
    dtype = _dtype_name(dtype)
    load_plugin()
    gpu = getattr(images, "device", "cpu") == "gpu"
    if getattr(theta, "device", "cpu") == "cpu" and getattr(color, "device", "cpu") == "cpu":
        # Host parameters: the op's rule (non-finite is an error), checked in the pipeline.
        theta, color = fn.python_function(theta, color, function=_check_host_params, num_outputs=2,
                                          batch_processing=True)
    if gpu:  # the GPU backend reads its per-sample parameters from device memory
        theta = theta.gpu() if theta.device == "cpu" else theta
        color = color.gpu() if color.device == "cpu" else color
    kw = {}
    if out_size is not None:
        kw["out_size"] = out_size if hasattr(out_size, "device") else [int(v) for v in out_size]
    return fn.tinyfast.augment(images, theta, color, mean=[float(v) for v in mean],
                               std=[float(v) for v in std], dtype=dtype,
                               fill=float(fill), device="gpu" if gpu else "cpu", **kw)


def as_torch(batch, dtype=torch.float16) -> torch.Tensor:
    """A run's :func:`augment` output (a DALI ``TensorList``, uniform sizes) as the torch
    ``(B, 3, Ho, Wo)`` channels-last tensor of ``dtype``.

    Zero-copy (DLPack): the tensor views DALI's buffer, which DALI reuses a few runs later; copy
    it to keep it longer.
    """
    bf16 = _dtype_name(dtype, "as_torch") == "bfloat16"
    t = torch.from_dlpack(batch.as_tensor())  # (B, Ho, Wo, 3)
    if bf16:
        t = t.view(torch.bfloat16)
    return t.permute(0, 3, 1, 2)
