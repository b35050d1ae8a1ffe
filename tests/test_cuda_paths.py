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
