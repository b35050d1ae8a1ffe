"""The README's Python snippets run as written, on whatever device this machine has."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _snippet(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_op_snippet_runs_anywhere():
    import torch

    from tinyfast import ops

    if not ops.is_built():
        pytest.skip("tinyfast._C is not built")
    scope = {}
    exec(compile(_snippet("## The fused op"), "README.md", "exec"), scope)
    x = scope["x"]
    assert x.shape == (256, 3, 64, 64) and x.dtype == torch.bfloat16
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert x.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def _bash_block(heading: str) -> list[str]:
    text = README.read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index(heading):], re.S).group(1)
    return [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_packing_commands_leave_the_default_data_folder_alone(monkeypatch):
    """The default set (``./data/synthetic``) is made by the first command of the quick start: a pack
    command aimed there is refused, and ``--overwrite`` would replace the set every default command uses."""
    from tinyfast.default_data import default_data_dir

    monkeypatch.delenv("TINYFAST_DATA", raising=False)
    outs = [re.search(r"--out (\S+)", ln).group(1) for ln in _bash_block("## Packing data") if "--out " in ln]
    assert len(outs) >= 4 and len(set(outs)) == len(outs), outs
    assert all(Path(o) != default_data_dir() for o in outs), outs
