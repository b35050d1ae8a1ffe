"""SIGINT / SIGTERM mid-epoch: the run finishes its step, saves an atomic mid-epoch checkpoint,
prints the exact resume command and exits 130 / 143; resuming gives the uninterrupted weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import default_signals
import torch

from test_train import data  # noqa: F401  (the shared packed-data fixture)
from tinyfast.checkpoint import load_checkpoint
from tinyfast.train import main

REPO = Path(__file__).resolve().parents[1]


def _argv(data, out_dir, name):
    return ["--arch", "cnn2", "--data", data, "--out-dir", str(out_dir), "--name", name, "--epochs", "3",
            "--batch-size", "32", "--device", "cpu", "--mixup", "0.4", "--ema", "0.9", "--no-progress"]


def _run(args, cwd):
    """``python -m tinyfast.train`` in a fresh process: every run compared here starts from the same
    process state (thread count, flags), which tests run earlier in this process may have changed."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "tinyfast.train", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("reference")
    _run(_argv(data, out, "full"), out)
    return load_checkpoint(out / "full" / "last.pt")


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_epoch_saves_and_the_resumed_run_is_exact(data, reference, tmp_path, sig, status):  # noqa: F811
    env = dict(os.environ, PYTHONPATH=str(REPO), TINYFAST_PROGRESS="lines")
    cmd = [sys.executable, "-m", "tinyfast.train", *_argv(data, tmp_path, "s"), "--progress-every", "0.001"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            preexec_fn=default_signals)
    try:
        for line in proc.stderr:                     # a progress line per step
            if line.startswith("epoch 2/3: 2/8"):    # inside epoch 2
                proc.send_signal(sig)
                break
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    last = tmp_path / "s" / "last.pt"
    lines = [ln for ln in err.strip().splitlines() if "error:" in ln]
    assert lines == [f"python -m tinyfast.train: error: interrupted by {signal.Signals(sig).name} after step "
                     f"{load_checkpoint(last)['step']}; saved {last}; resume with: "
                     f"python -m tinyfast.train --resume {last}"], err
    ck = load_checkpoint(last)
    assert 10 <= ck["step"] < 24 and not ck["epoch_done"]   # mid epoch 2 (8 steps an epoch)
    assert "Traceback" not in err
    assert not [p for p in last.parent.iterdir() if p.name.endswith(".tmp")]
    _run(["--resume", str(last), "--no-progress"], tmp_path)
    done = load_checkpoint(last)
    assert done["step"] == reference["step"] == 24
    for k, v in reference["model"].items():
        assert torch.equal(v, done["model"][k]), k
    for k, v in reference["ema"]["module"].items():
        assert torch.equal(v, done["ema"]["module"][k]), k
