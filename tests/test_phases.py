"""Training phases (``--phases``): each phase its own epochs, image size, batch size and augmentation.

A phased loader (``loaders.build(..., phases=...)``, any registered loader) yields in each epoch
exactly what a plain loader of that phase's batch size and policy yields for that epoch; the
schedule counts epochs of different lengths; a run stopped anywhere (at a phase boundary or inside
the phase after it) resumes to the very weights of the uninterrupted run; the dry run shows every
epoch's batch size and augmentation."""

from __future__ import annotations

import json

import pytest
import torch

import tinyfast.loaders as L
from test_loaders import make, packed, run_epoch  # noqa: F401  (the shared packed-data fixture)
from tinyfast.checkpoint import load_checkpoint
from tinyfast.phases import Phase, parse_phases

# 64 train images: phase 0 = epochs 0-1 at batch 16 without augmentation, phase 1 = epoch 2 at
# batch 8 with flips, phase 2 = epoch 3 at batch 8 with two sets.
PHASES = [(2, 16, "none"), (1, 8, "flips"), (1, 8, "flips+hflip")]
LOADERS = ["gpu", "torch-npy", "torch", "dali", "ffcv"]


def test_parse_phases_reads_each_field_and_leaves_the_rest_to_the_run():
    got = parse_phases("15,size=32,batch=256,aug=none; 30,batch=64 ;150,aug=standard+flips")
    assert got == [Phase(15, 32, 256, "none"), Phase(30, None, 64, None), Phase(150, None, None, "standard+flips")]


@pytest.mark.parametrize("bad, needle", [
    ("", "expected"), ("0,size=32", "epochs"), ("5,size=4", "size"), ("5,batch=0", "batch"),
    ("5,colour=red", "'colour=red'"), ("5,aug=nosuch", "'nosuch'"), ("5,size=x", "'x'"), ("5;", "expected")])
def test_bad_phases_are_one_line_naming_the_part(bad, needle, capsys):
    from tinyfast.train import main
    with pytest.raises(SystemExit) as e:
        main(["--phases", bad, "--print-config", "--device", "cpu"])
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("python -m tinyfast.train: error: argument --phases") and needle in last


@pytest.mark.parametrize("argv, needle", [
    (["--phases", "2;3", "--epochs", "4"], "5 epochs"),
    (["--phases", "2;3", "--prog-resize", "32:64"], "--prog-resize"),
    (["--phases", "2,size=8;3", "--arch", "ucsc_deep"], "8 px")])
def test_inconsistent_phases_are_one_line(argv, needle, capsys):
    from tinyfast.train import main
    capsys.readouterr()
    assert main([*argv, "--print-config", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--phases" in err[0] and needle in err[0], err


@pytest.mark.parametrize("name", LOADERS)
def test_each_phase_yields_what_a_plain_loader_of_its_settings_yields(name, packed):
    phased = make(name, packed, "train", 999, train=True, phases=PHASES, seed=3)
    assert [phased.batches_at(e) for e in range(4)] == [4, 4, 8, 16]
    for epoch, (bs, policy) in enumerate([(16, "none"), (16, "none"), (8, "flips"), (8, "flips+hflip")]):
        plain = make(name, packed, "train", bs, train=True, policy=policy, seed=3)
        got, want = run_epoch(phased, epoch), run_epoch(plain, epoch)
        assert len(phased) == len(plain) == len(got) == len(want)
        for (xg, yg), (xw, yw) in zip(got, want):
            assert xg.shape[0] == bs and torch.equal(xg, xw) and torch.equal(yg, yw)
    assert not torch.equal(run_epoch(phased, 2)[0][0], run_epoch(make(name, packed, "train", 8, train=True,
                                                                      policy="none", seed=3), 2)[0][0])
    phased.close()


@pytest.mark.parametrize("name", ["gpu", "torch-npy"])
@pytest.mark.parametrize("epoch, stop", [(1, 4), (2, 0), (2, 5)])
def test_a_loader_resumed_in_any_phase_continues_exactly(name, packed, epoch, stop):
    kw = dict(train=True, phases=PHASES, seed=5)
    ld = make(name, packed, "train", 999, **kw)
    full = run_epoch(ld, epoch)
    ld.set_epoch(epoch)
    it = iter(ld)
    for _ in range(stop):
        next(it)
    state = ld.state_dict()
    del it
    fresh = make(name, packed, "train", 999, **kw)
    fresh.set_epoch(0)
    fresh.load_state_dict(state)
    fresh.set_epoch(epoch)
    rest = [(x.clone(), y.clone()) for x, y in fresh]
    assert len(rest) == len(full) - stop
    for (xr, yr), (xa, ya) in zip(rest, full[stop:]):
        assert torch.equal(xr, xa) and torch.equal(yr, ya)


def test_the_output_size_carries_over_a_phase_change(packed):
    ld = make("gpu", packed, "train", 999, train=True, phases=PHASES, seed=1)
    ld.set_out_size((32, 32))
    assert run_epoch(ld, 2)[0][0].shape[-2:] == (32, 32)


def test_schedule_counts_epochs_of_different_lengths():
    from tinyfast.schedules import Schedule
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    steps = [10, 20, 20, 5]   # epoch starts: 0, 10, 30, 50; 55 steps
    s = Schedule(opt, "step", 1.0, 55, 10, step_size=1, gamma=0.1, epoch_steps=steps)
    assert [s.lr_at(t) for t in (0, 9, 10, 29, 30, 49, 50, 54)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    c = Schedule(opt, "cyclic", 1.0, 55, 10, cycle_epochs=2, min_lr=0.0, epoch_steps=steps)
    # a cycle is 2 epochs: epoch 0-1 (30 steps), its peak at epoch 1.0 = step 10
    assert c.lr_at(0) == 0 and c.lr_at(10) == pytest.approx(1.0) and c.lr_at(20) == pytest.approx(0.5)
    assert c.lr_at(30) == 0 and c.lr_at(50) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def data64(packed_synthetic):
    """4 classes x 16 train + 4 val images at 64 px."""
    return packed_synthetic("phases64", classes=4, per_class=16, val_per_class=4, test_count=4)


def _run(data, tmp_path, name, **kw):
    from tinyfast.config import TrainConfig
    from tinyfast.train import train
    cfg = dict(arch="cnn2", data=data, loader="gpu", epochs=3, batch_size=16, device="cpu",
               phases="1,size=32,batch=16,aug=none;2,batch=8,aug=flips", progress=False,
               out_dir=str(tmp_path / "runs"), name=name, seed=2)
    cfg.update(kw)
    return train(TrainConfig(**cfg))


@pytest.mark.parametrize("stop", [4, 6])   # the phase boundary (end of epoch 1), inside phase 2
def test_a_run_resumed_across_a_phase_boundary_equals_the_uninterrupted_run(data64, tmp_path, stop):
    from tinyfast.train import main
    full = _run(data64, tmp_path, "full")
    assert full.step == 64 // 16 + 2 * (64 // 8)
    rows = [json.loads(line) for line in (tmp_path / "runs" / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["image_size"], r["batch_size"], r["aug"]) for r in rows] == [(32, 16, "none"), (64, 8, "flips"),
                                                                            (64, 8, "flips")]
    _run(data64, tmp_path, "part", stop_at_step=stop)
    ck = tmp_path / "runs" / "part" / "last.pt"
    assert main(["--resume", str(ck), "--no-progress"]) == 0
    a, b = load_checkpoint(tmp_path / "runs" / "full" / "last.pt"), load_checkpoint(ck)
    assert a["step"] == b["step"] == full.step
    differ = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not differ, differ


def test_print_config_shows_each_phase(capsys):
    from tinyfast.train import main
    capsys.readouterr()
    assert main(["--arch", "cnn2", "--phases", "2,size=32,batch=256,aug=none;1,aug=flips", "--batch-size", "64",
                 "--print-config", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["epochs"] == 3
    assert [(e["image_size"], e["batch_size"], e["aug"], e["phase"]) for e in out["epochs"]] == [
        (32, 256, "none", 1), (32, 256, "none", 1), (64, 64, "flips", 2)]
    assert out["phases"] == [{"phase": 1, "epochs": [1, 2], "image_size": 32, "batch_size": 256, "aug": "none"},
                             {"phase": 2, "epochs": [3, 3], "image_size": 64, "batch_size": 64, "aug": "flips"}]
