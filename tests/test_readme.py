"""The README's Python snippets run as written, on whatever device this machine has."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))


def _snippet(heading: str, page: Path = README) -> str:
    """The first Python block after ``heading`` in ``page`` (the README or a docs/ page)."""
    text = page.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_is_the_way_in_and_links_every_reference_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 260  # what a newcomer needs first; the reference is in docs/
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", text))
    assert linked == {f"docs/{p.name}" for p in PAGES} and len(linked) >= 6
    for page in [README, *PAGES]:  # every relative link of every page points at a file that exists
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


@pytest.mark.parametrize("page,heading", [(README, "## The fused op"), (ROOT / "docs/op.md", "# The fused op")],
                         ids=["README", "docs/op.md"])
def test_op_snippet_runs_anywhere(page, heading):
    import torch

    from tinyfast import ops

    if not ops.is_built():
        pytest.skip("tinyfast._C is not built")
    scope = {}
    exec(compile(_snippet(heading, page), page.name, "exec"), scope)
    x = scope["x"]
    assert x.shape == (256, 3, 64, 64) and x.dtype == torch.bfloat16
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert x.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
