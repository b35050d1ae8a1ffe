"""The GPU proof command (benchmarks.proof) in its CPU smoke mode, and the build defaults it relies on."""
import importlib.util
import json
import os
import subprocess
import runpy
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def setup_module():
    """setup.py's functions, without running setup() (it only builds as __main__)."""
    return runpy.run_path(str(REPO / "setup.py"), run_name="tinyfast_setup_under_test")


@pytest.mark.parametrize("visible, expected", [((9, 0), "9.0+PTX"), ((12, 0), "12.0+PTX"), (None, "8.0;9.0+PTX")])
def test_default_arch_list_embeds_ptx_of_the_newest_arch(setup_module, monkeypatch, visible, expected):
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: visible is not None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: visible)
    assert setup_module["_arch_list"]() == expected


def test_explicit_arch_list_is_used_as_given(setup_module, monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.6")
    assert setup_module["_arch_list"]() == "8.6"


def test_progress_falls_back_to_lines_without_tqdm(monkeypatch, capsys):
    """The GPU machine may have no tqdm: a terminal then gets the plain lines, not an ImportError."""
    import sys

    from tinyfast import progress as prog

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setenv("TINYFAST_PROGRESS", "bar")
    with prog.progress(total=3, desc="step", unit="img", log=print) as bar:
        bar.update(3)
    assert isinstance(bar, prog.LineProgress)
    prog.write("done")
    out = capsys.readouterr().out
    assert "step: 3/3" in out and "done" in out


# ------------------------------------------------------------------------------- the proof itself
from benchmarks.proof import cli as proof, evidence, runner as proof_runner, setup_phases, verdict  # noqa: E402


def test_cpu_smoke_runs_every_phase_and_writes_a_sound_report(tmp_path, capsys):
    out = tmp_path / "out"
    rc = proof.main(["--cpu-smoke", "--out", str(out), "--work", str(tmp_path)])
    printed = capsys.readouterr().out.strip().splitlines()
    assert rc == 0, "\n".join(printed[-30:])
    files = sorted(p.name for p in out.iterdir())
    assert 4 <= len(files) <= 8, files
    report = json.loads(next(out.glob("*-????-??-??.json")).read_text())
    names = [ph["name"] for ph in report["phases"]]
    assert names == [n for n, _ in proof.PHASES]
    for ph in report["phases"]:
        assert ph["status"] in ("ok", "skipped"), ph
        assert ph["status"] == "ok" or ph["reason"], ph
        assert 0 <= ph["seconds"] <= ph["cap"] + 5
    by = {ph["name"]: ph for ph in report["phases"]}
    assert by["data"]["status"] == "ok" and by["op"]["status"] == "ok" and by["train"]["status"] == "ok"
    # the DALI plugin: built (or the one built kept) where DALI imports, skipped with its reason elsewhere
    plugin = by["build"]["dali_plugin"]
    assert plugin["status"] in ("ok", "skipped") and (plugin["status"] == "ok" or plugin["reason"])
    if importlib.util.find_spec("nvidia.dali") is None:
        assert "not installed" in plugin["reason"]
    # python -m benchmarks' schema: the op, loader and training rows and the ceilings are there.
    assert report["ceilings"]["copy_gb_per_s"] > 0
    assert any(r["impl"] == "tinyfast op" and r["images_per_s"] > 0 for r in report["op"]["rows"])
    loaders = {r["loader"]: r for r in report["loaders"]}
    assert loaders["gpu"]["images_per_sec"] > 0 and loaders["torch"]["workers"] == 0
    assert loaders["torch"]["speedup_vs_torch_best"] == pytest.approx(1.0)
    assert {r["feed"] for r in report["train"]} >= {"synthetic", "gpu"}
    assert [r["what"] for r in report["proof"]["syncs"]["rows"]] == ["gpu loader", "tinyfast.train cnn2"]
    raw = next(out.glob("*-cuda-tests.txt")).read_text()
    assert "skipped" in raw and "sanitize_cases: 7/7 cases match on cpu" in raw
    assert "## Targets" in next(out.glob("*.md")).read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tinyfast-proof-")], "work dir left behind"
    # The last line is the summary of every target, none claimed on a CPU.
    assert printed[-1].startswith("PROOF ") and printed[-1].count("|") == len(report["targets"]) - 1
    assert all(t["met"] is None for t in report["targets"] if not t["name"].startswith("wall seconds"))


def test_a_failing_phase_is_recorded_and_later_phases_still_run(tmp_path, monkeypatch):
    def boom(p, cap):
        raise RuntimeError("kernel exploded")

    def ok(p, cap):
        return {"status": "ok", "cap_seen": cap}

    monkeypatch.setattr(proof, "PHASES", [("build", boom), ("tests", ok), ("data", ok)])
    args = proof.parse_args(["--cpu-smoke", "--out", str(tmp_path), "--work", str(tmp_path),
                                               "--budget", "100", "--skip", "data"])
    phases = proof.run_phases(proof_runner.Runner(args, "t"))
    assert [(ph["name"], ph["status"]) for ph in phases] == [("build", "failed"), ("tests", "ok"), ("data", "skipped")]
    assert "kernel exploded" in phases[0]["reason"]
    assert phases[1]["cap_seen"] <= proof.CAPS["tests"]


def test_a_command_over_its_cap_is_killed_with_its_children(tmp_path):
    args = proof.parse_args(["--cpu-smoke", "--out", str(tmp_path), "--work", str(tmp_path)])
    runner = proof_runner.Runner(args, "t")
    t0 = time.monotonic()
    child = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
             "print('started', flush=True); time.sleep(60)")
    r = runner.run([sys.executable, "-c", child], 2)
    assert r["timed_out"] and time.monotonic() - t0 < 20 and "started" in r["output"]
    assert proof_runner.from_run(r, "sleeper")["status"] == "timeout"


def test_output_parsers():
    assert evidence.pytest_counts("....\n3 failed, 120 passed, 7 skipped, 1 error in 61.2s\n") == \
        {"failed": 3, "passed": 120, "skipped": 7, "errors": 1}
    assert evidence.pytest_counts("no tests ran in 0.01s") == {}
    assert evidence.sanitizer_summary("========= ERROR SUMMARY: 0 errors\n") == 0
    assert evidence.sanitizer_summary("========= RACECHECK SUMMARY: 2 hazards displayed (2 errors, 0 warnings)") == 2
    refused = "========= Error: Target application terminated before first instrumented API call"
    assert evidence.sanitizer_summary(refused) is None
    assert proof_runner.rows_of('x\nROW {"a": 1}\nROW {"b": 2}\n') == [{"a": 1}, {"b": 2}]


def _gpu_report(op=0.85, gpu_speedup=150.0, r18=0.96, failed=0, train_syncs=0.0):
    return {"quick": False, "device": "cuda",
            "op": {"summary": {"op_fraction_of_copy": op, "op_device": "cuda",
                               "op_fraction_of_copy_from": "cuda batch 4096, x"}},
            "loaders": [{"loader": "torch", "speedup_vs_torch_best": 1.0},
                        {"loader": "gpu", "speedup_vs_torch_best": gpu_speedup}],
            "train": [{"arch": "resnet18", "feed": "gpu", "channels_last_amp": True, "fraction_of_ceiling": r18},
                      {"arch": "resnet18", "feed": "gpu", "channels_last_amp": False, "fraction_of_ceiling": 0.5}],
            "proof": {"wall_s": 400.0, "budget_s": 470.0,
                      "tests": {"status": "ok", "counts": {"passed": 90, "failed": failed}},
                      "sanitizers": {"memcheck": {"errors": 0}, "racecheck": {"errors": 3}},
                      "syncs": {"rows": [{"what": "gpu loader", "syncs_per_step": 0.0},
                                         {"what": "tinyfast.train resnet18", "steps": [5, 25], "syncs": [9, 9 + 20 * train_syncs],
                                          "syncs_per_step": train_syncs}]}}}


def test_targets_met_and_missed():
    met = {t["name"]: t["met"] for t in verdict.targets(_gpu_report())}
    assert met == {"op fraction of copy": True, "gpu loader x best DataLoader": True,
                   "dali loader x best DataLoader": None, "resnet18 gpu-fed fraction of ceiling": True,
                   "cuda tests failed": True, "memcheck errors": True, "racecheck errors": False,
                   "gpu loader host syncs per batch": True, "train host syncs per step": True,
                   "wall seconds (all)": True}
    missed = {t["name"]: t["met"] for t in verdict.targets(_gpu_report(op=0.5, gpu_speedup=40, r18=0.9, failed=2,
                                                                        train_syncs=1.0))}
    assert not any(missed[k] for k in ("op fraction of copy", "gpu loader x best DataLoader",
                                       "resnet18 gpu-fed fraction of ceiling", "cuda tests failed",
                                       "train host syncs per step"))
    report = dict(_gpu_report(), device_name="H200")
    report["targets"] = verdict.targets(report)
    line = verdict.summary_line(report)
    assert line.startswith("PROOF H200: op fraction of copy 0.85 (>= 0.80) MET |")
    assert "racecheck errors 3 (0) MISSED" in line


def _tiny_wheel(folder: Path, name: str) -> Path:
    """A minimal pure-Python wheel of one module, built by hand (nothing downloaded)."""
    import zipfile

    whl = folder / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    files = {f"{name}.py": "VALUE = 42\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{k},,\n" for k in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(whl, "w") as z:
        for k, v in files.items():
            z.writestr(k, v)
    return whl


def test_wheelhouse_installs_missing_wheels_offline_into_a_private_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    house = tmp_path / "wheels"
    house.mkdir()
    _tiny_wheel(house, "tinyfast_probe_pkg")
    args = proof.parse_args(["--cpu-smoke", "--out", str(tmp_path), "--work", str(tmp_path),
                                               "--wheelhouse", str(house)])
    runner = proof_runner.Runner(args, "t")
    res = setup_phases.phase_wheelhouse(runner, 120)
    assert res["status"] == "ok" and res["installed"] == ["tinyfast_probe_pkg-1.0-py3-none-any.whl"], res
    assert (runner.site / "tinyfast_probe_pkg.py").exists() and runner.site.is_relative_to(tmp_path)
    r = runner.run([sys.executable, "-c", "import tinyfast_probe_pkg as m; print('VALUE', m.VALUE)"], 60)
    assert "VALUE 42" in r["output"]
    assert setup_phases.phase_wheelhouse(proof_runner.Runner(proof.parse_args(
        ["--cpu-smoke", "--out", str(tmp_path), "--work", str(tmp_path)]), "t"), 10)["status"] == "skipped"


def test_tqdm_stand_in_prints_plain_lines(tmp_path):
    """Where tqdm is missing the packer and trainer still import it: the stand-in serves them."""
    setup_phases.install_tqdm_stand_in(tmp_path)
    code = ("import tqdm, tqdm.auto; assert tqdm.__file__.startswith(%r)\n"
            "with tqdm.auto.tqdm(total=4, desc='decode', unit='img', dynamic_ncols=True, smoothing=0.1) as b:\n"
            "    b.update(4)\n"
            "tqdm.tqdm.write('note')\n"
            "print(sum(tqdm.tqdm(range(3), leave=False)))\n") % str(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "decode: 4/4" in r.stderr and "note" in r.stdout and r.stdout.strip().endswith("3")


def test_wheels_chosen_are_the_missing_and_the_older(monkeypatch):
    from importlib import metadata

    have = {"setuptools": "69.5.1", "pytest": "9.2.0", "tqdm": "4.71.0"}

    def version(dist):
        if dist not in have:
            raise metadata.PackageNotFoundError(dist)
        return have[dist]

    monkeypatch.setattr(metadata, "version", version)
    names = ["setuptools-84.2.1-py3-none-any.whl", "pytest-9.2.0-py3-none-any.whl",
             "tqdm-4.70.1-py3-none-any.whl", "matplotlib-3.11.2-cp312-cp312-manylinux2014_x86_64.whl"]
    chosen = [w.name for w in setup_phases.wheels_to_install([Path(n) for n in names])]
    assert chosen == ["setuptools-84.2.1-py3-none-any.whl", "matplotlib-3.11.2-cp312-cp312-manylinux2014_x86_64.whl"]
