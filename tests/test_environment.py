"""One Python: the README's commands are written for the environment install.sh makes (stated once,
in the quick start), and a command run by another interpreter says so in one line."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ACTIVATE = ". .venv/bin/activate"


def _shell_lines() -> list[tuple[int, str]]:
    """(block number, command line) of every bash block of the README, comments dropped."""
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]  # the README's blocks first
    blocks = [b for p in pages for b in re.findall(r"```bash\n(.*?)```", p.read_text(), re.S)]
    return [(i, line.split(" #")[0].strip()) for i, b in enumerate(blocks) for line in b.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_readme_commands_use_one_python_stated_once():
    lines = _shell_lines()
    # The quick start's two commands activate the environment before anything runs Python...
    quick = [line for i, line in lines if i < 2]
    assert len(quick) == 2 and all(line.startswith(f"./install.sh && {ACTIVATE} && python -m ") for line in quick)
    # ... every later command says `python`, never another spelling of the interpreter ...
    others = [line for _, line in lines]
    assert not [line for line in others if re.search(r"\.venv/bin/python|\bpython3\b|\bpip3?\b", line)]
    assert sum("python -m" in line for line in others) > 20
    # ... and the convention is said in words once, next to the quick start.
    text = README.read_text()
    assert text.count("activate") >= 1 and len(re.findall(r"every command below", text)) == 1
    start = text.index("## Quick start")
    assert start < text.index("every command below") < text.index("## Packing data")


def test_a_python_without_torch_gets_one_line_naming_it(tmp_path):
    # -S: no site-packages, so this interpreter has no torch; -m finds tinyfast in the checkout.
    p = subprocess.run([sys.executable, "-S", "-m", "tinyfast.train", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: python -m tinyfast.train: torch is not installed for ")
    assert sys.executable in lines[0]


def test_the_hint_names_this_checkouts_environment(tmp_path, monkeypatch):
    from tinyfast import environment

    monkeypatch.setattr(environment, "ROOT", tmp_path)
    assert f"run {tmp_path / 'install.sh'}" in environment.venv_hint()  # no .venv: make it
    py = tmp_path / ".venv/bin/python"
    py.parent.mkdir(parents=True)
    py.write_text("")
    hint = environment.venv_hint()
    assert f"this is {sys.executable}" in hint and f"{tmp_path / '.venv'}" in hint
    assert f"source {tmp_path / '.venv/bin/activate'}" in hint
    monkeypatch.setattr(sys, "prefix", str(tmp_path / ".venv"))
    assert environment.venv_hint() == ""  # already the right one: nothing to say


def test_pack_ffcv_missing_names_the_interpreter(tmp_path, monkeypatch):
    from tinyfast import environment
    from tinyfast.data import PackError
    from tinyfast.pack.write_ffcv import ffcv_writer

    monkeypatch.setattr(environment, "ROOT", tmp_path)
    (tmp_path / ".venv/bin").mkdir(parents=True)
    (tmp_path / ".venv/bin/python").write_text("")
    monkeypatch.setitem(sys.modules, "ffcv", None)  # import ffcv now fails
    monkeypatch.setitem(sys.modules, "ffcv.fields", None)
    with pytest.raises(PackError) as e:
        ffcv_writer()
    msg = str(e.value)
    assert msg.startswith("--ffcv needs the ffcv package") and "\n" not in msg
    assert f"this is {sys.executable}" in msg and "activate" in msg
