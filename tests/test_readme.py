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
