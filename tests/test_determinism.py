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
