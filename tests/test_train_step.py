"""The pieces of a training step and of a run's files, each against an independent check: no host
sync in the step or per evaluation batch (counted at the dispatcher, so it works on CPU), few
launches for the EMA's buffers (norm statistics averaged), per-rank running sums in checkpoints, durable checkpoint writes,
schedule end points."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from test_train import _cfg, _resolved, data  # noqa: F401  (the shared packed-data fixture)
from tinyfast.inference import evaluate
from tinyfast.schedules import Schedule
from tinyfast.trainer import EMA, Trainer
from tinyfast.trainer.epoch import Running

aten = torch.ops.aten
# Ops that make the host wait for the device: reading a value, or an output sized by the data.
_SYNC_OPS = {aten._local_scalar_dense, aten.nonzero, aten.bincount, aten.masked_select, aten.unique_dim,
             aten._unique2, aten.unique_consecutive, aten.is_nonzero, aten.equal, aten.repeat_interleave}


class SyncCounter(TorchDispatchMode):
    """Records every op that would synchronise with a GPU, on any device (CPU included).

    Also counts the Python-level reads (``.cpu()``, ``.numpy()``, ``.tolist()``) that do not reach
    the dispatcher when the tensor is already on the CPU.
    """

    def __init__(self, monkeypatch):
        super().__init__()
        self.syncs: list[str] = []
        self.ops: list[str] = []
        for name in ("cpu", "numpy", "tolist"):
            real = getattr(torch.Tensor, name)

            def counted(t, *a, _real=real, _name=name, **k):
                self.syncs.append(_name)
                return _real(t, *a, **k)
            monkeypatch.setattr(torch.Tensor, name, counted)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func.overloadpacket
        self.ops.append(str(packet))
        bool_index = packet is aten.index and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else []))
        if packet in _SYNC_OPS or bool_index:
            self.syncs.append(str(packet))
        return func(*args, **(kwargs or {}))


def test_the_sync_counter_sees_syncs(monkeypatch):
    x = torch.arange(6.0)
    with SyncCounter(monkeypatch) as c:
        x.sum().item()
        _ = x[x > 2]
        torch.bincount(x.long())
        x.tolist()
    assert c.syncs == ["aten._local_scalar_dense", "aten.index", "aten.bincount", "tolist"]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_training_step_never_waits_for_the_device(data, tmp_path, monkeypatch, optimizer):  # noqa: F811
    """fp16 AMP (GradScaler on), EMA and mixup: the step reads nothing back. A GradScaler with an
    optimizer that cannot take its inf check on the device reads ``found_inf`` every step."""
    cfg = _resolved(_cfg(data, tmp_path, arch="cnn_deep", amp=True, amp_dtype="fp16", ema=0.9, mixup=0.4,
                         cutmix=1.0, optimizer=optimizer, batch_size=16))
    tr = Trainer(cfg)
    tr._apply_freeze(0)
    assert tr.scaler.is_enabled()
    batches = [b for _, b in zip(range(3), tr.train_loader)]
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    with SyncCounter(monkeypatch) as c:
        for i, (x, y) in enumerate(batches):
            tr.schedule.set_step(i)
            tr.step_fn(x.contiguous(memory_format=torch.channels_last), y)
    assert c.syncs == []
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())  # it trained


def test_ema_averages_the_norm_statistics_and_copies_the_counters_in_few_launches(monkeypatch):
    """BatchNorm running statistics are averaged like the weights (the raw model's belong to the raw
    weights, not to the averaged ones); integer buffers (``num_batches_tracked``) are copied."""
    from tinyfast.models import get_model
    torch.manual_seed(0)
    model = get_model("resnet18", num_classes=10)
    ema = EMA(model, decay=0.5)
    n_buffers = len(list(model.buffers()))
    assert n_buffers > 40
    with torch.no_grad():
        for t in [*model.buffers(), *model.parameters()]:
            t.add_(torch.ones_like(t))  # training moved the weights and the running statistics
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with SyncCounter(monkeypatch) as c:
        ema.update(model)
    assert len(c.ops) <= 3, c.ops          # foreach lerps and one foreach copy; not one op per buffer
    d = 2 / 11                             # the ramp after one update: min(0.5, (1 + 1) / (10 + 1))
    raw = model.state_dict()
    for k, v in ema.module.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (d * before[k].double() + (1 - d) * raw[k].double()).float(), msg=k)
        else:
            assert torch.equal(v, raw[k]), k


class _ListLoader:
    def __init__(self, batches):
        self.batches, self.device = batches, torch.device("cpu")

    def __iter__(self):
        return iter(self.batches)


def test_evaluation_syncs_once_at_the_end_whatever_the_batch_count(monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 7))
    xs, ys = torch.randn(80, 3, 2, 2), torch.randint(0, 7, (80,))
    counts = []
    for n_batches in (2, 8):
        loader = _ListLoader(list(zip(xs.chunk(n_batches), ys.chunk(n_batches))))
        with SyncCounter(monkeypatch) as c:
            res = evaluate(model, loader, 7)
        counts.append(len(c.syncs))
        logits = model(xs).detach().numpy()
        hit = logits.argmax(1) == ys.numpy()
        np.testing.assert_array_equal(res["per_class_correct"], np.bincount(ys.numpy()[hit], minlength=7))
        np.testing.assert_array_equal(res["per_class_count"], np.bincount(ys.numpy(), minlength=7))
        top5 = (np.argsort(-logits, 1)[:, :5] == ys.numpy()[:, None]).any(1).mean()
        assert res["top1"] == pytest.approx(hit.mean()) and res["top5"] == pytest.approx(top5)
    assert counts[0] == counts[1], counts


def test_running_sums_are_kept_per_rank(data, tmp_path):  # noqa: F811
    """A mid-epoch checkpoint holds each rank's own sums; each rank restores its own."""
    tr = Trainer(_resolved(_cfg(data, tmp_path)))
    tr.loop.running = Running(tr.device, loss=4.0, correct=3, n=8, seconds=1.0)
    tr.loop.epoch_done = False
    ck = tr.state_dict()
    assert ck["per_rank"][0]["acc"] == {"loss": 4.0, "correct": 3, "n": 8, "seconds": 1.0, "untimed": 0,
                                        "compile_time": 0.0}
    other = dict(ck["per_rank"][0], acc={"loss": 9.0, "correct": 5, "n": 8, "seconds": 1.5})
    ck["per_rank"] = [ck["per_rank"][0], other]
    tr2 = Trainer(_resolved(_cfg(data, tmp_path)))
    tr2.rank = 1
    tr2.load_state_dict(ck)
    r = tr2.loop.running
    assert (r.loss.item(), r.correct.item(), r.n, r.seconds) == (9.0, 5, 8, 1.5)


def test_checkpoints_are_synced_renamed_and_serialised_once(data, tmp_path, monkeypatch):  # noqa: F811
    tr = Trainer(_resolved(_cfg(data, tmp_path)))
    tr.run_dir.mkdir(parents=True)
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(
        "fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    saves = []
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda *a, **k: (saves.append(1), real_save(*a, **k))[1])
    old = os.umask(0o027)
    try:
        tr.save("last.pt", also_best=True)
    finally:
        os.umask(old)
    assert events == ["fsync file", "replace", "fsync dir"] * 2
    assert len(saves) == 1                                   # serialised once for both files
    last, best = tr.run_dir / "last.pt", tr.run_dir / "best.pt"
    assert last.read_bytes() == best.read_bytes()
    assert stat.S_IMODE(last.stat().st_mode) == 0o640        # 0666 minus the umask, not mkstemp's 0600
    assert not [p for p in tr.run_dir.iterdir() if p.name.endswith(".tmp")]


def test_step_schedule_counts_from_step_zero_and_annealing_ends_at_min_lr():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = Schedule(opt, "step", 1.0, 100, 10, warmup_steps=5, step_size=3, gamma=0.1)
    assert [s.lr_at(i) for i in (10, 29, 30, 59, 60)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])
    for kind in ("cosine", "onecycle"):
        s = Schedule(opt, kind, 2.0, 100, 10, warmup_steps=25, min_lr=0.1)
        assert s.lr_at(99) == 2.0 * 0.1                      # exactly, on the last step
        assert s.lr_at(25) == pytest.approx(2.0)
        assert all(a >= b for a, b in zip(map(s.lr_at, range(25, 99)), map(s.lr_at, range(26, 100))))


def _cuda_syncs(fn) -> int:
    """Synchronising CUDA calls made by ``fn()``, as torch's sync debug mode reports them."""
    import warnings
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(x.message) for x in w)


@pytest.mark.cuda
def test_cuda_step_and_evaluation_make_no_sync(data, tmp_path):  # noqa: F811
    """On a GPU, torch's own sync detector: none in training steps (fp16 + GradScaler, EMA,
    mixing), and evaluation's count does not grow with the number of batches."""
    from tinyfast.config import resolve_train_config
    # cuda=True: the shared _resolved() resolves for a machine without a GPU, refusing --device cuda.
    cfg = resolve_train_config(_cfg(data, tmp_path, arch="cnn_deep", amp=True, amp_dtype="fp16", ema=0.9,
                                    mixup=0.4, batch_size=16, device="cuda"), cuda=True)
    tr = Trainer(cfg)
    tr._apply_freeze(0)
    batches = [(x.contiguous(memory_format=torch.channels_last), y)
               for _, (x, y) in zip(range(8), tr.train_loader)]

    def steps():
        for i, (x, y) in enumerate(batches[:3]):
            tr.schedule.set_step(i)
            tr.step_fn(x, y)
    steps()  # warm-up: cuDNN autotuning and lazy initialisation may sync once
    assert _cuda_syncs(steps) == 0
    loaders = [_ListLoader(batches[:n]) for n in (2, 8)]
    for ld in loaders:
        ld.device = tr.device
    counts = [_cuda_syncs(lambda: evaluate(tr.eval_model(), ld, tr.num_classes)) for ld in loaders]
    assert counts[0] == counts[1], counts
