"""tinyfast-bench's command line: bad values are one line naming the flag (exit 2), a run in which
nothing was measured exits 1, and a CPU run that would take hours becomes the quick one."""
import re

import pytest

from tinyfast import ops

pytestmark = pytest.mark.skipif(not ops.is_built(), reason="tinyfast._C is not built")


@pytest.mark.parametrize("argv,flag", [
    (["--target", "nan"], "--target"), (["--target", "1.5"], "--target"),
    (["--archs", "nosuch"], "--archs"), (["--target-arch", "nosuch"], "--target-arch"),
    (["--loaders", "gpu,nosuch"], "--loaders"), (["--data", "/nonexistent/packed"], "--data"),
    (["--sections", "op,nope"], "--sections"), (["--batch-size", "0"], "--batch-size"),
    (["--device", "tpu7"], "--device")])
def test_bad_values_are_one_line_naming_the_flag(argv, flag, capsys, tmp_path):
    from benchmarks.suite import cli

    with pytest.raises(SystemExit) as e:
        cli(argv + ["--quick", "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("tinyfast-bench: error:") and flag in err[0] and "(see --help)" in err[0]


def test_nothing_measured_exits_1(tmp_path, capsys):
    """A packed set without the JPEG tree and only the ``torch`` loader selected: every row is a
    skip, so the command fails instead of reporting success."""
    from benchmarks.suite import cli
    from tinyfast.pack import pack_synthetic

    data = tmp_path / "packed"
    pack_synthetic(data, classes=2, per_class=8, val_per_class=2, test_count=0, progress=False,
                   workers=1, log=None)
    rc = cli(["--quick", "--data", str(data), "--sections", "loaders", "--loaders", "torch",
              "--out", str(tmp_path / "out")])
    assert rc == 1
    assert "nothing was measured" in capsys.readouterr().err
    rc = cli(["--quick", "--data", str(data), "--sections", "loaders", "--loaders", "torch,gpu",
              "--out", str(tmp_path / "out")])
    assert rc == 0


def test_a_cpu_run_of_hours_becomes_the_quick_one(tmp_path, monkeypatch, capsys):
    """No GPU, no --quick, default architectures: the estimate is far over an hour, so the quick
    suite runs (on scratch data: nothing packed under the current folder) and says so."""
    import benchmarks.suite as suite

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TINYFAST_DATA", raising=False)
    monkeypatch.setattr(suite, "CPU_FULL_LIMIT_S", 1.0)
    rep = suite.main(["--device", "cpu", "--sections", "op", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert re.search(r"the full suite would take .* running the quick suite instead", out), out
    assert rep["quick"] is True and rep["estimated_seconds"] > 1.0
    assert not (tmp_path / "data").exists()
    assert rep["command"].startswith("tinyfast-bench")


def test_interrupt_is_one_line(monkeypatch, capsys):
    import benchmarks.suite as suite

    def boom(argv=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(suite, "main", boom)
    assert suite.cli([]) == 130
    assert capsys.readouterr().err.strip() == "tinyfast-bench: interrupted; no result files written"


def test_results_go_under_the_current_folder_never_into_the_checkout(tmp_path, monkeypatch, capsys):
    """Run from another folder without --out: ./benchmark-results there holds the files the run
    says it wrote, and the checkout's benchmarks/results/ is left as it was."""
    from pathlib import Path

    from benchmarks.suite import cli
    from tinyfast.pack import pack_synthetic

    checkout = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    before = sorted(checkout.iterdir()) if checkout.is_dir() else []
    data = tmp_path / "packed"
    pack_synthetic(data, classes=2, per_class=8, val_per_class=2, test_count=0, progress=False,
                   workers=1, log=None)
    here = tmp_path / "elsewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    assert cli(["--quick", "--data", str(data), "--sections", "loaders", "--loaders", "gpu"]) == 0
    said = re.search(r"^wrote (.+)$", capsys.readouterr().out, re.M).group(1).split(", ")
    written = sorted((here / "benchmark-results").iterdir())
    assert written and sorted(map(Path, said)) == written and {p.suffix for p in written} >= {".json", ".md"}
    assert (sorted(checkout.iterdir()) if checkout.is_dir() else []) == before


def test_an_out_that_cannot_be_written_is_one_line_before_anything_runs(tmp_path, capsys):
    from benchmarks.suite import cli

    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "results"
    with pytest.raises(SystemExit) as e:
        cli(["--quick", "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == (f"tinyfast-bench: error: --out {out}: cannot write results there "
                                         f"(Not a directory) (see --help)\n"), err
    assert (tmp_path / "afile").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
