"""Shared pytest configuration: tests marked ``cuda`` are skipped on machines without a GPU."""
import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Opening packed data stamps verified files in the user cache: keep the tests' stamps in a tmp dir
    (set in the environment, so subprocesses inherit it)."""
    import os

    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session")
def packed_synthetic(tmp_path_factory):
    """A factory: ``packed_synthetic(name, classes, per_class, val_per_class, test_count, seed=0)``
    packs a small synthetic set at 64 px into a tmp dir and returns its path as a string."""
    def make(name: str, classes: int, per_class: int, val_per_class: int, test_count: int, seed: int = 0) -> str:
        from tinyfast.pack import pack_synthetic

        out = tmp_path_factory.mktemp("data") / name
        pack_synthetic(out, classes=classes, per_class=per_class, val_per_class=val_per_class,
                       test_count=test_count, size=64, seed=seed, progress=False, log=None)
        return str(out)
    return make


def default_signals() -> None:
    """``preexec_fn`` for a child a test will signal: default SIGINT/SIGTERM handling, nothing
    blocked. Dispositions set to ignore and the blocked-signal mask are inherited through exec, and
    libraries used earlier in the test process (thread pools of the loaders) may have changed them."""
    import signal

    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)


@pytest.fixture()
def tree_and_elsewhere(tmp_path):
    """A small tiny-imagenet-200 JPEG tree (3 classes, 64 px) and an empty third folder to run a
    benchmark script from, with its OUT relative to that folder."""
    from tinyfast.synthetic import write_tree

    src = write_tree(tmp_path / "tiny-imagenet-200", classes=3, per_class=8, val_per_class=4, test_count=2,
                     size=64, seed=0, workers=1, progress=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return src, elsewhere
