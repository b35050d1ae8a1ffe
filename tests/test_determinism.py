"""Two identical CPU runs give identical weights, bit for bit, also under a concurrent CPU load and
when the first of them has to pack the default data set (importing FFCV's writer, whose import
sets torch's intra-op thread count to 1: a run trained with another thread count than its twin
sums its convolutions' gradients in another order)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tinyfast.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _train(tmp_path: Path, name: str, env: dict) -> dict:
    cmd = [sys.executable, "-m", "tinyfast.train", "--arch", "cnn_deep", "--epochs", "2", "--batch-size", "32",
           "--no-amp", "--seed", "7", "--stop-at-step", "4", "--device", "cpu", "--no-progress",
           "--out-dir", str(tmp_path / "runs"), "--name", name]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return load_checkpoint(tmp_path / "runs" / name / "last.pt")


def test_two_runs_of_the_default_path_give_the_same_weights_under_load(tmp_path):
    # Fresh processes (the thread count is process state), two intra-op threads whatever the
    # machine, and the default data in a fresh folder: the first run packs it, the second reuses it.
    env = dict(os.environ, PYTHONPATH=str(REPO), TINYFAST_DATA=str(tmp_path / "data"), OMP_NUM_THREADS="2")
    load = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # a concurrent CPU load
    try:
        a = _train(tmp_path, "a", env)
        b = _train(tmp_path, "b", env)
    finally:
        load.kill()
        load.wait()
    differ = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not differ, f"{len(differ)} of {len(a['model'])} tensors differ: {differ[:5]}"
    assert a["step"] == b["step"] == 4
    threads = [json.loads((tmp_path / "runs" / n / "config.json").read_text())["environment"].get("torch_threads")
               for n in ("a", "b")]
    assert threads == [2, 2]   # OMP_NUM_THREADS, recorded with the run


def test_importing_ffcv_through_tinyfast_keeps_torch_threads():
    # FFCV's import sets torch's intra-op thread count to 1 (its pipeline compiler does so at
    # import): every tinyfast place that imports FFCV must leave the count as it found it.
    code = ("import torch; torch.set_num_threads(2)\n"
            "from tinyfast.default_data import _ffcv_missing\n"
            "why = _ffcv_missing()\n"
            "from tinyfast.pack.write_ffcv import ffcv_writer\n"
            "if why is None: ffcv_writer()\n"
            "print(why is None, torch.get_num_threads())\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    imported, threads = out.stdout.split()
    if imported != "True":
        pytest.skip("FFCV does not import here")
    assert int(threads) == 2


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """4 classes x 64 train + 16 val images, 32 px."""
    from tinyfast.pack import pack_synthetic
    out = tmp_path_factory.mktemp("small") / "synth"
    pack_synthetic(out, size=32, classes=4, per_class=64, val_per_class=16, test_count=10, seed=0,
                   progress=False, log=None)
    return str(out)


def test_iterating_the_torch_loaders_leaves_the_global_rng_alone(small):
    # A DataLoader without generator= draws its base seed from the global RNG at each iter(),
    # the RNG dropout uses: a resumed run (one iter() more) then drew other dropout masks.
    from tinyfast.loaders import build
    loader = build("torch-npy", small, "train", 32, device="cpu", num_workers=0, seed=3)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    for epoch in range(2):
        loader.set_epoch(epoch)
        next(iter(loader))
    assert torch.equal(torch.get_rng_state(), before)


def test_resume_with_the_torch_npy_loader_equals_the_uninterrupted_run(small, tmp_path):
    from tinyfast.config import TrainConfig
    from tinyfast.train import main, train
    kw = dict(arch="cnn2", data=small, loader="torch-npy", workers=0, epochs=2, batch_size=32, device="cpu",
              progress=False, out_dir=str(tmp_path / "runs"), aug="flips")
    train(TrainConfig(name="full", **kw))
    train(TrainConfig(name="part", stop_at_step=11, **kw))
    ck = tmp_path / "runs" / "part" / "last.pt"
    assert main(["--resume", str(ck), "--no-progress"]) == 0
    a, b = load_checkpoint(tmp_path / "runs" / "full" / "last.pt"), load_checkpoint(ck)
    assert a["step"] == b["step"] == 16
    differ = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not differ, differ
