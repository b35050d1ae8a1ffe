"""Faults while packing, second sweep: a source changed or deleted during the pack, signals during
an FFCV write, and short usage errors.

Each case must end in one clear line naming the path or flag, never a silent wrong result, a
traceback or a half-written dataset.
"""
from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from test_pack import run, src, tree  # noqa: F401  (the same small tree and CLI runner)
from test_pack_faults import leftovers, one_line_error
from tinyfast.pack import decode


def _changed_after_decode(monkeypatch, change):
    """Run ``change(items)`` right after the first split is decoded (before its writers run)."""
    real, done = decode.decode_split, []

    def decode_split(pool, sdir, items, *a, **k):
        out = real(pool, sdir, items, *a, **k)
        if not done:
            done.append(True)
            change(items)
        return out
    monkeypatch.setattr(decode, "decode_split", decode_split)


def test_a_source_replaced_after_decoding_never_makes_shards_disagree(src, tmp_path, capsys, monkeypatch):  # noqa: F811
    victim = {}

    def replace(items):
        path = items[0].path
        victim["path"] = path
        with Image.open(path) as im:
            size = im.size
        buf = io.BytesIO()
        Image.fromarray(np.full((size[1], size[0], 3), 200, np.uint8)).save(buf, "JPEG", quality=95)
        with open(path, "wb") as f:
            f.write(buf.getvalue())
    _changed_after_decode(monkeypatch, replace)
    out = tmp_path / "packed"
    rc, _, err = run([str(src), "--out", str(out), "--quiet", "--workers", "1", "--jpeg-shards"], capsys)
    if rc == 0:  # allowed only if the shards hold what images.npy holds
        from tinyfast.data import open_packed
        sp = open_packed(out, "train")
        with tarfile.open(next((out / "train" / "jpeg").glob("*.tar"))) as tar:
            first = tar.extractfile("00000000.jpg").read()
        with Image.open(io.BytesIO(first)) as im:
            pixels = np.asarray(im.convert("RGB"))
        assert np.abs(pixels.astype(int) - sp.images[0]).max() <= 8
        return
    assert one_line_error(rc, err), err
    assert victim["path"].split("/")[-1] in err and "changed while it was packed" in err, err
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_source_deleted_after_decoding_is_named_and_nothing_is_written(src, tmp_path, capsys,  # noqa: F811
                                                                          monkeypatch):
    import os
    victim = {}

    def delete(items):
        victim["path"] = items[0].path
        os.unlink(items[0].path)
    _changed_after_decode(monkeypatch, delete)
    out = tmp_path / "packed"
    rc, _, err = run([str(src), "--out", str(out), "--quiet", "--workers", "1", "--jpeg-shards"], capsys)
    assert one_line_error(rc, err), err
    assert err == (f"python -m tinyfast.pack: error: {victim['path']}: changed while it was packed (deleted since it was decoded); "
                   f"nothing was written; pack again\n"), err
    assert not out.exists() and leftovers(tmp_path) == []


def _ffcv_pack_script(tree, out, marker, then="time.sleep(0.05)") -> str:
    """A pack --ffcv whose FFCV writer workers say when they started and run ``then`` per image."""
    return ("import os, sys, time\n"
            "from tinyfast.pack import write_ffcv as w\n"
            "real = w._RowsDataset.__getitem__\n"
            "def slow(self, i):\n"
            f"    open({str(marker)!r}, 'a').close()\n"
            f"    {then}\n"
            "    return real(self, i)\n"
            "w._RowsDataset.__getitem__ = slow\n"
            "from tinyfast.pack import main\n"
            f"sys.exit(main([{str(tree)!r}, '--out', {str(out)!r}, '--quiet', '--ffcv', '--workers', '2']))\n")


def test_ctrl_c_during_the_ffcv_write_exits_130_and_installs_nothing(tree, tmp_path):  # noqa: F811
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    pytest = __import__("pytest")
    pytest.importorskip("ffcv")
    out, marker = tmp_path / "packed", tmp_path / "writing"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", _ffcv_pack_script(tree, out, marker)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)              # a terminal's Ctrl-C: the whole process group
        _, err = proc.communicate(timeout=60)           # no hang
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err == "python -m tinyfast.pack: error: interrupted; nothing was written to --out\n", err
    assert not out.exists() and leftovers(tmp_path) == []


def test_an_ffcv_writer_worker_that_dies_ends_the_pack(tree, tmp_path):  # noqa: F811
    import os
    import subprocess
    import sys
    from pathlib import Path

    __import__("pytest").importorskip("ffcv")
    out, marker = tmp_path / "packed", tmp_path / "writing"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-c", _ffcv_pack_script(tree, out, marker, then="os._exit(3)")],
                       env=env, capture_output=True, text=True, timeout=120)   # FFCV alone waits forever
    assert one_line_error(r.returncode, r.stderr), r.stderr
    assert "an FFCV writer worker died (exit status 3" in r.stderr and "train.beton" in r.stderr, r.stderr
    assert not out.exists() and leftovers(tmp_path) == []


def test_src_deleted_during_the_pack_is_an_error_not_a_smaller_dataset(src, tmp_path, capsys, monkeypatch):  # noqa: F811
    import shutil

    from tinyfast.pack import pipeline
    real = pipeline.scan

    def scan_then_delete(path, *a, **k):
        plan = real(path, *a, **k)
        shutil.rmtree(path / "val")                  # listed, then gone before it is decoded
        return plan
    monkeypatch.setattr(pipeline, "scan", scan_then_delete)
    out = tmp_path / "packed"
    rc, _, err = run([str(src), "--out", str(out), "--quiet", "--workers", "1"], capsys)
    assert one_line_error(rc, err), err
    assert f"{src / 'val' / 'images'}/" in err and "deleted during the pack" in err, err
    assert not out.exists() and leftovers(tmp_path) == []


def _usage_error(argv, capsys):
    import pytest

    from tinyfast.pack import main
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "usage:" not in err, err
    return err


def test_usage_errors_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "o")
    err = _usage_error(["--out", out], capsys)
    assert err == "python -m tinyfast.pack: error: SRC is required (or --synthetic, or --verify DIR) (see --help)\n"
    err = _usage_error(["--synthetic", "--out", out, "--classes", "0"], capsys)
    assert err.startswith("python -m tinyfast.pack: error: --classes ") and "(see --help)" in err, err
    err = _usage_error(["x", "--out", out, "--limit", "abc"], capsys)
    assert err.startswith("python -m tinyfast.pack: error: argument --limit: ") and "'abc'" in err, err
    assert list(tmp_path.iterdir()) == []


def _tree_bytes(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_an_out_that_is_src_or_contains_it_is_refused_even_through_a_symlink(src, tmp_path, capsys):  # noqa: F811
    """--overwrite never replaces the source: not as SRC itself, a folder above it, or either of
    them reached through a symbolic link (SRC given as a link, or --out a link to SRC)."""
    before = _tree_bytes(src)
    link = tmp_path / "link-to-src"
    link.symlink_to(src)
    for arg, out in [(src, src), (src, tmp_path), (link, src), (src, link), (link, tmp_path)]:
        rc, _, err = run([str(arg), "--out", str(out), "--quiet", "--overwrite", "--workers", "1"], capsys)
        assert one_line_error(rc, err), (arg, out, err)
        assert err == f"python -m tinyfast.pack: error: {out}: --out must not be SRC or contain it (packing would replace the source)\n", err
        assert _tree_bytes(src) == before and link.is_symlink() and leftovers(tmp_path) == []
    inside = src / "packed"  # a folder inside SRC is a place like any other
    rc, _, err = run([str(link), "--out", str(inside), "--quiet", "--workers", "1"], capsys)
    from tinyfast.data import open_packed
    assert rc == 0 and open_packed(inside, "train").images.shape[0] == 18, err


@pytest.mark.parametrize("sig, status, how", [("SIGINT", 130, ""), ("SIGTERM", 143, " (SIGTERM)")])
def test_a_signal_in_a_c_callback_still_ends_the_pack_in_one_line(src, tmp_path, capsys, monkeypatch,  # noqa: F811
                                                                  sig, status, how):
    """A Ctrl-C that lands in a C callback (numba's, while FFCV is imported) raises there, and
    Python prints and drops the exception; the pack must still stop before its next split, say
    one line, exit 130/143 and install nothing."""
    import ctypes
    import signal
    import sys

    from tinyfast.pack import decode
    calls = []
    real = decode.decode_split
    monkeypatch.setattr(decode, "decode_split", lambda *a, **k: calls.append(1) or real(*a, **k))

    def in_callback():
        signal.raise_signal(getattr(signal, sig))
        for _ in range(1000):  # the handler runs at the next bytecode: inside the callback
            pass
    callback = ctypes.CFUNCTYPE(None)(in_callback)
    _changed_after_decode(monkeypatch, lambda items: ctypes.cast(callback, ctypes.CFUNCTYPE(None))())
    printed = []  # what Python would print as "Exception ignored on calling ctypes callback function"
    monkeypatch.setattr(sys, "unraisablehook", printed.append)
    out = tmp_path / "packed"
    rc, _, err = run([str(src), "--out", str(out), "--quiet", "--workers", "1"], capsys)
    assert rc == status and err == f"python -m tinyfast.pack: error: interrupted{how}; nothing was written to --out\n", (rc, err)
    assert printed == [] and sys.unraisablehook == printed.append   # quiet meanwhile, restored after
    assert len(calls) == 1                  # train decoded; val and test never started
    assert not out.exists() and leftovers(tmp_path) == []
    monkeypatch.undo()                      # the signal belonged to that command: a later pack runs
    from tinyfast.pack import pack
    assert pack(src, out, workers=1, progress=False, log=None)["splits"]["train"]["count"] == 18
