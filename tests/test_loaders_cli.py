"""``python -m tinyfast.loaders``: ``--list`` says which loaders can run here and why not, the
``--bench`` table is one block after the progress lines, and ``--workers`` defaults are stated."""
from __future__ import annotations

import io
import os
import re
import sys

import pytest

import tinyfast.loaders as L
from test_loaders import packed  # noqa: F401  (the shared packed-data fixture)


def _runs(name, data) -> bool:  # noqa: F811
    """The reference: building the loader on the CPU and taking one batch works."""
    try:
        loader = L.build(name, data, "train", 8, device="cpu", num_workers=0)
        next(iter(loader))
        loader.close()
        return True
    except (ImportError, RuntimeError, ValueError, OSError):
        return False


def _list(capsys) -> dict[str, tuple[str, str]]:
    assert L.main(["--list", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["loader", "runs"] and "cpu" in out[0]
    rows = {}
    for line in out[1:]:
        name, verdict, *why = line.split(maxsplit=2)
        rows[name] = (verdict, why[0] if why else "")
    return rows


def test_list_says_which_loaders_run_here(packed, capsys):  # noqa: F811
    rows = _list(capsys)
    assert list(rows) == L.list_loaders()
    for name, (verdict, why) in rows.items():
        assert verdict == ("yes" if _runs(name, packed) else "no"), (name, verdict, why)
        assert why, name  # what it reads when it runs, why not when it does not
    assert "device-resident" in rows["gpu"][1]


def test_list_names_what_is_missing(capsys, monkeypatch):
    for mod in [m for m in sys.modules if m.split(".")[0] == "ffcv" or m.startswith("nvidia.dali")] + ["ffcv",
                                                                                                      "nvidia.dali"]:
        monkeypatch.setitem(sys.modules, mod, None)  # as if DALI and FFCV were not installed
    rows = _list(capsys)
    for name in ("dali", "dali-native"):
        assert rows[name][0] == "no" and "DALI" in rows[name][1] and "not installed" in rows[name][1]
    assert rows["ffcv"][0] == "no" and "FFCV" in rows["ffcv"][1]


def test_bench_table_is_one_block_after_the_progress(packed, monkeypatch):  # noqa: F811
    """stdout and stderr into one stream, as in a log (``2>&1``): the header and rows are adjacent."""
    monkeypatch.setenv("TINYFAST_PROGRESS", "lines")
    both = io.StringIO()
    monkeypatch.setattr(sys, "stdout", both)
    monkeypatch.setattr(sys, "stderr", both)
    argv = ["--bench", "--batch-size", "8", "--batches", "2", "--runs", "1", "--warmup", "1", "--workers", "0",
            "--data", str(packed), "--loaders", "gpu,torch-npy", "--device", "cpu"]
    assert L.main(argv) == 0
    lines = both.getvalue().splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("loader "))
    assert [ln.split()[0] for ln in lines[head + 1:head + 3]] == ["gpu", "torch-npy"], lines
    assert all(re.match(r"^  (gpu|torch-npy): ", ln) for ln in lines[:head]), lines  # progress first
    assert lines[head + 3:] == [], lines


def test_workers_defaults_are_stated_and_are_the_cpu_cores(packed):  # noqa: F811
    from tinyfast.pack.cli import build_parser as pack_parser
    from tinyfast.train import build_train_parser

    cores = len(os.sched_getaffinity(0))
    for parser in (build_train_parser(), L.get_args_parser(), pack_parser()):
        (action,) = [a for a in parser._actions if "--workers" in a.option_strings]
        assert "default" in action.help and "cores" in action.help, (parser.prog, action.help)
    assert L.build("gpu", packed, "train", 8).num_workers == cores


@pytest.mark.parametrize("argv, says", [
    (["--bench", "--loaders", "gpu,nosuch"], "--loaders: unknown nosuch; choose from "),
    (["--bench", "--device", "tpu7"], "--device 'tpu7': "),
    (["--bench", "--batch-size", "abc"], "argument --batch-size: 'abc' is not an integer"),
    (["--bench", "--dtype", "int8"], "argument --dtype: invalid choice: 'int8'"),
    (["--bench", "--data", "/nonexistent/packed"], "--data /nonexistent/packed: not a packed dataset ("),
])
def test_bad_arguments_or_data_are_one_line_and_exit_2(argv, says, capsys):
    """As tinyfast-bench: one line naming the flag, no usage text, no table of skips."""
    with pytest.raises(SystemExit) as e:
        L.main(argv)
    cap = capsys.readouterr()
    err = cap.err.splitlines()
    assert e.value.code == 2 and len(err) == 1 and cap.out == "", cap.err
    assert err[0].startswith(f"python -m tinyfast.loaders: error: {says}") and err[0].endswith("(see --help)"), err
