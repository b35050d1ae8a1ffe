"""Faults while packing: full disks, dead and killed workers, file-system errors, odd images and names.

Each case must end in one clear line naming the path (or a counted, reported skip), never a
traceback, a hang or a half-written dataset.
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import default_signals
from PIL import Image

from test_pack import run, src, tree  # noqa: F401  (the same small tree and CLI runner)
from tinyfast import pack as P
from tinyfast.data import open_packed
from tinyfast.pack import pipeline

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0


def one_line_error(rc, err):
    return rc == 2 and err.startswith("python -m tinyfast.pack: error: ") and err.count("\n") == 1 and "Traceback" not in err


def leftovers(d):
    return [p.name for p in d.iterdir() if p.name.startswith(".")]


def skipped(out):
    man = json.loads((out / "manifest.json").read_text())
    return {s["path"]: s for s in man["skipped"]}, man["skipped_count"]


def _raise(err, *args):
    def f(*a, **k):
        raise OSError(err, os.strerror(err), *args)
    return f


# ------------------------------------------------------------------------------------ full disk
def test_disk_full_at_allocation_is_one_line_and_leaves_nothing(tree, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "posix_fallocate", _raise(errno.ENOSPC))
    out = tmp_path / "packed"
    rc, _, err = run([str(tree), "--out", str(out), "--quiet", "--workers", "1"], capsys)
    assert one_line_error(rc, err), err
    assert f"{tmp_path}: no space left on device: this pack needs about " in err
    assert not out.exists() and leftovers(tmp_path) == []


def test_disk_full_at_manifest_write(tree, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline, "write_json", _raise(errno.ENOSPC, "manifest.json"))
    out = tmp_path / "packed"
    rc, _, err = run([str(tree), "--out", str(out), "--quiet", "--jpeg-shards"], capsys)
    assert one_line_error(rc, err) and f"{tmp_path}: no space left on device" in err, err
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 192 KiB tmpfs (needs mount permission: root in a container, say)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_disk_full_on_a_real_small_filesystem(tree, small_tmpfs, workers):
    """27 images of 12 KiB do not fit in 192 KiB: one line, no SIGBUS, no hang, nothing left behind."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if workers == "2":
        env["TINYFAST_PACK_TEST_DELAY"] = "0.01"  # the worker pool, even for a tiny tree
    out = small_tmpfs / "packed"
    r = subprocess.run([sys.executable, "-m", "tinyfast.pack", str(tree), "--out", str(out), "--quiet",
                        "--workers", workers], env=env, capture_output=True, text=True, timeout=120)
    assert one_line_error(r.returncode, r.stderr), (r.returncode, r.stderr)
    assert f"{small_tmpfs}: no space left on device: this pack needs about" in r.stderr
    assert os.listdir(small_tmpfs) == []


def test_disk_full_while_generating_the_synthetic_tree(small_tmpfs, tmp_path):
    out = small_tmpfs / "syn"
    r = subprocess.run([sys.executable, "-m", "tinyfast.pack", "--synthetic", "--classes", "4", "--per-class",
                        "40", "--out", str(out), "--quiet"], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       capture_output=True, text=True, timeout=120)
    assert one_line_error(r.returncode, r.stderr), r.stderr
    assert f"python -m tinyfast.pack: error: {small_tmpfs}: no space left on device: this pack needs about" in r.stderr
    assert os.listdir(small_tmpfs) == []
    f = tmp_path / "afile"
    f.write_text("x")
    rc = P.main(["--synthetic", "--classes", "2", "--per-class", "2", "--out", str(tmp_path / "s"), "--tree", str(f)])
    assert rc == 2 and not (tmp_path / "s").exists()


# -------------------------------------------------------------------------------------- workers
def _no_torch_script(body: str) -> str:
    # Without torch loaded, the pool forks: the patches below reach the workers.
    return "import os, signal, sys\nimport tinyfast.pack.decode as d\n" + body


def test_dead_worker_ends_the_pack(tree, tmp_path):
    out = tmp_path / "packed"
    code = _no_torch_script(
        "d.INLINE_BELOW = 1\n"
        "d._decode_one = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from tinyfast.pack import main\n"
        f"sys.exit(main([{str(tree)!r}, '--out', {str(out)!r}, '--quiet', '--workers', '2']))\n")
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       capture_output=True, text=True, timeout=120)
    assert one_line_error(r.returncode, r.stderr) and "decode worker died" in r.stderr, r.stderr
    assert not out.exists() and leftovers(tmp_path) == []


def _pids_with(marker: str) -> list:
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and marker.encode() in (p / "cmdline").read_bytes():
                pids.append(int(p.name))
        except OSError:
            pass
    return pids


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killed_pack_with_workers_leaves_no_traceback_and_no_worker(tree, tmp_path, sig):
    out = tmp_path / "packed-by-pool"
    env = dict(os.environ, TINYFAST_PACK_TEST_DELAY="1.0", PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "tinyfast.pack", str(tree), "--out", str(out), "--quiet", "--workers", "2"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=default_signals)
    deadline = time.time() + 30
    while not any(p.name.startswith(f".{out.name}.tmp-{proc.pid}-") for p in tmp_path.iterdir()):
        assert time.time() < deadline
        time.sleep(0.02)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)  # returns once every holder of stderr (the workers) is gone
    assert proc.returncode != 0 and b"Traceback" not in err, err.decode()
    if sig != signal.SIGKILL:  # cleaned up at once; after SIGKILL the next pack cleans up
        assert err.decode().count("\n") == 1 and b"interrupted" in err
        assert proc.returncode == 128 + sig    # 130 / 143, as a training run exits
        assert leftovers(tmp_path) == []
    deadline = time.time() + 10
    while _pids_with(str(out)) and time.time() < deadline:
        time.sleep(0.1)
    assert _pids_with(str(out)) == []
    assert not out.exists()


# ---------------------------------------------------------------------------- file-system errors
def test_class_folder_that_cannot_be_listed(src, tmp_path, capsys, monkeypatch):
    w = (src / "wnids.txt").read_text().split()[1]
    locked = src / "train" / w / "images"
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p=".": _raise(errno.EACCES, str(p))() if Path(p) == locked else real(p))
    out = tmp_path / "packed"
    rc, _, err = run([str(src), "--out", str(out), "--quiet"], capsys)
    assert one_line_error(rc, err) and f"{locked}: cannot list (Permission denied)" in err, err
    assert not out.exists()


@pytest.mark.skipif(IS_ROOT, reason="root reads any folder: covered by the simulated case above")
def test_class_folder_without_permission(src, tmp_path, capsys):
    w = (src / "wnids.txt").read_text().split()[1]
    locked = src / "train" / w / "images"
    locked.chmod(0)
    try:
        rc, _, err = run([str(src), "--out", str(tmp_path / "packed"), "--quiet"], capsys)
    finally:
        locked.chmod(0o755)
    assert one_line_error(rc, err) and str(locked) in err and "Permission denied" in err, err


def test_read_only_out_folder(tree, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.mkdir
    monkeypatch.setattr(os, "mkdir", lambda p, *a, **k: _raise(errno.EROFS, str(p))() if Path(p).parent == ro
                        else real(p, *a, **k))
    rc, _, err = run([str(tree), "--out", str(ro / "packed"), "--quiet"], capsys)
    assert one_line_error(rc, err) and f"{ro}: cannot write the output there (Read-only file system)" in err, err
    if not IS_ROOT:
        monkeypatch.setattr(os, "mkdir", real)
        ro.chmod(0o555)
        rc, _, err = run([str(tree), "--out", str(ro / "packed"), "--quiet"], capsys)
        ro.chmod(0o755)
        assert one_line_error(rc, err) and f"{ro}: cannot write the output there" in err, err


def test_out_that_is_a_file_or_under_one(tree, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    rc, _, err = run([str(tree), "--out", str(f), "--quiet"], capsys)
    assert one_line_error(rc, err) and f"{f}: exists and is not a directory" in err
    rc, _, err = run([str(tree), "--out", str(f / "sub" / "packed"), "--quiet"], capsys)
    assert one_line_error(rc, err) and f"{f}: is not a directory, so --out" in err, err
    rc, _, err = run(["--synthetic", "--classes", "2", "--per-class", "2", "--out", str(f / "syn")], capsys)
    assert one_line_error(rc, err) and f"{f}: is not a directory" in err, err


def test_symlink_loops(src, tmp_path, capsys):
    d = src / "train" / (src / "wnids.txt").read_text().split()[0] / "images"
    (d / "loop.JPEG").symlink_to("loop.JPEG")
    (d / "gone.JPEG").symlink_to(tmp_path / "nowhere.JPEG")
    out = tmp_path / "packed"
    rc, _, err = run([str(src), "--out", str(out), "--quiet"], capsys)
    assert rc == 0, err
    rel = d.relative_to(src).as_posix()
    by_path, _ = skipped(out)
    assert by_path[f"{rel}/loop.JPEG"]["reason"] == "symbolic link loop"
    assert by_path[f"{rel}/gone.JPEG"]["reason"] == "broken symbolic link"
    loop = tmp_path / "looped"
    loop.symlink_to(loop)
    rc, _, err = run([str(loop), "--out", str(tmp_path / "o2"), "--quiet"], capsys)
    assert one_line_error(rc, err) and f"{loop}: symbolic link loop" in err, err


# ------------------------------------------------------------------- odd images: modes, reasons
def _save(arr, path, mode=None):
    Image.fromarray(arr, mode).save(path) if mode else Image.fromarray(arr).save(path)


def test_16_bit_32_bit_and_float_images_rescaled_by_their_range(src, tmp_path, capsys):
    d = src / "train" / (src / "wnids.txt").read_text().split()[0] / "images"
    rng = np.random.default_rng(3)
    g16 = rng.integers(0, 65536, (64, 64), dtype=np.uint16)
    g32 = rng.integers(0, 65536, (64, 64)).astype(np.int32)
    gf = rng.random((64, 64), dtype=np.float32)
    _save(g16, d / "deep.png")  # 16-bit grayscale PNG: Pillow's mode I;16
    _save(g32, d / "int.tif", "I")
    _save(gf, d / "float.tif", "F")
    with Image.open(d / "deep.png") as im16, Image.open(d / "int.tif") as im32, Image.open(d / "float.tif") as imf:
        assert (im16.mode, im32.mode, imf.mode) == ("I;16", "I", "F")
    out = tmp_path / "packed"
    rc, _, err = run([str(src), "--out", str(out), "--quiet", "--strict"], capsys)
    assert rc == 0, err
    tr = open_packed(out, "train")
    want = {"deep.png": np.floor(g16 * 255.0 / 65535 + 0.5), "int.tif": np.floor(g32 * 255.0 / 65535 + 0.5),
            "float.tif": np.rint(gf.astype(np.float64) * 255)}
    for name, ref in want.items():
        row = np.asarray(tr.images[tr.ids.index(name)])
        for c in range(3):
            np.testing.assert_array_equal(row[..., c], ref.astype(np.uint8), err_msg=name)
    man = tr.manifest
    assert man["converted_to_rgb"] == {"F": 1, "I": 1, "I;16": 1}


def test_images_outside_their_range_are_counted_skips(src, tmp_path, capsys):
    d = src / "train" / (src / "wnids.txt").read_text().split()[0] / "images"
    _save(np.full((8, 8), 70000, np.int32), d / "big.tif", "I")
    _save(np.full((8, 8), 3.5, np.float32), d / "hdr.tif", "F")
    nan = np.zeros((8, 8), np.float32)
    nan[0, 0] = np.nan
    _save(nan, d / "nan.tif", "F")
    (d / "junk.png").write_bytes(os.urandom(500))
    out = tmp_path / "packed"
    rc, stdout, err = run([str(src), "--out", str(out), "--workers", "1"], capsys)
    assert rc == 0, err
    rel = d.relative_to(src).as_posix()
    by_path, counts = skipped(out)
    assert by_path[f"{rel}/big.tif"]["reason"] == "32-bit integer image with values outside 0..65535 (70000..70000)"
    assert by_path[f"{rel}/hdr.tif"]["reason"] == "float image with values outside [0, 1] (3.5..3.5)"
    assert by_path[f"{rel}/nan.tif"]["reason"] == "float image with NaN or infinite values"
    assert by_path[f"{rel}/junk.png"]["reason"] == "not a recognised image format"
    assert sum(counts.values()) == 4 and "skipped 4:" in stdout


def test_skip_reason_is_the_real_one(src, tmp_path, capsys, monkeypatch):
    """A file that cannot be read is reported as such, not as a corrupt image."""
    d = src / "train" / (src / "wnids.txt").read_text().split()[2] / "images"
    victim = sorted(d.iterdir())[0]
    import builtins
    real = builtins.open
    monkeypatch.setattr(builtins, "open", lambda p, *a, **k: _raise(errno.EACCES, str(p))() if str(p) == str(victim)
                        else real(p, *a, **k))
    out = tmp_path / "packed"
    rc, _, err = run([str(src), "--out", str(out), "--quiet", "--workers", "1"], capsys)
    assert rc == 0, err
    by_path, _ = skipped(out)
    rec = by_path[victim.relative_to(src).as_posix()]
    assert rec["reason"] == "permission denied" and "Permission denied" in rec["detail"], rec
    if not IS_ROOT:
        monkeypatch.setattr(builtins, "open", real)
        victim.chmod(0)
        rc, _, err = run([str(src), "--out", str(tmp_path / "real"), "--quiet", "--workers", "1"], capsys)
        victim.chmod(0o644)
        assert rc == 0 and skipped(tmp_path / "real")[0][victim.relative_to(src).as_posix()]["reason"] == \
            "permission denied"


# --------------------------------------------------------------------------------- odd names
def test_non_utf8_file_and_folder_names_are_counted_skips(src, tmp_path, capsys):
    w = (src / "wnids.txt").read_text().split()[0]
    d = src / "train" / w / "images"
    bad = os.fsdecode(b"caf\xe9.JPEG")  # Latin-1 bytes: not UTF-8
    shutil.copy(d / f"{w}_0.JPEG", d / bad)
    out = tmp_path / "packed"
    rc, stdout, err = run([str(src), "--out", str(out), "--workers", "1"], capsys)
    assert rc == 0, err
    by_path, _ = skipped(out)
    assert by_path[f"train/{w}/images/caf\\xe9.JPEG"]["reason"] == "file name is not valid UTF-8"
    assert len(open_packed(out, "train")) == 18 and "1 file name is not valid UTF-8" in stdout
    folder = tmp_path / "folder"
    for cls in ("cats", os.fsdecode(b"\xffdogs"), "eels"):
        (folder / cls).mkdir(parents=True)
        for i in range(2):
            shutil.copy(d / f"{w}_{i}.JPEG", folder / cls / f"{i}.jpg")
    (folder / "cats" / os.fsdecode(b"sub\xfe")).mkdir()
    shutil.copy(d / f"{w}_3.JPEG", folder / "cats" / os.fsdecode(b"sub\xfe") / "x.jpg")
    rc, _, err = run([str(folder), "--out", str(tmp_path / "pf"), "--quiet"], capsys)
    assert rc == 0, err
    by_path, _ = skipped(tmp_path / "pf")
    assert by_path["\\xffdogs"]["reason"] == "directory name is not valid UTF-8"
    assert by_path["cats/sub\\xfe/x.jpg"]["reason"] == "file name is not valid UTF-8"
    assert open_packed(tmp_path / "pf", "train").classes == ["cats", "eels"]
    rc, _, err = run([str(src), "--out", str(tmp_path / "strict"), "--quiet", "--strict"], capsys)
    assert one_line_error(rc, err) and "caf\\xe9.JPEG: file name is not valid UTF-8" in err, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_a_worker_starts_is_left_to_the_parent(sig):
    """A terminal's Ctrl-C reaches every process of the group, a decode worker still starting up
    (spawned: importing, unpickling) included. It must not die there with a traceback of its own
    (or break the pool): until the worker ignores SIGINT the signal waits, and then it is ignored.
    SIGTERM waits the same way and then ends the worker quietly (its default action)."""
    script = ("import os, signal, sys, torch\n"  # torch loaded: the pool spawns
              "from tinyfast._util import mp_context, worker_init\n"
              "from concurrent.futures import ProcessPoolExecutor\n"
              "assert mp_context().get_start_method() == 'spawn'\n"
              "with ProcessPoolExecutor(1, mp_context=mp_context(), initializer=worker_init) as ex:\n"
              "    f = ex.submit(sum, [1, 2, 3])\n"
              "    (p,) = ex._processes.values()\n"
              f"    os.kill(p.pid, {int(sig)})\n"
              "    try:\n"
              "        print(f.result(timeout=60))\n"
              "    except Exception as e:\n"
              "        print(type(e).__name__)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "Fatal Python error" not in r.stderr, r.stderr
    assert r.stdout == ("6\n" if sig == signal.SIGINT else "BrokenProcessPool\n"), r.stdout
