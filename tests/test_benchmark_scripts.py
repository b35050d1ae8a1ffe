"""benchmarks/split_dataset.sh (parts of a tree, joined with a checked sha256) and
benchmarks/time_to_accuracy.sh (pack, three seeds of a recipe, one result JSON), on tiny trees."""
from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPLIT = REPO / "benchmarks" / "split_dataset.sh"
TTA = REPO / "benchmarks" / "time_to_accuracy.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("split") is None,
                                reason="needs bash and coreutils")


def _sh(*args, env=None, cwd=None):
    return subprocess.run(["bash", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "src" / "tiny-tree"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "x.bin").write_bytes(os.urandom(20000))
    (root / "b" / "y.txt").write_text("hello\n")
    (root / "b" / "link.bin").symlink_to("../a/x.bin")  # followed: the parts carry real files
    return root


def test_split_then_join_restores_the_tree(tree, tmp_path):
    parts = tmp_path / "parts"
    r = _sh(SPLIT, "split", tree, parts, "4K")
    assert r.returncode == 0, r.stderr
    chunks = sorted(parts.glob("tiny-tree.tar.gz.part-*"))
    assert len(chunks) >= 5 and all(p.stat().st_size <= 4096 for p in chunks)
    assert (parts / "tiny-tree.tar.gz.sha256").read_text().split()[1] == "tiny-tree.tar.gz"
    assert sorted(p.name for p in parts.iterdir()) == sorted([c.name for c in chunks] + ["tiny-tree.tar.gz.sha256"])
    r = _sh(SPLIT, "join", parts, tmp_path / "dest")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "dest" / "tiny-tree"
    assert _same_tree(tree, out)
    assert not (out / "b" / "link.bin").is_symlink()
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["tiny-tree"]  # no temporary left


def test_split_is_reproducible_and_the_default_part_is_60_mib(tree, tmp_path):
    assert _sh(SPLIT, "split", tree, tmp_path / "p1").returncode == 0
    assert _sh(SPLIT, "split", tree, tmp_path / "p2").returncode == 0
    assert ((tmp_path / "p1" / "tiny-tree.tar.gz.sha256").read_text()
            == (tmp_path / "p2" / "tiny-tree.tar.gz.sha256").read_text())
    assert "60M" in SPLIT.read_text().split("split_tree()")[1].split("\n")[1]


def test_split_compresses_the_tar(tmp_path):
    """Many small files: the tar's 512-byte headers and padding, and repeated content, compress."""
    root = tmp_path / "src" / "small"
    root.mkdir(parents=True)
    for i in range(200):
        (root / f"f{i:03}.jpg").write_bytes(b"\xff\xd8" + bytes(range(256)) * 2 + os.urandom(300))
    parts = tmp_path / "parts"
    assert _sh(SPLIT, "split", root, parts).returncode == 0
    (part,) = parts.glob("small.tar.gz.part-*")
    tar_size = len(subprocess.run(["tar", "-C", root.parent, "-cf", "-", "small"], capture_output=True).stdout)
    assert part.stat().st_size < tar_size / 2
    assert subprocess.run(["gzip", "-t"], stdin=part.open("rb")).returncode == 0


def test_join_takes_the_uncompressed_parts_of_an_earlier_split(tree, tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    tar = subprocess.run(["tar", "-C", tree.parent, "-cf", "-", "tiny-tree"], capture_output=True, check=True).stdout
    for i in range(0, len(tar), 8192):
        (parts / f"tiny-tree.tar.part-{i // 8192:03}").write_bytes(tar[i:i + 8192])
    import hashlib
    (parts / "tiny-tree.tar.sha256").write_text(f"{hashlib.sha256(tar).hexdigest()}  tiny-tree.tar\n")
    r = _sh(SPLIT, "join", parts, tmp_path / "dest")
    assert r.returncode == 0, r.stderr
    assert _same_tree(tree, tmp_path / "dest" / "tiny-tree")


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_join_refuses_a_damaged_part_and_writes_nothing(tree, tmp_path, damage):
    parts = tmp_path / "parts"
    assert _sh(SPLIT, "split", tree, parts, "4K").returncode == 0
    victim = sorted(parts.glob("*.part-*"))[1]
    if damage == "corrupt":
        data = bytearray(victim.read_bytes())
        data[7] ^= 0xFF
        victim.write_bytes(bytes(data))
    else:
        victim.unlink()
    r = _sh(SPLIT, "join", parts, tmp_path / "dest")
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "sha256" in err[0] and "corrupt" in err[0]
    assert not (tmp_path / "dest").exists()


def test_split_usage_and_bad_source(tmp_path):
    r = _sh(SPLIT, "split", tmp_path / "nope", tmp_path / "parts")
    assert r.returncode == 1 and r.stderr.strip() == f"split_dataset.sh: error: {tmp_path / 'nope'}: not a directory"
    assert _sh(SPLIT).returncode == 2


@pytest.mark.parametrize("size", ["abc", "0", "4x", "-1", ""])
def test_split_refuses_a_bad_part_size_before_writing_anything(tree, tmp_path, size):
    r = _sh(SPLIT, "split", tree, tmp_path / "parts", size)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"split_dataset.sh: error: PART_SIZE '{size}': ") and "60M" in r.stderr
    assert not (tmp_path / "parts").exists()


def test_a_failed_split_leaves_no_temporary_part(tree, tmp_path):
    # The parts folder fills up: GNU split cannot write past the file-size limit (ulimit -f, in KiB;
    # SIGXFSZ ignored, so the write fails with EFBIG as a full disk fails with ENOSPC).
    parts = tmp_path / "parts"
    r = _sh("-c", f'trap "" XFSZ; ulimit -f 2; exec bash "$@"', "sh", SPLIT, "split", tree, parts, "4K")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"split_dataset.sh: error: {parts}: ") and "File too large" in r.stderr
    assert not parts.exists()  # neither a temporary part nor the folder this split made
    parts.mkdir()  # a folder that was there stays, empty
    r = _sh("-c", f'trap "" XFSZ; ulimit -f 2; exec bash "$@"', "sh", SPLIT, "split", tree, parts, "4K")
    assert r.returncode == 1 and list(parts.iterdir()) == []


def test_join_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    src = tmp_path / "src" / "many"
    src.mkdir(parents=True)
    for i in range(30):
        (src / f"f{i:02}.bin").write_bytes(os.urandom(20000))
    parts = tmp_path / "parts"
    assert _sh(SPLIT, "split", src, parts, "100K").returncode == 0
    dest = tmp_path / "dest"
    # tar cannot write a file past 10 KiB (ulimit -f, SIGXFSZ ignored: each write fails as on a full disk).
    r = _sh("-c", f'trap "" XFSZ; ulimit -f 10; exec bash "$@"', "sh", SPLIT, "join", parts, dest)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"split_dataset.sh: error: {dest / 'many'}: ") and "File too large" in r.stderr
    assert not r.stdout and not dest.exists()


def test_time_to_accuracy_packs_runs_three_seeds_and_writes_the_json(tree_and_elsewhere):
    src, elsewhere = tree_and_elsewhere  # run from a third folder, OUT relative to it
    out = elsewhere / "out"
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO),
               TRAIN_ARGS="--epochs 1 --batch-size 8 --no-compile --device cpu --arch ting_m1")
    r = _sh(TTA, src, "out", env=env, cwd=elsewhere)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (out / "fast-seed2.log").read_text().strip() and f"into {out / 'packed'}" in r.stdout
    (path,) = out.glob("time-to-accuracy-cpu-*.json")
    res = json.loads(path.read_text())
    assert res["gpu"] == "cpu" and res["recipe"] == "fast" and res["pack_seconds"] > 0
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert res["commit"] == (head.stdout.strip() if head.returncode == 0 else "unknown")
    assert [r["seed"] for r in res["runs"]] == [0, 1, 2]
    for run in res["runs"]:
        rows = [json.loads(line) for line in (Path(run["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert run["val_top1"] == rows[-1]["val_top1"] and 0 <= run["val_top1"] <= 1
        assert run["seconds"] >= rows[-1]["epoch_time"] > 0
        saved = json.loads((Path(run["run_dir"]) / "config.json").read_text())["config"]
        assert saved["recipe"] == "fast" and saved["seed"] == run["seed"]
        assert run["curve"] == [[r["wall_time"], r["val_top1"], r["epoch"]] for r in rows]
    assert res["mean_val_top1"] == pytest.approx(sum(r["val_top1"] for r in res["runs"]) / 3)
    assert (out / "packed" / "manifest.json").exists()
    assert path.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a rerun into the same OUT replaces its runs as it replaces packed/ (a used --name is refused)
    r = _sh(TTA, src, out, env=dict(env, SEEDS="1"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "--overwrite: removed the earlier run's" in (out / "fast-seed1.log").read_text()
