"""install.sh's skip logic: a re-run with nothing changed installs and compiles nothing, a changed
input re-runs only the steps that read it, a failed step is retried, ``--dry-run`` changes nothing.

The script runs for real on a copy of the files it reads, with a stand-in ``.venv/bin/python``: the
read-only probes (what is installed) run on this interpreter; ``pip``, ``setup.py`` and the DALI
build are recorded instead of run (the stand-in makes the files they would make). The reference is
that record: which heavy commands each run started.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = textwrap.dedent("""\
    #!{python}
    # Stand-in for .venv/bin/python: records pip / setup.py / DALI builds, runs the probes for real.
    import os, subprocess, sys
    args = sys.argv[1:]
    venv = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    heavy = (args[:2] == ["-m", "pip"] or "setup.py" in args or "csrc/dali/build.py" in args)
    if heavy:
        with open(os.environ["FAKE_LOG"], "a") as f:
            skip_ext = os.environ.get("TINYFAST_SKIP_EXTENSION", "")
            f.write(" ".join(args) + (" [no extension]" if skip_ext == "1" else "") + "\\n")
        if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in " ".join(args):
            sys.exit(1)
        if "-e" in args:
            open(os.path.join(venv, "fake-installed"), "w").close()
        if "setup.py" in args:
            open("tinyfast/_C.cpython-311-x86_64-linux-gnu.so", "w").close()
        if "csrc/dali/build.py" in args:
            open("tinyfast/libtinyfast_dali.so", "w").close()
        sys.exit(0)
    if args and args[0] == "-c" and "tinyfast.ops" in args[1]:
        print("[install] tinyfast (checked)")  # the closing import check: no torch import here
        sys.exit(0)
    out = subprocess.run([sys.executable] + args, capture_output=True, text=True)
    installed = os.path.exists(os.path.join(venv, "fake-installed"))
    for line in out.stdout.splitlines(keepends=True):  # DALI only as the test says
        if not (args and args[0] == "-" and line.startswith("dali=")):
            sys.stdout.write(line)
    if args and args[0] == "-":  # the probe: this checkout's install, DALI as the test says
        if installed:
            print("tinyfast=0.1.0")
        if installed or not os.environ.get("FAKE_DALI_WITH_PACKAGE"):  # else DALI comes with the extras
            print(os.environ.get("FAKE_PROBE", ""))
    sys.exit(out.returncode)
""")


@pytest.fixture
def checkout(tmp_path):
    """A copy of what install.sh reads, with the stand-in venv in place."""
    root = tmp_path / "tinyfast"
    for name in ("install.sh", "setup.py", "pyproject.toml"):
        root.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    shutil.copytree(ROOT / "csrc", root / "csrc")
    (root / "tinyfast").mkdir()
    py = root / ".venv/bin/python"
    py.parent.mkdir(parents=True)
    py.write_text(FAKE_PYTHON.format(python=sys.executable))
    py.chmod(0o755)
    return root


def run(root: Path, *args, **env) -> tuple[int, str, list[str]]:
    """Run install.sh in ``root``; returns (status, output, the heavy commands it started)."""
    log = root / "fake.log"
    log.write_text("")
    full = {k: v for k, v in os.environ.items()
            if k not in ("TINYFAST_NO_CUDA", "TORCH_CUDA_ARCH_LIST", "CI", "TINYFAST_EXTRAS")}
    full.update({"FAKE_LOG": str(log), "FAKE_PROBE": "dali=2.4.0", "TINYFAST_EXTRAS": "test,dali", **env})
    p = subprocess.run(["bash", str(root / "install.sh"), *args], env=full, capture_output=True,
                       text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr, log.read_text().splitlines()


def kinds(cmds: list[str]) -> list[str]:
    """Each heavy command as ``pip-tools``, ``package``, ``extension`` or ``dali``."""
    out = []
    for c in cmds:
        if c.startswith("-m pip") and " -e " in c:
            assert "[no extension]" in c, c  # pip never compiles: the incremental build does
            out.append("package")
        elif c.startswith("-m pip"):
            out.append("pip-tools")
        elif "setup.py" in c:
            assert "build_ext" in c and "--inplace" in c, c
            out.append("extension")
        elif "csrc/dali/build.py" in c:
            out.append("dali")
    return out


def test_rerun_with_nothing_changed_runs_no_install_or_build(checkout):
    rc, out, cmds = run(checkout)
    assert rc == 0, out
    assert kinds(cmds) == ["package", "extension", "dali"]
    rc, out, cmds = run(checkout)
    assert rc == 0, out
    assert cmds == [], out
    assert "up to date" in out and "[install] tinyfast (checked)" in out


def test_a_fresh_install_builds_the_dali_plugin_that_its_extras_brought(checkout):
    """On a fresh machine DALI arrives with the package's extras (step 3): the plugin step after it
    sees it and builds the plugin in the same run."""
    rc, out, cmds = run(checkout, FAKE_DALI_WITH_PACKAGE="1")
    assert rc == 0, out
    assert kinds(cmds) == ["package", "extension", "dali"], out
    assert run(checkout, FAKE_DALI_WITH_PACKAGE="1")[2] == []


def test_a_changed_input_reruns_only_the_steps_that_read_it(checkout):
    assert run(checkout)[0] == 0
    header = checkout / "csrc/augment_pixel.h"
    header.write_text(header.read_text() + "\n// touched\n")
    assert kinds(run(checkout)[2]) == ["extension", "dali"]  # the plugin links the extension
    assert run(checkout)[2] == []
    (checkout / "csrc/dali/augment_dali.cc").write_text("// changed\n")
    assert kinds(run(checkout)[2]) == ["dali"]
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'version = "0.1.1"'))
    assert kinds(run(checkout)[2]) == ["package"]
    assert kinds(run(checkout, TINYFAST_EXTRAS="test")[2]) == ["package"]  # other extras
    assert kinds(run(checkout, TINYFAST_EXTRAS="test", TINYFAST_NO_CUDA="1")[2]) == ["extension", "dali"]
    (checkout / "tinyfast/_C.cpython-311-x86_64-linux-gnu.so").unlink()  # the same build again:
    assert kinds(run(checkout, TINYFAST_EXTRAS="test", TINYFAST_NO_CUDA="1")[2]) == ["extension"]


def test_a_failed_step_is_retried_and_missing_tools_are_installed(checkout):
    rc, out, cmds = run(checkout, FAKE_FAIL="setup.py")
    assert rc != 0 and kinds(cmds) == ["package", "extension"]
    assert kinds(run(checkout)[2]) == ["extension", "dali"]  # the package step had succeeded
    assert kinds(run(checkout, FAKE_PROBE="dali=2.4.0\nninja=")[2]) == ["pip-tools"]
    assert kinds(run(checkout, FAKE_PROBE="dali=2.4.0\nsetuptools=65.5.0")[2]) == ["pip-tools"]


def test_dry_run_says_what_it_would_do_and_changes_nothing(checkout):
    rc, out, cmds = run(checkout, "--dry-run")
    assert rc == 0 and cmds == [], out
    assert "would run" in out and "tinyfast._C" in out
    assert not (checkout / ".venv/.tinyfast-install").exists()
    assert kinds(run(checkout)[2]) == ["package", "extension", "dali"]
    rc, out, cmds = run(checkout, "--dry-run")
    assert rc == 0 and cmds == [] and "would run" not in out, out


def test_an_unknown_argument_is_one_error_line(checkout):
    rc, out, cmds = run(checkout, "--frobnicate")
    assert rc == 2 and cmds == []
    assert out.strip().splitlines() == ["install.sh: error: unknown argument '--frobnicate' (usage: "
                                        "./install.sh [--dry-run])"]
