"""Every registered loader against the shared contract, on a tiny synthetic packed dataset (CPU).

References are independent of the loaders: pixels come from the packed ``.npy`` normalised in
float64 here, or from ``tinyfast.ops.augment`` applied directly to the packed rows with the
parameters the shared sampler draws; sample identity is recovered by matching each delivered
image to its packed row.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import tinyfast.loaders as L
from tinyfast.data import PackError, open_packed
from tinyfast.loaders.base import ShardedOrder, derive_seed

from loader_check import ALL, N_CLASSES, make, match_rows, normalised_rows, run_epoch
# the shared fixtures, used by name
from loader_check import _one_intra_op_thread, packed, truncated  # noqa: F401


# ----------------------------------------------------------------------------------- registry
def test_registry_names_and_errors():
    assert {"torch", "torch-npy", "gpu", "dali", "dali-native", "ffcv"} <= set(ALL)
    with pytest.raises(ValueError, match="already registered"):
        L.register("gpu")(lambda *a, **k: None)
    with pytest.raises(ValueError, match=r"unknown loader 'nope'; choose one of: torch, .*gpu.*ffcv"):
        L.build("nope", "x", "train", 4)


# ----------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", ALL)
def test_contract_and_normalisation(name, packed):
    ld = make(name, packed, "train", batch_size=10, train=False, dtype=torch.float32)
    assert (len(ld), ld.num_samples, ld.batch_size, ld.num_classes) == (7, 64, 10, N_CLASSES)
    xs, ys = [], []
    for x, y in ld:
        assert x.shape[1:] == (3, 64, 64) and x.dtype == torch.float32 and x.device.type == "cpu"
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert y.dtype == torch.int64 and y.device.type == "cpu" and y.shape == x.shape[:1]
        assert int(y.min()) >= 0 and int(y.max()) < N_CLASSES
        xs.append(x)
        ys.append(y)
    assert [len(y) for y in ys] == [10] * 6 + [4]   # no drop_last in evaluation
    x = torch.cat(xs).double()
    # mean/std are the train split's own statistics: normalised, they must be (0, 1) exactly.
    assert x.mean((0, 2, 3)).abs().max() < 1e-3
    assert (x.std((0, 2, 3)) - 1).abs().max() < 2e-3
    # Evaluation order is the packed order: every sample once, pixels and labels as packed.
    ref = normalised_rows(packed, "train")
    assert (x - ref).abs().max() < 1e-4
    assert torch.equal(torch.cat(ys), torch.from_numpy(open_packed(packed, "train").labels))


@pytest.mark.parametrize("name", ["gpu", "torch-npy"])
def test_default_dtype_float32_or_autocast(name, packed):
    """Without ``dtype`` a plain float32 model accepts the batches; inside ``torch.autocast`` the
    loader delivers the autocast dtype."""
    x, _ = next(iter(make(name, packed, "val", 4)))
    assert x.dtype == torch.float32
    conv = torch.nn.Conv2d(3, 4, 3)
    assert conv(x).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ld = make(name, packed, "val", 4)
    assert ld.dtype == torch.bfloat16 and next(iter(ld))[0].dtype == torch.bfloat16


def test_classes_like_torchvision(packed):
    import json

    man = json.loads((packed / "manifest.json").read_text())
    ld = make("gpu", packed, "val", 4)
    assert len(ld.classes) == N_CLASSES
    assert [(c.wnid, c.words) for c in ld.classes] == [(c["wnid"], c.get("words", "")) for c in man["classes"]]
    assert ld.classes[2] == (man["classes"][2]["wnid"], man["classes"][2].get("words", ""))
    assert ld.class_to_idx == {c["wnid"]: i for i, c in enumerate(man["classes"])}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dtypes_gpu(dtype, packed):
    x, _ = next(iter(make("gpu", packed, "val", batch_size=8, dtype=dtype, policy="standard", train=True)))
    assert x.dtype == dtype and x.is_contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------------- coverage
@pytest.mark.parametrize("name", ALL)
def test_epoch_covers_every_sample_once(name, packed):
    """Evaluation split over 2 ranks: every sample exactly once (one rank: see the contract test)."""
    ref = normalised_rows(packed, "train")
    shards = []
    for rank in range(2):
        ld = make(name, packed, "train", 10, train=False, rank=rank, world_size=2)
        assert ld.num_samples == 32 and len(ld) == 4
        shards.append(sum((match_rows(x, ref) for x, _ in ld), []))
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(64))


def test_eval_uneven_shards_cover_once(packed):
    """15-ish samples over 2 ranks without padding: each sample exactly once across ranks."""
    ref = normalised_rows(packed, "val")  # 16 rows; world_size 3 -> 6, 5, 5
    got = []
    for rank in range(3):
        ld = make("gpu", packed, "val", 4, rank=rank, world_size=3)
        assert ld.num_samples == [6, 5, 5][rank]
        got += sum((match_rows(x, ref) for x, _ in ld), [])
    assert sorted(got) == list(range(16))


@pytest.mark.parametrize("name", ALL)
def test_training_order_shared_and_sharded(name, packed):
    """Training shuffle (identity policy to see the rows): the order of the shared sampler, every
    sample once per epoch over 2 ranks, a new order each epoch."""
    ref = normalised_rows(packed, "train")
    orders = {}
    for rank in range(2):
        ld = make(name, packed, "train", 8, train=True, policy="none", seed=3, rank=rank, world_size=2)
        assert len(ld) == 4
        for epoch in (0, 1):
            got = sum((match_rows(x, ref) for x, _ in run_epoch(ld, epoch)), [])
            want = ShardedOrder(64, 8, shuffle=True, drop_last=True, seed=3, rank=rank,
                                world_size=2).indices(epoch).tolist()
            assert got == want
            orders[rank, epoch] = got
    for epoch in (0, 1):
        assert sorted(orders[0, epoch] + orders[1, epoch]) == list(range(64))
    assert orders[0, 0] != orders[0, 1]
    # The permutation is the one documented: randperm from a generator seeded by (seed, epoch).
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(derive_seed(3, 1))).tolist()
    assert orders[0, 1] == perm[0::2]


def test_sharding_rules():
    # drop_last: cut to a multiple of world_size, equal shards, incomplete batches dropped.
    o = [ShardedOrder(10, 2, shuffle=True, drop_last=True, rank=r, world_size=3) for r in range(3)]
    assert [x.num_samples for x in o] == [3, 3, 3] and [x.num_batches for x in o] == [1, 1, 1]
    assert len(set(sum((x.indices(0).tolist() for x in o), []))) == 9
    # training without drop_last pads like DistributedSampler: 10 -> 12, 2 repeats.
    o = [ShardedOrder(10, 4, shuffle=True, drop_last=False, rank=r, world_size=3) for r in range(3)]
    allidx = sum((x.indices(0).tolist() for x in o), [])
    assert len(allidx) == 12 and set(allidx) == set(range(10))
    assert o[0].batch_sizes() == [4]
    with pytest.raises(ValueError, match="rank"):
        ShardedOrder(10, 4, shuffle=False, drop_last=False, rank=2, world_size=2)


# ----------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_batches_and_resume(name, packed):
    kw = dict(train=True, policy="standard", seed=7)
    ld = make(name, packed, "train", 8, **kw)
    a = run_epoch(ld, epoch=2)
    assert len(a) == 8
    # Mid-epoch: take 3 batches, save, resume in a fresh loader -> exactly the 5 remaining ones.
    ld.set_epoch(2)
    it = iter(ld)
    for _ in range(3):
        next(it)
    state = ld.state_dict()
    del it
    assert (state["epoch"], state["batch"]) == (2, 3)
    fresh = make(name, packed, "train", 8, **kw)
    fresh.load_state_dict(state)
    fresh.set_epoch(2)          # what a training loop does at the top of the epoch: keeps the resume
    rest = [(x.clone(), y.clone()) for x, y in fresh]
    assert len(rest) == 5
    for (xr, yr), (xa, ya) in zip(rest, a[3:]):
        assert torch.equal(xr, xa) and torch.equal(yr, ya)
    # The next epoch is whole again and different; the same epoch again (same seed, other
    # instance) is identical batch for batch.
    fresh.set_epoch(3)
    assert not torch.equal(next(iter(fresh))[0], a[0][0])
    again = run_epoch(fresh, epoch=2)
    assert len(again) == 8
    for (xa, ya), (xb, yb) in zip(a, again):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("name", ALL)
def test_state_is_what_comes_next(name, packed):
    """A checkpoint taken after ``set_epoch(e + 1)``, before its first batch, resumes the whole of
    epoch ``e + 1`` (not an empty remainder of it); ``iter()`` and a finished pass reset the cursor."""
    kw = dict(train=True, policy="standard", seed=7)
    ld = make(name, packed, "train", 8, **kw)
    want = run_epoch(ld, epoch=1)
    assert (ld.state_dict()["epoch"], ld.state_dict()["batch"]) == (1, 0)   # a new pass: all of it
    run_epoch(ld, epoch=0)
    ld.set_epoch(1)
    state = ld.state_dict()
    assert (state["epoch"], state["batch"]) == (1, 0)
    fresh = make(name, packed, "train", 8, **kw)
    fresh.load_state_dict(state)
    fresh.set_epoch(1)
    got = [(x.clone(), y.clone()) for x, y in fresh]
    assert len(got) == len(want) == 8
    for (xg, yg), (xw, yw) in zip(got, want):
        assert torch.equal(xg, xw) and torch.equal(yg, yw)
    # Mid-pass the state names the next batch; a new iter() starts the epoch again.
    it = iter(ld)
    next(it), next(it)
    assert ld.state_dict()["batch"] == 2
    it = iter(ld)
    assert ld.state_dict()["batch"] == 0
    assert torch.equal(next(it)[0], want[0][0])


def test_seed_changes_everything(packed):
    a = run_epoch(make("gpu", packed, "train", 8, train=True, policy="standard", seed=7))
    b = run_epoch(make("gpu", packed, "train", 8, train=True, policy="standard", seed=8))
    assert not torch.equal(a[0][1], b[0][1]) or not torch.equal(a[0][0], b[0][0])


def test_torch_workers_do_not_change_batches(packed):
    kw = dict(train=True, policy="standard", seed=1)
    a = run_epoch(make("torch-npy", packed, "train", 16, num_workers=0, **kw))
    b = run_epoch(make("torch-npy", packed, "train", 16, num_workers=2, **kw))
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    ld = make("torch-npy", packed, "train", 16, num_workers=2, **kw)
    with ld:
        next(iter(ld))
        procs = list(ld._dl._iterator._workers)
        assert all(p.is_alive() for p in procs)
    assert not any(p.is_alive() for p in procs)   # close() stops the persistent workers


def test_torch_baseline_augments(packed):
    """The torchvision pipeline really augments (flips/affine/colour change pixels) and keeps
    roughly normalised statistics."""
    ref = normalised_rows(packed, "train")
    ld = make("torch", packed, "train", 16, train=True, policy="standard", seed=0)
    ld.set_epoch(0)
    x = next(iter(ld))[0].double()
    idx = ld.order.batch(0, 0)
    assert x.shape == (16, 3, 64, 64)
    assert (x - ref[idx]).abs().mean() > 0.1      # not the identity
    assert x.mean().abs() < 0.5 and 0.5 < x.std() < 1.5


# ----------------------------------------------------------------------------------- bad data
@pytest.mark.parametrize("name", ALL)
def test_missing_or_corrupt_data(name, packed, truncated, tmp_path):
    with pytest.raises(PackError, match="not a directory"):
        L.build(name, tmp_path / "nowhere", "train", 4)
    with pytest.raises(PackError, match=r"train/images\.npy: 5000 bytes"):
        L.build(name, truncated, "train", 4)
    with pytest.raises(PackError, match="no split"):
        L.build(name, packed, "extra", 4)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("change", ["truncated", "garbage", "resized", "removed"])
def test_jpeg_changed_after_packing_is_one_clear_line(change, workers, packed, tmp_path):
    """A JPEG of the tree damaged, replaced or removed after packing: the ``torch`` loader stops
    with one :class:`PackError` line naming the file (also when a worker process read it)."""
    import json
    import shutil

    from PIL import Image

    src = Path(json.loads((packed / "manifest.json").read_text())["source"]["path"])
    tree = tmp_path / "tree"
    shutil.copytree(src / "val", tree / "val")
    ld = make("torch", packed, "val", 4, jpeg_root=tree, num_workers=workers)
    victim = Path(ld.dataset.read.paths[5])          # in the second batch
    if change == "truncated":
        victim.write_bytes(victim.read_bytes()[:300])
    elif change == "garbage":
        victim.write_bytes(b"not a jpeg at all" * 10)
    elif change == "resized":
        Image.new("RGB", (48, 40), (10, 20, 30)).save(victim, format="JPEG")
    else:
        victim.unlink()
    with ld, pytest.raises(PackError) as err:
        for _ in ld:
            pass
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(victim)), msg
    assert "Traceback" not in msg and "worker" not in msg
    assert ("48x40" in msg) if change == "resized" else ("no longer a readable image" in msg)


def test_bad_arguments(packed):
    with pytest.raises(ValueError, match="rank"):
        L.build("gpu", packed, "train", 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        L.build("gpu", packed, "train", 0)
    with pytest.raises(ValueError, match="dtype"):
        L.build("gpu", packed, "train", 4, dtype=torch.int8)
    ld = L.build("gpu", packed, "train", 8, seed=1)
    with pytest.raises(ValueError, match="cannot resume"):
        ld.load_state_dict(dict(L.build("gpu", packed, "train", 8, seed=2).state_dict()))


def test_unlabelled_test_split(packed):
    x, y = next(iter(make("gpu", packed, "test", 8)))
    assert x.shape == (8, 3, 64, 64) and torch.equal(y, torch.full((8,), -1))


# ----------------------------------------------------------------------------------- benchmark
BENCH = ["--bench", "--batch-size", "16", "--batches", "2", "--runs", "1", "--warmup", "1", "--workers", "0"]


def test_throughput_and_cli(packed, capsys, monkeypatch):
    monkeypatch.setenv("TINYFAST_PROGRESS", "lines")      # as in a log file
    r = L.throughput("gpu", packed, "train", 16, batches=3, warmup=1, runs=2)
    assert r["images_per_sec"] > 0 and len(r["runs"]) == 2 and r["device"] == "cpu"
    assert r["dtype"] == "float16"
    capsys.readouterr()
    assert L.main(BENCH + ["--data", str(packed), "--loaders", "gpu,torch-npy"]) == 0
    cap = capsys.readouterr()
    rows = [line.split() for line in cap.out.splitlines()]
    assert [r[0] for r in rows[1:]] == ["gpu", "torch-npy"]
    assert all(float(r[2].replace(",", "")) > 0 for r in rows[1:])
    # Progress through tinyfast.progress: plain lines per loader (warm-up + timed batches).
    assert re.search(r"^  gpu: 3/3 \(100%\) .*batch/s in ", cap.err, re.M), cap.err
    assert re.search(r"^  torch-npy: 3/3 \(100%\)", cap.err, re.M), cap.err
    assert L.main(["--list"]) == 0 and "dali-native" in capsys.readouterr().out


def test_cli_exit_status_when_nothing_measured(truncated, packed, capsys):
    """Every loader skipped (unreadable data): the reasons are printed and the exit status is 1."""
    assert L.main(BENCH + ["--data", str(truncated), "--loaders", "gpu,torch-npy"]) == 1
    cap = capsys.readouterr()
    assert cap.out.count("skipped") == 2 and "images.npy: 5000 bytes" in cap.out
    assert "no loader could be measured" in cap.err
    for bad in (["--loaders", "gpu,nope"], ["--device", "tpu7"], ["--workers", "1,x"], ["--batches", "0"]):
        with pytest.raises(SystemExit) as e:
            L.main(BENCH + ["--data", str(packed)] + bad)
        assert e.value.code == 2
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert "Traceback" not in err and last.startswith("python -m tinyfast.loaders: error: ")
        assert bad[1].split(",")[-1] in last


def test_cli_help_describes_every_option():
    actions = [a for a in L.get_args_parser()._actions if a.option_strings]
    assert len(actions) >= 12
    for a in actions:
        assert a.help and len(a.help) > 15, f"{a.option_strings[0]} has no help text"


@pytest.mark.parametrize("name, module, extra", [("dali", "nvidia.dali", "tinyfast[dali]"),
                                                 ("dali-native", "nvidia.dali", "tinyfast[dali]"),
                                                 ("ffcv", "ffcv.loader", "tinyfast[ffcv]")])
def test_missing_optional_library_names_the_extra(name, module, extra, packed, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, module, None)   # import of it now fails
    with pytest.raises(ImportError, match=re.escape(extra)):
        L.build(name, packed, "val", 4, num_workers=0)


@pytest.mark.parametrize("split", ["train", "val"])
def test_ffcv_mean_image_normalisation(split, packed):
    """FFCV's Augment operation subtracts the train split's mean image (float64 reference)."""
    ld = make("ffcv", packed, split, 16, train=False, dtype=torch.float32, normalize="mean-image")
    x = torch.cat([b for b, _ in ld]).double()
    m = torch.from_numpy(np.array(open_packed(packed, "train").images, dtype=np.float64).mean(0) / 255)
    ps = open_packed(packed, split)
    std = torch.tensor(ps.std, dtype=torch.float32).double()
    want = (torch.from_numpy(np.array(ps.images, dtype=np.float64)) / 255 - m) / std
    assert (x - want.permute(0, 3, 1, 2)).abs().max() < 1e-4
