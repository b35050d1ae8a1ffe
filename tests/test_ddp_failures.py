"""A DDP run's failures under a real ``torchrun`` (2 CPU processes, gloo): bad input is refused before
the process group forms and said once, by rank 0; a lost rank or a signal to one rank is one line
on the other naming it. What torchrun itself prints afterwards (its ChildFailedError summary) is
torchrun's; our part is ``python -m tinyfast.train: error: ...`` once."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tinyfast.checkpoint import load_checkpoint
from tinyfast.config import ConfigError, TrainConfig
from tinyfast.train import train

REPO = Path(__file__).resolve().parents[1]
ERROR = "python -m tinyfast.train: error: "
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="needs torch.distributed")


@pytest.fixture(scope="module")
def data(packed_synthetic):
    return packed_synthetic("ddp-failures", classes=2, per_class=16, val_per_class=4, test_count=2)


def _torchrun(*args: str, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "tinyfast.train", "--arch", "ting_m1", "--device", "cpu", "--no-progress",
                             "--out-dir", str(cwd / "runs"), "--name", "r", *args],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _exit_codes(stderr: str) -> dict[int, int]:
    """Each rank's exit status, from torchrun's failure summary."""
    found = re.findall(r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)", stderr)
    return {int(r): int(c) for r, c in found}


def _ours(stderr: str) -> list[str]:
    """The lines our processes wrote (torchrun's own log lines and summary left out)."""
    assert "[rank0]:" not in stderr and "[rank1]:" not in stderr, stderr  # no traceback from a rank
    return [ln for ln in stderr.splitlines() if "tinyfast.train:" in ln and "FAILED" not in ln]


@pytest.mark.parametrize("args, words", [
    (["--batch-size", "7"], "--batch-size 7 is not divisible by the 2 DDP processes"),
    (["--batch-size", "8", "--data", "nope"], "nope: not a directory"),
])
def test_bad_input_is_said_once_by_rank_0_and_every_rank_exits_2(data, tmp_path, args, words):
    args = ["--data", data, "--epochs", "1", *args] if "--data" not in args else ["--epochs", "1", *args]
    proc = _torchrun(*args, cwd=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    ours = _ours(err)
    assert len(ours) == 1 and ours[0].startswith(ERROR + words), err
    assert _exit_codes(err) == {0: 2, 1: 2}, err
    assert not (tmp_path / "runs").exists()


def test_bad_input_is_refused_before_the_process_group_forms(data, tmp_path, monkeypatch):
    """WORLD_SIZE 2 with no rendezvous address: the config error, not init_process_group's."""
    for k in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    cfg = TrainConfig(arch="ting_m1", data=data, epochs=1, batch_size=7, out_dir=str(tmp_path), name="r",
                      progress=False, device="cpu")
    with pytest.raises(ConfigError, match="not divisible by the 2 DDP processes"):
        train(cfg)
    assert not torch.distributed.is_initialized()


def _rank_pid(launcher: int, rank: int) -> int:
    """The pid of torchrun's child with RANK=rank."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == launcher and f"RANK={rank}".encode() in env:
            return int(pid)
    raise AssertionError(f"no rank {rank} under {launcher}")


def _running(data: str, tmp_path: Path) -> tuple[subprocess.Popen, list[str]]:
    """A long 2-rank run, returned once its second epoch has ended (rank 0 said so): the first
    epoch's last.pt is written by then."""
    proc = _torchrun("--data", data, "--epochs", "500", "--batch-size", "8", "--log-every", "1", cwd=tmp_path)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("epoch 2/500"):
            return proc, seen
    raise AssertionError("".join(seen) + proc.stderr.read())


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_a_lost_rank_is_one_line_on_the_other_naming_it(data, tmp_path):
    proc, _ = _running(data, tmp_path)
    os.kill(_rank_pid(proc.pid, 1), signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    ours = _ours(err)
    assert len(ours) == 1 and ours[0].startswith(ERROR + "lost DDP peer rank 1 of 2"), err
    last = tmp_path / "runs" / "r" / "last.pt"
    assert ours[0].endswith(f"the last good checkpoint is kept: {last}")
    m = re.search(r" after step (\d+): ", ours[0])
    assert m and int(m.group(1)) >= load_checkpoint(last)["step"] >= 4  # 4 steps per epoch
    assert _exit_codes(err)[1] == -9, err


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_sigterm_to_one_rank_stops_both_with_one_line_giving_the_reason(data, tmp_path):
    proc, _ = _running(data, tmp_path)
    os.kill(_rank_pid(proc.pid, 1), signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert "--stop-at-step" not in out + err
    ours = _ours(err)
    assert len(ours) == 1, err
    m = re.fullmatch(re.escape(ERROR) + r"interrupted by SIGTERM \(rank 1\) after step (\d+); saved (\S+); "
                     r"resume with: torchrun --nproc_per_node 2 -m tinyfast\.train --resume (\S+)", ours[0])
    assert m, ours[0]
    last = Path(m.group(2))
    assert last == tmp_path / "runs" / "r" / "last.pt" and m.group(3) == str(last)
    ck = load_checkpoint(last)
    assert ck["step"] == int(m.group(1))
    assert _exit_codes(err) == {0: 143, 1: 143}, err
