"""Several augmentation sets in one epoch (``--aug A+B``, ``loaders.build(policy=("A", "B"))``):
each epoch is one whole pass of the split per set, in order, so the epoch has the sum of their
steps; pass ``i`` is exactly what a loader of set ``i`` alone yields (its own shuffle seed), and a
resume anywhere in the epoch continues bit-exactly."""

from __future__ import annotations

import pytest
import torch

import tinyfast.loaders as L
from test_loaders import make, packed, run_epoch  # noqa: F401  (the shared packed-data fixture)
from tinyfast.loaders.base import derive_seed
from tinyfast.loaders.sets import set_seed

LOADERS = ["gpu", "torch-npy", "torch", "dali", "ffcv"]
SETS = ("hflip-crop56", "skoltech2")


def test_set_seeds():
    assert set_seed(7, 0) == 7 and set_seed(7, 1) == derive_seed(7, -1) != set_seed(7, 2)


@pytest.mark.parametrize("name", LOADERS)
def test_two_sets_are_two_whole_passes_per_epoch(name, packed):
    both = make(name, packed, "train", 8, train=True, policy=SETS, seed=3)
    alone = [make(name, packed, "train", 8, train=True, policy=p, seed=set_seed(3, i)) for i, p in enumerate(SETS)]
    assert len(both) == sum(len(a) for a in alone) == 16
    assert both.num_samples == 2 * alone[0].num_samples
    got = run_epoch(both, epoch=1)
    want = run_epoch(alone[0], epoch=1) + run_epoch(alone[1], epoch=1)
    assert len(got) == len(want)
    for (xg, yg), (xw, yw) in zip(got, want):
        assert torch.equal(xg, xw) and torch.equal(yg, yw)
    labels = torch.cat([y for _, y in got])
    assert torch.equal(torch.bincount(labels), 2 * torch.bincount(torch.cat([y for _, y in want[:8]])))


@pytest.mark.parametrize("name", ["gpu", "torch-npy"])
@pytest.mark.parametrize("stop", [3, 8, 11])
def test_resume_in_either_set_continues_exactly(name, packed, stop):
    kw = dict(train=True, policy=SETS, seed=5)
    ld = make(name, packed, "train", 8, **kw)
    full = run_epoch(ld, epoch=2)
    ld.set_epoch(2)
    it = iter(ld)
    for _ in range(stop):
        next(it)
    state = ld.state_dict()
    assert (state["epoch"], state["batch"], state["sets"]) == (2, stop, 2)
    del it
    fresh = make(name, packed, "train", 8, **kw)
    fresh.load_state_dict(state)
    fresh.set_epoch(2)
    rest = [(x.clone(), y.clone()) for x, y in fresh]
    assert len(rest) == 16 - stop
    for (xr, yr), (xa, ya) in zip(rest, full[stop:]):
        assert torch.equal(xr, xa) and torch.equal(yr, ya)
    assert fresh.state_dict()["batch"] == 0  # a finished epoch: the next pass is whole
    one = make(name, packed, "train", 8, train=True, policy="skoltech2", seed=5)
    with pytest.raises(ValueError, match="sets"):
        one.load_state_dict(state)


def test_one_set_is_the_plain_loader(packed):
    assert not hasattr(make("gpu", packed, "train", 8, train=True, policy=("standard",)), "loaders")
    ev = make("gpu", packed, "val", 8, policy=SETS)  # evaluation: no augmentation, one pass
    assert len(ev) == 2


def test_aug_flag_takes_sets_and_names_a_bad_one(capsys):
    from tinyfast.train import main
    with pytest.raises(SystemExit) as e:
        main(["--aug", "hflip-crop56+nosuch", "--print-config", "--device", "cpu"])
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("python -m tinyfast.train: error: argument --aug") and "'nosuch'" in last
