"""The fused op inside an FFCV pipeline: :class:`Augment`, an FFCV ``Operation`` (extra ``tinyfast[ffcv]``).

Put it in an image pipeline after ``ToTensor()`` (and ``ToDevice(...)`` to augment on a GPU)::

    from ffcv.fields.decoders import SimpleRGBImageDecoder
    from ffcv.transforms import ToDevice, ToTensor
    from tinyfast.ffcv_ops import Augment

    aug = Augment("standard", mean=(0.48, 0.448, 0.398), std=(0.277, 0.269, 0.282),
                  dtype=torch.bfloat16, seed=0)
    pipelines = {"image": [SimpleRGBImageDecoder(), ToTensor(), ToDevice("cuda:0"), aug], ...}

Each batch is one ``torch.ops.tinyfast.augment`` call on the uint8 NHWC batch FFCV produced, so it
runs in FFCV's prefetching thread (on its side CUDA stream), and yields ``(B, 3, Ho, Wo)``
channels-last images in ``dtype`` (no ``ToTorchImage`` needed). Parameters come from the shared
sampler: batch ``b`` of epoch ``e`` draws :meth:`tinyfast.augment.Policy.sample` from a CPU generator
seeded with ``derive_seed(seed, e, rank, b)``, exactly as the loaders of :mod:`tinyfast.loaders`
do, so the same seed gives the same images as the ``gpu`` loader.

Epochs: every pass over an FFCV ``Loader`` runs in a fresh thread; a pass starts at
``(epoch, batch)`` given by the last :meth:`Augment.set_epoch` call, or, without one, at batch 0 of
the epoch after the previous pass's (like FFCV's own epoch counter), so each epoch draws fresh
parameters.

Output size: setting :attr:`Augment.out_size` during a pass reaches the batches FFCV has not
prepared yet (up to ``batches_ahead`` later). For an exact switch at batch ``b``, end the pass and
start a new one there with ``set_epoch(epoch, b)``, as the ``ffcv`` loader does.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import replace

import torch

from tinyfast._util import torch_threads_kept

try:
    with torch_threads_kept():  # FFCV's import sets torch's thread count to 1
        from ffcv.pipeline.operation import Operation
except ImportError as _e:  # the message names what to install
    raise ImportError(f"tinyfast.ffcv_ops needs FFCV, which is not installed ({_e}); "
                      "pip install 'tinyfast[ffcv]' (FFCV 1.0.2; needs libturbojpeg, OpenCV and "
                      "pkg-config, see install.sh)") from None

from tinyfast import ops
from tinyfast.augment import finish, get_policy
from tinyfast.loaders.base import derive_seed, resize_mean_image

__all__ = ["Augment"]

_NAME = "tinyfast.ffcv_ops.Augment"


def _check_op_args(mean, std, dtype, fill, out_size) -> None:
    """Validate by the op's own checks, on a one-pixel image: one set of rules, one message."""
    one = torch.zeros((1, 1, 1, 3), dtype=torch.uint8)
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    try:
        ops.augment(one, theta, torch.ones(1, 3), mean, std, dtype=dtype, fill=fill, out_size=out_size)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{_NAME}: {str(e).removeprefix('tinyfast.ops.augment: ')}") from None


def _check_mean_image(mean_image) -> None:
    if mean_image is None:
        return
    if not isinstance(mean_image, torch.Tensor):
        raise ValueError(f"{_NAME}: mean_image must be a float32 (H, W, 3) tensor, got "
                         f"{type(mean_image).__name__}")
    if mean_image.dtype != torch.float32 or mean_image.dim() != 3 or mean_image.shape[2] != 3 \
            or not mean_image.numel():
        raise ValueError(f"{_NAME}: mean_image must be a float32 (H, W, 3) tensor, got "
                         f"{mean_image.dtype} of shape {tuple(mean_image.shape)}")
    if not bool(torch.isfinite(mean_image).all()):
        raise ValueError(f"{_NAME}: mean_image has a non-finite value")


class _Failed:
    """What an epoch thread queues in place of a batch when the Operation failed: FFCV's
    ``EpochIterator.__next__`` unpacks it (``slot, result = ...``), which raises the error there,
    in the user's loop (FFCV's thread would otherwise just die and the loop wait for ever)."""

    def __init__(self, error: BaseException):
        self.error = error

    def __iter__(self):
        raise self.error


def _hand_over(error: BaseException) -> None:
    """Pass ``error`` from FFCV's epoch thread to its consumer, then end the thread quietly.
    Outside an epoch thread (the function called directly) the error is simply raised."""
    thread = threading.current_thread()
    queue, stop = getattr(thread, "output_queue", None), getattr(thread, "terminate_event", None)
    if queue is None or stop is None:
        raise error
    import queue as q
    while not stop.is_set():  # as FFCV queues a batch: the consumer may be slow, or gone
        try:
            queue.put(_Failed(error), timeout=0.5)
            break
        except q.Full:
            pass
    raise SystemExit  # threading reports every exception but this one


class Augment(Operation):
    """FFCV ``Operation`` running :func:`tinyfast.ops.augment` on each batch (see the module docstring).

    Args:
        policy: a :class:`tinyfast.augment.Policy` or preset name (``"none"`` only normalises).
        mean, std: 3 floats each, per-channel statistics in ``[0, 1]`` units.
        dtype: output dtype (``torch.float16``, ``torch.bfloat16`` or ``torch.float32``).
        seed: seed of the shared sampler.
        rank: the process's rank (its draws differ from other ranks', as in the loaders).
        out_size: ``(Ho, Wo)`` to resample to; ``None`` keeps the decoded size.
        fill: value (0..255) outside the source; ``None`` = the policy's ``fill``.
        mean_image: optional float32 ``(H, W, 3)`` mean image (``[0, 1]`` units) at the decoded
            size, subtracted instead of ``mean`` (mean-image zero-centering; resized bilinearly
            when ``out_size`` differs). The policy's blur and cutout follow the op, with the same
            draws as the loaders' (:func:`tinyfast.augment.finish`).

    Raises:
        ValueError: an invalid argument, or (when FFCV builds the pipeline) a previous stage that
            does not deliver a uint8 ``(H, W, 3)`` torch tensor; the message starts with
            ``tinyfast.ffcv_ops.Augment:``.
    """

    def __init__(self, policy="standard", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                 dtype: torch.dtype = torch.float16, seed: int = 0, *, rank: int = 0,
                 out_size: tuple[int, int] | None = None, fill: float | None = None,
                 mean_image: torch.Tensor | None = None):
        super().__init__()
        try:
            self.policy = get_policy(policy)
        except ValueError as e:
            raise ValueError(f"{_NAME}: {e}") from None
        _check_op_args(mean, std, dtype, self.policy.fill if fill is None else fill, out_size)
        _check_mean_image(mean_image)
        self.fill = float(self.policy.fill if fill is None else fill)
        self.out_size = None if out_size is None else (int(out_size[0]), int(out_size[1]))
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.dtype, self.seed, self.rank = dtype, int(seed), int(rank)
        self.mean_image = mean_image
        self._mean_images: dict = {}   # (size, device) -> mean image there
        self._lock = threading.Lock()
        self._plan: tuple[int, int] | None = None   # (epoch, first batch) of the next pass
        self._last_epoch = -1
        self._passes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # thread -> [epoch, batch]

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """The next pass is epoch ``epoch`` and its first batch is batch ``start`` (resume)."""
        with self._lock:
            self._plan = (int(epoch), int(start))

    def params(self, epoch: int, b: int, n: int, height: int, width: int, out_size=None):
        """``AugParams(theta, color)`` (CPU) of batch ``b`` of ``epoch``: ``n`` sources of
        ``height`` x ``width`` resampled to ``out_size`` (``None``: the same size)."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, epoch, self.rank, b))
        return self.policy.sample(n, height, width, g, out_size=out_size)

    def mean_image_at(self, size: tuple[int, int], device: torch.device) -> torch.Tensor | None:
        """:attr:`mean_image` at output ``size`` on ``device`` (cached), or ``None``."""
        if self.mean_image is None:
            return None
        key = (tuple(size), str(device))
        if key not in self._mean_images:
            self._mean_images[key] = resize_mean_image(self.mean_image, size).to(device)
        return self._mean_images[key]

    def _next_batch(self) -> tuple[int, int]:
        """(epoch, batch) of the calling pass's next batch; a new thread is a new pass."""
        me = threading.current_thread()
        with self._lock:
            state = self._passes.get(me)
            if state is None:
                epoch, start = self._plan if self._plan is not None else (self._last_epoch + 1, 0)
                self._plan, self._last_epoch = None, epoch
                state = self._passes[me] = [epoch, start]
            epoch, b = state
            state[1] += 1
        return epoch, b

    def generate_code(self):
        op = self

        def tinyfast_augment(images, _dst):
            try:
                return augment_batch(images)
            except Exception as e:  # noqa: BLE001 - handed to the user's loop, whatever it is
                _hand_over(e)

        def augment_batch(images):
            n, h, w = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])
            epoch, b = op._next_batch()
            size = op.out_size  # read once: it may be set meanwhile from another thread
            params = op.params(epoch, b, n, h, w, size)
            theta, color = params
            if images.is_cuda:
                # One pinned copy on FFCV's current (side) stream; the host does not wait.
                both = torch.cat([theta.reshape(n, 6), color], dim=1).pin_memory()
                both = both.to(images.device, non_blocking=True)
                theta, color = both[:, :6].reshape(n, 2, 3), both[:, 6:].contiguous()
            out = ops.augment(images, theta, color, op.mean, op.std, out_size=size,
                              dtype=op.dtype, fill=op.fill,
                              mean_image=op.mean_image_at(size or (h, w), images.device))
            out = finish(out, params)
            if images.is_cuda:
                # Allocated on FFCV's side stream but read on the consumer's: tell the caching
                # allocator, so the block is not reused before the consumer is done with it.
                # FFCV's pass thread knows that stream (the one current when the pass began).
                consumer = getattr(threading.current_thread(), "current_stream", None)
                out.record_stream(consumer or torch.cuda.default_stream(images.device))
            return out

        return tinyfast_augment

    def declare_state_and_memory(self, previous_state):
        shape, dtype = tuple(previous_state.shape), previous_state.dtype
        if previous_state.jit_mode or dtype != torch.uint8 or len(shape) != 3 or shape[2] != 3:
            what = "a NumPy array (add ToTensor() before it)" if previous_state.jit_mode else \
                f"{dtype} of shape {shape}"
            raise ValueError(f"{_NAME}: needs uint8 (H, W, 3) torch tensors from the previous stage "
                             f"(e.g. SimpleRGBImageDecoder(), ToTensor()), got {what}")
        if self.mean_image is not None and tuple(self.mean_image.shape[:2]) != shape[:2]:
            mh, mw = self.mean_image.shape[:2]
            raise ValueError(f"{_NAME}: mean_image is {mh}x{mw} but the decoded images are "
                             f"{shape[0]}x{shape[1]}; give the mean image at the decoded size "
                             "(it is resized to out_size, not from another size)")
        ho, wo = self.out_size if self.out_size is not None else shape[:2]
        # The op allocates each output itself: a batch stays valid however long the caller keeps it.
        return replace(previous_state, shape=(3, ho, wo), dtype=self.dtype), None
