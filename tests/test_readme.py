"""The README's and docs/ pages' snippets run as written, on whatever device this machine has."""
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


def _bash_block(heading: str, page: Path = README) -> list[str]:
    text = page.read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index(heading):], re.S).group(1)
    return [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


@pytest.mark.parametrize("page,heading", [(README, "## Packing data"), (ROOT / "docs/packing.md", "# Packing data")],
                         ids=["README", "docs/packing.md"])
def test_packing_commands_leave_the_default_data_folder_alone(monkeypatch, page, heading):
    """The default set (``./data/synthetic``) is made by the first command of the quick start: a pack
    command aimed there is refused, and ``--overwrite`` would replace the set every default command uses."""
    from tinyfast.default_data import default_data_dir

    monkeypatch.delenv("TINYFAST_DATA", raising=False)
    outs = [re.search(r"--out (\S+)", ln).group(1) for ln in _bash_block(heading, page) if "--out " in ln]
    assert len(outs) >= 4 and len(set(outs)) == len(outs), outs
    assert all(Path(o) != default_data_dir() for o in outs), outs


def _snippets(heading: str, page: Path = ROOT / "docs/op.md") -> list[str]:
    text = page.read_text()
    section = text[text.index(heading):]
    end = section.find("\n## ", 1)
    section = section if end < 0 else section[:end]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def packed_here(tmp_path_factory):
    """A small set where the README's snippets look (``data/synthetic`` under the current folder),
    with what the default set carries: WebDataset shards and, where FFCV imports, ``.beton`` files."""
    import importlib.util

    from tinyfast.pack import pack_synthetic

    root = tmp_path_factory.mktemp("readme")
    pack_synthetic(root / "data" / "synthetic", classes=4, per_class=64, val_per_class=4, test_count=4, size=64,
                   seed=0, jpeg_shards=True, ffcv=importlib.util.find_spec("ffcv") is not None, progress=False,
                   workers=1, log=None)
    return root


def _run_in(root, code: str, monkeypatch) -> dict:
    monkeypatch.chdir(root)
    scope = {}
    exec(compile(code, "docs/op.md", "exec"), scope)
    return scope


def _check_batch(root, images, mean, std):
    """The batch is the packed set's pixels, augmented and normalised with its train statistics."""
    import numpy as np
    import torch

    pixels = np.load(root / "data" / "synthetic" / "train" / "images.npy")
    ref_mean = pixels.reshape(-1, 3).mean(0) / 255
    assert np.allclose(mean, ref_mean, atol=1e-3)
    x = images.float().cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    assert images.shape == (256, 3, 64, 64) and images.dtype == torch.bfloat16
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert images.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert x.min() >= -0.02 and x.max() <= 1.02          # within [0, 1] once un-normalised
    assert np.allclose(x.mean((0, 2, 3)).numpy(), ref_mean, atol=0.1)  # the set's colours, jittered


def test_dali_snippet_runs_as_written(packed_here, monkeypatch):
    pytest.importorskip("nvidia.dali")
    from tinyfast import dali_ops, ops

    if not (ops.is_built() and dali_ops.plugin_available()):
        pytest.skip("tinyfast._C or the DALI plugin is not built")
    scope = _run_in(packed_here, _snippets("## The op in your own DALI or FFCV pipeline")[0], monkeypatch)
    _check_batch(packed_here, scope["images"], scope["MEAN"], scope["STD"])
    assert len(scope["labels"]) == 256 and set(scope["labels"].tolist()) <= {0, 1, 2, 3}


def test_ffcv_snippet_runs_as_written(packed_here, monkeypatch):
    import numpy as np

    pytest.importorskip("ffcv")
    scope = _run_in(packed_here, _snippets("## The op in your own DALI or FFCV pipeline")[1], monkeypatch)
    _check_batch(packed_here, scope["images"], scope["MEAN"], scope["STD"])
    # 256 train images, batch 256: the last batch is a whole epoch, every packed label once
    packed = np.load(packed_here / "data" / "synthetic" / "train" / "labels.npy")
    assert sorted(scope["labels"].cpu().tolist()) == sorted(packed.tolist())
