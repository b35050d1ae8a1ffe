"""benchmarks/time_to_accuracy.py: the result JSON from run directories, and the curve's data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from benchmarks import time_to_accuracy as tta
from tinyfast.plots import plot_time_to_accuracy


def _run(root: Path, recipe: str, seed: int, curve: list[tuple[float, float | None]], wall: float, compile_s=0.0):
    d = root / "runs" / f"{recipe}-seed{seed}"
    d.mkdir(parents=True)
    rows = [{"epoch": i + 1, "wall_time": s, "val_top1": v, **({"compile_time": compile_s} if compile_s else {})}
            for i, (s, v) in enumerate(curve)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    best = max((v for _, v in curve if v is not None), default=None)
    (d / "summary.json").write_text(json.dumps({"wall_time": wall, "best_val_top1": best}))
    (d / "config.json").write_text(json.dumps({"config": {"recipe": recipe, "seed": seed, "epochs": len(curve)}}))
    return d


def test_report_figures_come_from_the_run_files(tmp_path, capsys):
    _run(tmp_path, "fast", 0, [(10.0, 0.30), (20.5, 0.58), (31.0, 0.61)], 33.0, compile_s=4.5)
    _run(tmp_path, "fast", 1, [(11.0, 0.31), (22.0, 0.55), (33.0, 0.59)], 34.0)
    assert tta.main(["report", str(tmp_path), "--seeds", "0", "1", "--pack-seconds", "12.5"]) == 0
    (path,) = tmp_path.glob("time-to-accuracy-*.json")
    res = json.loads(path.read_text())
    a, b = res["runs"]
    assert (a["seed"], a["val_top1"], a["best_val_top1"], a["seconds"]) == (0, 0.61, 0.61, 33.0)
    assert a["seconds_to_target"] == 31.0 and b["seconds_to_target"] is None  # first epoch >= 60%
    assert a["compile_seconds"] == 4.5 and b["compile_seconds"] == 0.0
    assert a["curve"] == [[10.0, 0.30, 1], [20.5, 0.58, 2], [31.0, 0.61, 3]]
    assert res["mean_val_top1"] == pytest.approx(0.60) and res["mean_seconds"] == pytest.approx(33.5)
    assert res["pack_seconds"] == 12.5 and res["config"]["recipe"] == "fast" and res["target"]["val_top1"] == 0.60
    with Image.open(path.with_suffix(".png")) as im:
        assert im.format == "PNG" and im.size[0] > 300
    out = capsys.readouterr().out
    assert "seed 0: val top-1 61.00% in 33.0 s (60% at 31.0 s)" in out and "mean: 60.00% in 33.5 s" in out


def test_report_takes_the_packing_time_recorded_by_an_earlier_command(tmp_path, capsys):
    """Seeds run in separate commands (the second on OUT/packed): the report still has pack_seconds."""
    _run(tmp_path, "fast", 0, [(10.0, 0.30)], 11.0)
    _run(tmp_path, "fast", 1, [(10.0, 0.32)], 12.0)
    (tmp_path / "pack.json").write_text(json.dumps({"data": "tree", "packed": "p", "seconds": 7.25}))
    assert tta.main(["report", str(tmp_path), "--seeds", "0", "1"]) == 0
    (path,) = tmp_path.glob("time-to-accuracy-*.json")
    assert json.loads(path.read_text())["pack_seconds"] == 7.25
    assert tta.main(["report", str(tmp_path), "--seeds", "0", "1", "--pack-seconds", "3"]) == 0  # given: it wins
    assert json.loads(path.read_text())["pack_seconds"] == 3.0


def test_the_curve_plots_the_given_points_in_percent(tmp_path):
    runs = [{"label": "seed 0", "curve": [[5.0, 0.1, 1], [9.0, None, 2], [14.0, 0.25, 3]]},
            {"label": "seed 1", "curve": [[6.0, 0.2, 1]]}]
    data = plot_time_to_accuracy(runs, tmp_path / "c.png")
    assert data == {"seed 0": [(5.0, 10.0), (14.0, 25.0)], "seed 1": [(6.0, 20.0)]}  # no-val epoch left out
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob("*.tmp*"))


def test_plot_cli_redraws_a_result(tmp_path):
    _run(tmp_path, "best", 3, [(60.0, 0.5), (120.0, 0.66)], 125.0)
    assert tta.main(["report", str(tmp_path), "--recipe", "best", "--seeds", "3"]) == 0
    (path,) = tmp_path.glob("time-to-accuracy-*.json")
    assert tta.main(["plot", str(path), str(tmp_path / "again.png")]) == 0
    assert tta.plot(path, tmp_path / "x.png") == {"seed 3": [(60.0, 50.0), (120.0, 66.0)]}


def test_missing_or_broken_runs_are_one_line_errors(tmp_path, capsys):
    assert tta.main(["report", str(tmp_path), "--seeds", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fast-seed0/summary.json" in err
    d = _run(tmp_path, "fast", 0, [(1.0, 0.1)], 2.0)
    (d / "metrics.jsonl").write_text("{not json\n")
    assert tta.main(["report", str(tmp_path), "--seeds", "0"]) == 1
    assert "metrics.jsonl:1: not a JSON line" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("[]")
    assert tta.main(["plot", str(tmp_path / "bad.json"), str(tmp_path / "p.png")]) == 1
    assert "not a time-to-accuracy result" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        tta.main(["report", str(tmp_path), "--pack-seconds", "-1"])
    assert e.value.code == 2
