"""Code paths that run only on a CUDA device, exercised on the CPU where the defect does not need a
GPU to show (torch's own argument checks run before any CUDA call; the CUDA calls are replaced by
recorders). The same paths on a real GPU are the ``cuda``-marked tests."""

from __future__ import annotations

import pytest
import torch

from tinyfast.trainer.build import setup_device


@pytest.fixture
def fake_cuda_device(monkeypatch):
    """``torch.cuda.set_device`` as torch ships it, down to its driver call, which is recorded
    (current device 1, as after ``torch.cuda.set_device(1)`` under torchrun); the global settings
    ``setup_device`` changes are restored afterwards."""
    calls: list[int] = []
    monkeypatch.setattr(torch._C, "_cuda_setDevice", calls.append, raising=False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    precision = torch.get_float32_matmul_precision()
    yield calls
    torch.set_float32_matmul_precision(precision)


@pytest.mark.parametrize("name, index", [("cuda", 1), ("cuda:0", 0), ("cuda:1", 1)])
def test_setup_device_makes_the_named_gpu_current(fake_cuda_device, name, index):
    """``--device cuda`` (what the GPU proof's sync count passes) is the current GPU, with its
    index: ``torch.cuda.set_device`` refuses a device without one."""
    dev = setup_device(name)
    assert dev == torch.device("cuda", index)
    assert fake_cuda_device == [index]


def test_setup_device_leaves_the_cpu_alone(fake_cuda_device):
    assert setup_device("cpu") == torch.device("cpu")
    assert fake_cuda_device == []


class _SaysCuda(torch.Tensor):
    """A CPU tensor that reports a GPU as its device: the ops' device-tensor branch, without one."""

    @property
    def device(self):
        return torch.device("cuda", 0)


def test_a_device_mean_is_read_once_then_again_after_a_change():
    """``mean``/``std`` as a device tensor: read back the first time, from the cache the next
    times (the second call crashed: tensors compare elementwise, so a WeakKeyDictionary of them
    cannot find a key), read again after an in-place change."""
    from tinyfast import ops
    t = torch.Tensor._make_subclass(_SaysCuda, torch.tensor([0.25, 0.5, 0.75]))
    assert t.device.type == "cuda"
    assert ops._three_floats("mean", t) == [0.25, 0.5, 0.75]
    assert ops._three_floats("mean", t) == [0.25, 0.5, 0.75]
    other = torch.Tensor._make_subclass(_SaysCuda, torch.tensor([0.125, 0.5, 1.0]))
    assert ops._three_floats("mean", other) == [0.125, 0.5, 1.0]
    t.mul_(2.0)
    assert ops._three_floats("mean", t) == [0.5, 1.0, 1.5]


@pytest.mark.cuda
def test_cuda_device_mean_and_std_tensors_give_the_float_result():
    from tinyfast import ops
    g = torch.Generator().manual_seed(5)
    src = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8, generator=g).cuda()
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(4, 2, 3).contiguous().cuda()
    color = torch.ones(4, 3, device="cuda")
    mean, std = (0.48, 0.45, 0.40), (0.27, 0.26, 0.28)
    want = ops.augment(src.cpu(), theta.cpu(), color.cpu(), mean, std, dtype=torch.float32)
    m, s = torch.tensor(mean, device="cuda"), torch.tensor(std, device="cuda")
    for _ in range(2):
        got = ops.augment(src, theta, color, m, s, dtype=torch.float32)
        assert torch.equal(got.cpu(), want)


@pytest.mark.parametrize("major, want", [(7, torch.float16), (8, torch.bfloat16), (9, torch.bfloat16)])
def test_amp_on_a_gpu_is_bf16_only_where_native(monkeypatch, major, want):
    """``--amp`` on a GPU: bf16 from compute capability 8.0 on; before it (V100, T4) bf16 is only
    emulated, so fp16 with a GradScaler. torch's ``is_bf16_supported`` runs as shipped, on a
    device of that capability where a bf16 tensor can be created (the emulated case)."""
    from types import SimpleNamespace

    from tinyfast.inference import amp_settings
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(major=major))
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda d: True)
    assert amp_settings(torch.device("cuda", 0), True) == (True, want, "")
    assert amp_settings(torch.device("cuda", 0), True, "bf16")[:2] == (True, torch.bfloat16)
