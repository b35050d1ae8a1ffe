"""Training: a short run learns, resume is exact, DDP (gloo) keeps ranks identical and matches a
single process, the step loop does not sync every step, and bad flags give one clear line."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import socket

import numpy as np
import pytest
import torch

from tinyfast.config import TrainConfig, resolve_train_config
from tinyfast.schedules import Schedule
from tinyfast.train import main, train
from tinyfast.trainer import Mixer, Trainer, amp_settings, load_checkpoint


def packed_synthetic(tmp_path_factory, name: str, **kw) -> str:
    """A small synthetic packed set (32 px) in a fresh temporary directory."""
    from tinyfast.pack import pack_synthetic
    out = tmp_path_factory.mktemp(name) / "synth"
    pack_synthetic(out, size=32, progress=False, log=None, **kw)
    return str(out)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """4 classes x 64 train + 16 val images, 10 test, 32 px: big enough to learn, fast to train."""
    return packed_synthetic(tmp_path_factory, "data", classes=4, per_class=64, val_per_class=16, test_count=10,
                            seed=0)


def _cfg(data, tmp_path, **kw) -> TrainConfig:
    base = dict(arch="ting_m1", data=data, epochs=1, batch_size=32, out_dir=str(tmp_path / "runs"),
                name="run", progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _resolved(cfg: TrainConfig) -> TrainConfig:
    return resolve_train_config(cfg, cuda=False)


def test_short_run_learns_and_writes_its_outputs(data, tmp_path):
    cfg = _cfg(data, tmp_path, arch="cnn_deep", epochs=5, optimizer="adam", lr=3e-3, aug="flips")
    tr = train(cfg)
    top1 = [r["val_top1"] for r in tr.history]
    assert max(top1) >= 0.55, top1         # chance is 0.25
    run = tmp_path / "runs" / "run"
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "metrics.jsonl", "metrics.csv", "curves.png", "per_class.csv", "summary.json",
            "last.pt", "best.pt"} <= names
    assert not [n for n in names if n.endswith(".tmp")]   # atomic writes left nothing behind
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["epochs"] == 5 and saved["lr"] == 3e-3 and saved["batch_size"] == 32
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    for key in ("train_loss", "val_top1", "val_top5", "lr", "img_per_s", "epoch_time"):
        assert all(np.isfinite(r[key]) for r in rows), key
    csv_lines = (run / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,step,image_size,lr,train_loss") and len(csv_lines) == 6
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    per_class = (run / "per_class.csv").read_text().splitlines()
    assert len(per_class) == 5 and per_class[0] == "class,words,correct,count,accuracy"
    summary = json.loads((run / "summary.json").read_text())
    # wall_time: seconds since the run began at each epoch's end, rising, each epoch at least its own
    # training time after the last, and within the run's wall time
    walls = [r["wall_time"] for r in rows]
    assert all(b - a >= r["epoch_time"] for a, b, r in zip(walls, walls[1:], rows[1:])), walls
    assert walls[0] >= rows[0]["epoch_time"] and walls[-1] <= summary["wall_time"]
    # 4 classes: the best and worst lists split them instead of overlapping.
    assert len(summary["best_classes"]) == len(summary["worst_classes"]) == 2
    assert summary["best_classes"][0]["words"] and summary["best_by"] == "val_top1"
    assert not {r["class"] for r in summary["best_classes"]} & {r["class"] for r in summary["worst_classes"]}
    # best.pt holds the best epoch's weights, last.pt the last epoch's.
    best = load_checkpoint(run / "best.pt")
    assert best["history"][-1]["val_top1"] == max(top1)
    assert load_checkpoint(run / "last.pt")["step"] == 5 * tr.steps_per_epoch


def _strip(history):
    return [{k: v for k, v in r.items() if k not in ("img_per_s", "epoch_time", "eval_time", "wall_time")} for r in history]


def test_resume_mid_epoch_equals_the_uninterrupted_run(data, tmp_path):
    """Dropout, mixup/cutmix, EMA, augmentation and a one-cycle schedule: stopping after step 11
    (mid epoch 2 of 8-step epochs) and resuming gives bit-identical weights and metrics."""
    kw = dict(arch="cnn2", epochs=2, mixup=0.4, cutmix=1.0, mix_prob=0.8, ema=0.9, aug="standard")
    full = train(_cfg(data, tmp_path, name="full", **kw))
    stopped = train(_cfg(data, tmp_path, name="part", stop_at_step=11, **kw))
    assert stopped.step == 11 and len(stopped.history) == 1
    ck = tmp_path / "runs" / "part" / "last.pt"
    assert main(["--resume", str(ck), "--no-progress", "--lr", "5"]) == 0  # --lr is ignored on resume
    a = load_checkpoint(tmp_path / "runs" / "full" / "last.pt")
    b = load_checkpoint(ck)
    assert b["step"] == a["step"] == 16
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["ema"]["module"]:
        assert torch.equal(a["ema"]["module"][k], b["ema"]["module"][k]), k
    assert _strip(a["history"]) == _strip(b["history"])
    assert b["config"]["lr"] == a["config"]["lr"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg: TrainConfig, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    tr = train(cfg)
    torch.save({k: v.detach().clone() for k, v in tr.model.named_parameters()}, f"{out}/rank{rank}.pt")


def test_ddp_gloo_two_ranks_stay_identical_and_match_one_process(data, tmp_path):
    """Two gloo ranks with half the batch each: identical weights on both, equal (to rounding) to
    one process with the whole batch (same samples per step; no augmentation, no BatchNorm)."""
    cfg = _cfg(data, tmp_path, name="ddp", aug="none", batch_size=32, epochs=1)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, join=True)
    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    single = train(dataclasses.replace(cfg, name="single"))
    for k, v in single.model.named_parameters():
        torch.testing.assert_close(w0[k], v.detach(), rtol=1e-4, atol=1e-5)
    assert (tmp_path / "runs" / "ddp" / "last.pt").is_file()
    ck = load_checkpoint(tmp_path / "runs" / "ddp" / "last.pt")
    assert len(ck["per_rank"]) == 2  # every rank's RNG state is kept for an exact resume


def test_step_loop_syncs_only_every_log_every_steps(data, tmp_path, monkeypatch):
    tr = Trainer(_resolved(_cfg(data, tmp_path, batch_size=16, log_every=1000)))
    tr._apply_freeze(0)
    calls = {"n": 0}
    real_item = torch.Tensor.item

    def counting_item(self):
        calls["n"] += 1
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    metrics = tr.train_one_epoch(0)
    assert tr.steps_per_epoch == 16
    assert calls["n"] <= 2   # the epoch-end totals only, not one per step
    assert np.isfinite(metrics["train_loss"])


def test_freeze_unfreeze_and_progressive_resizing(data, tmp_path):
    cfg = _resolved(_cfg(data, tmp_path, epochs=2, freeze=True, unfreeze_every=1, prog_resize="16:32",
                         optimizer="sgd", lr=0.1))
    tr = Trainer(cfg)
    before = copy.deepcopy(tr.model.state_dict())
    tr._apply_freeze(0)
    m = tr.train_one_epoch(0)
    assert m["image_size"] == 16
    assert tr.train_loader.out_size == (16, 16)  # the fused op resampled; no extra resize pass
    head = {"13.weight", "13.bias"}  # ting_m1's final Linear
    after = tr.model.state_dict()
    for k in before:
        assert torch.equal(before[k], after[k]) == (k not in head), k
    tr._apply_freeze(1)
    assert all(p.requires_grad for p in tr.model[11].parameters())  # fc256 unfrozen next
    assert not any(p.requires_grad for p in tr.model[0].parameters())
    assert tr.image_size(1) == 32


def test_pretrained_local_weights_replace_the_head(data, tmp_path):
    from tinyfast.models import get_model
    src = get_model("ting_m1", num_classes=10)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    tr = Trainer(_resolved(_cfg(data, tmp_path, pretrained=str(tmp_path / "w.pth"))))
    assert torch.equal(tr.model[0].weight, src[0].weight)
    assert tr.model[13].weight.shape == (4, 256)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_amp_on_cpu(data, tmp_path, dtype):
    tr = train(_cfg(data, tmp_path, amp=True, amp_dtype=dtype, name=dtype, batch_size=64))
    want = torch.bfloat16 if dtype == "bf16" else torch.float16
    assert tr.amp and tr.amp_dtype == want and tr.train_loader.dtype == want
    assert tr.scaler.is_enabled() == (dtype == "fp16")
    assert np.isfinite(tr.history[-1]["train_loss"]) and np.isfinite(tr.history[-1]["val_loss"])


def test_amp_auto_policy(monkeypatch):
    import tinyfast.inference as T
    monkeypatch.setattr(T, "cpu_has_native_bf16", lambda: False)
    on, _, note = amp_settings(torch.device("cpu"), True)
    assert not on and "no native bf16" in note
    monkeypatch.setattr(T, "cpu_has_native_bf16", lambda: True)
    assert amp_settings(torch.device("cpu"), True)[:2] == (True, torch.bfloat16)
    assert amp_settings(torch.device("cpu"), False)[0] is False


def test_schedules():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = Schedule(opt, "onecycle", 1.0, total_steps=100, steps_per_epoch=10, warmup_steps=25)
    lrs = [s.lr_at(i) for i in range(100)]
    assert max(lrs) == pytest.approx(1.0) and int(np.argmax(lrs)) == 24
    assert all(a <= b for a, b in zip(lrs[:25], lrs[1:25])) and lrs[-1] < 1e-3
    s = Schedule(opt, "step", 1.0, 100, 10, warmup_steps=0, step_size=3, gamma=0.1)
    assert [s.lr_at(i) for i in (0, 29, 30, 60)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    s = Schedule(opt, "cyclic", 1.0, 100, 10, cycle_epochs=2, min_lr=0.1)
    assert s.lr_at(0) == pytest.approx(0.1) and s.lr_at(10) == pytest.approx(1.0) and s.lr_at(20) == pytest.approx(0.1)
    s = Schedule(opt, "plateau", 1.0, 100, 10, patience=1, gamma=0.5)
    for acc in (0.5, 0.6, 0.6, 0.6):
        s.epoch_end(acc)
    assert s.set_step(50) == pytest.approx(0.5) and opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_mixing_weights_match_what_was_mixed():
    x = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 16, 16).contiguous()  # image i is all i
    y = torch.arange(8)
    xm, ya, yb, lam = Mixer(0.0, 1.0, 1.0, seed=3)(x, y)  # cutmix
    assert yb is not None and torch.equal(ya, y) and 0 < lam < 1
    for i in range(8):
        if yb[i] != i:
            assert (xm[i] == yb[i]).float().mean().item() == pytest.approx(1.0 - lam)
            assert ((xm[i] == i) | (xm[i] == yb[i])).all()
    xm, ya, yb, lam = Mixer(0.4, 0.0, 1.0, seed=3)(x, y)  # mixup
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x[yb])


# ----- CLI errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["--arch", "nope"], "unknown model 'nope'"),
    (["--lr", "fast"], "--lr: 'fast' is not a number"),
    (["--epochs", "0"], "--epochs: must be >= 1"),
    (["--optimizer", "lion"], "invalid choice: 'lion'"),
    (["--prog-resize", "64"], "expected sizes separated by ':'"),
    (["--label-smoothing", "1.5"], "must be in [0, 1)"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_give_one_clear_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("python -m tinyfast.train: error:") and needle in last


@pytest.mark.parametrize("extra, needle", [
    (["--data", "{tmp}/missing"], "missing"),
    (["--resume"], "--resume without a path needs --name"),
    (["--resume", "{tmp}/nothing.pt"], "no such checkpoint"),
    (["--unfreeze-every", "2"], "--unfreeze-every needs --freeze"),
    (["--batch-size", "4096"], "fewer samples per rank than one batch"),
    (["--device", "cuda"], "CUDA is not available"),
])
def test_bad_settings_give_one_clear_line(data, tmp_path, extra, needle, capsys):
    if needle == "CUDA is not available" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = ["--arch", "ting_m1", "--data", data, "--out-dir", str(tmp_path), "--no-progress"]
    argv += [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m tinyfast.train: error:") and needle in err[0]


def test_list_prints_every_model_with_its_parameter_count(capsys):
    from tinyfast.models import list_models
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out
    assert "11,271,432" in out  # resnet18, 200 classes


def test_frozen_layers_keep_their_batchnorm_statistics(data, tmp_path):
    """--freeze: the frozen trunk's BatchNorm runs in eval mode (its running statistics do not
    move); once unfrozen, a layer's statistics train again."""
    tr = Trainer(_resolved(_cfg(data, tmp_path, arch="cnn_deep", epochs=2, freeze=True, unfreeze_every=1,
                                optimizer="sgd", lr=0.05)))
    bns = [m for m in tr.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns
    before = [(m.running_mean.clone(), m.running_var.clone()) for m in bns]
    tr._apply_freeze(0)
    tr.train_one_epoch(0)
    for m, (mean, var) in zip(bns, before):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
    tr._apply_freeze(1)
    tr.train_one_epoch(1)
    moved = [not torch.equal(m.running_mean, mean) for m, (mean, _) in zip(bns, before)]
    unfrozen = [m.weight.requires_grad for m in bns]
    assert moved == unfrozen and any(unfrozen)


def test_ddp_mid_epoch_resume_keeps_each_ranks_running_sums(data, tmp_path):
    """Two gloo ranks stopped mid epoch 2 and resumed: epoch 2's train loss/top-1 (summed over the
    ranks) equal the uninterrupted run's, because each rank gets its own partial sums back."""
    base = _cfg(data, tmp_path, arch="cnn2", epochs=2, aug="standard")
    ck = tmp_path / "runs" / "part" / "last.pt"
    for i, cfg in enumerate((dataclasses.replace(base, name="full"),
                             dataclasses.replace(base, name="part", stop_at_step=12),
                             dataclasses.replace(base, name="part", resume=str(ck)))):
        (tmp_path / str(i)).mkdir()
        torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), cfg, str(tmp_path / str(i))), nprocs=2,
                                    join=True)
    a = load_checkpoint(tmp_path / "runs" / "full" / "last.pt")
    b = load_checkpoint(ck)
    assert a["step"] == b["step"] == 16
    for ra, rb in zip(a["history"], b["history"], strict=True):
        assert ra["train_top1"] == rb["train_top1"]
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-6)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_imagenet_stem_is_recorded_in_the_checkpoint(data, tmp_path):
    """--stem imagenet builds torchvision's 7x7 stride-2 stem + max-pool, and the checkpoint
    rebuilds the same network."""
    from tinyfast.checkpoint import load_checkpoint, model_from_checkpoint
    tr = train(_cfg(data, tmp_path, arch="resnet18", stem="imagenet", stop_at_step=1))
    ck = load_checkpoint(tmp_path / "runs" / "run" / "last.pt")
    assert ck["model_kwargs"] == {"stem": "imagenet"}
    m = model_from_checkpoint(ck)
    assert m.conv1.kernel_size == (7, 7) and m.conv1.stride == (2, 2)
    assert isinstance(m.maxpool, torch.nn.MaxPool2d)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), tr.model.state_dict().values()))


def test_two_augmentation_sets_double_the_epoch(data, tmp_path):
    """--aug A+B: an epoch is a pass per set, so twice the steps, and a step schedule counts them."""
    one = Trainer(_resolved(_cfg(data, tmp_path, aug="hflip-crop56")))
    two = Trainer(_resolved(_cfg(data, tmp_path / "2", aug="hflip-crop56+skoltech2")))
    assert two.steps_per_epoch == 2 * one.steps_per_epoch == len(two.train_loader)
