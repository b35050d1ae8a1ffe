"""benchmarks/prepare.py (shared by time_to_accuracy and zoo, and so by their wrapper scripts): DATA
checked, tinyfast._C built in place when missing, a JPEG tree packed into OUT/packed — from any
folder, with OUT relative to it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import prepare, time_to_accuracy, zoo

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ["time_to_accuracy.sh", "zoo.sh"]
ENTRY = {"tta": lambda data, out: time_to_accuracy.main(["run", data, out]),
         "zoo": lambda data, out: zoo.main(["--data", data, "--out", out, "--prepare"])}


@pytest.fixture()
def elsewhere(tmp_path, monkeypatch):
    """The current folder: neither the checkout nor the dataset's."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


def _fake_missing_extension(monkeypatch, build_rc: int):
    """The check says tinyfast._C is missing; the build prints its folder and exits ``build_rc``."""
    monkeypatch.setattr(prepare, "EXTENSION_CHECK", [sys.executable, "-c", "raise SystemExit(1)"])
    monkeypatch.setattr(prepare, "BUILD", [sys.executable, "-c", "import os; print('compiling in', os.getcwd()); "
                                           f"print('last words'); raise SystemExit({build_rc})"])


@pytest.mark.parametrize("entry", list(ENTRY))
def test_a_failed_build_names_a_log_that_exists_from_any_folder(elsewhere, tmp_path, monkeypatch, capsys, entry):
    (tmp_path / "tree").mkdir()
    _fake_missing_extension(monkeypatch, build_rc=1)
    assert ENTRY[entry](str(tmp_path / "tree"), "out") == 1
    err = capsys.readouterr().err.strip().splitlines()
    log = elsewhere / "out" / "build.log"
    assert len(err) == 1 and f"see {log}" in err[0] and "building tinyfast._C failed" in err[0], err
    assert "last words" in err[0]
    assert log.read_text().splitlines() == [f"compiling in {REPO}", "last words"]  # built in the checkout
    assert sorted(p.name for p in (elsewhere / "out").iterdir()) == ["build.log"]  # nothing packed


def test_a_built_extension_is_followed_by_packing_into_out(elsewhere, tmp_path, monkeypatch, capsys):
    from tinyfast.synthetic import write_tree
    src = write_tree(tmp_path / "tiny-imagenet-200", classes=2, per_class=3, val_per_class=2, test_count=1,
                     size=64, seed=0, workers=1, progress=False)
    _fake_missing_extension(monkeypatch, build_rc=0)
    packed, seconds = prepare.prepare(src, Path("out"))
    assert packed == elsewhere / "out" / "packed" and seconds > 0
    assert (packed / "manifest.json").is_file() and (packed / "train" / "images.npy").is_file()
    assert "compiling in" in (elsewhere / "out" / "build.log").read_text()
    assert prepare.prepare(packed, Path("out2")) == (packed, None)  # packed already: used as it is
    import json
    rec = json.loads((elsewhere / "out" / "pack.json").read_text())  # kept for a report made later
    assert rec == {"data": str(src), "packed": str(packed), "seconds": seconds}
    assert not (elsewhere / "out2" / "pack.json").exists()


@pytest.mark.parametrize("entry", list(ENTRY))
def test_missing_data_or_a_failed_pack_is_one_line(elsewhere, tmp_path, capsys, entry):
    assert ENTRY[entry](str(tmp_path / "nope"), "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'nope'}: no such dataset" in err[0] and not (elsewhere / "out").exists()
    (tmp_path / "empty").mkdir()
    assert ENTRY[entry](str(tmp_path / "empty"), "out") == 1
    err = capsys.readouterr().err.strip().splitlines()
    log = elsewhere / "out" / "pack.log"
    assert len(err) == 1 and f"packing {tmp_path / 'empty'} failed" in err[0] and f"log {log}" in err[0], err
    assert log.is_file() and not (elsewhere / "out" / "packed").exists()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_name_a_python_that_cannot_run_them(tmp_path, script):
    (tmp_path / "tree").mkdir()
    for python in ("/nonexistent", shutil.which("true")):
        env = dict(os.environ, PYTHON=python)
        r = subprocess.run(["bash", str(REPO / "benchmarks" / script), str(tmp_path / "tree"), "out"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith(f"{script}: error: PYTHON={python}: ") and "torch" in r.stderr
        assert not (tmp_path / "out").exists()
