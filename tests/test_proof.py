"""The GPU proof command (benchmarks/proof.py) in its CPU smoke mode, and the build defaults it relies on."""
import runpy
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
