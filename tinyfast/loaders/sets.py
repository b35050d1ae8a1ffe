"""Several augmentation sets in one epoch: one whole pass of the split per set, in order.

A report that trains "on both augmentation sets" (Mkrtchyan: "a training dataset of 200,000
observations", each of the 100,000 images once per set per epoch) has epochs twice as long as one
set's. :func:`tinyfast.loaders.build` given several policies returns a :class:`SetsLoader`: one
loader of the registered kind per set, chained. It keeps the loader contract:

* ``len()`` and ``num_samples`` are the sums over the sets; an epoch yields set 0's pass, then
  set 1's, ... Pass ``i`` is exactly what a loader of set ``i`` alone yields with seed
  :func:`set_seed` ``(seed, i)`` (set 0 keeps the run's seed), so every set has its own shuffle
  and its own augmentation draws, and one set alone is the plain loader.
* ``state_dict()`` is what comes next, as for every loader: the epoch and the batch of it,
  counted over the whole epoch (``sets`` says how many); ``load_state_dict()`` continues in the
  set that batch belongs to.
* ``set_epoch``, ``set_out_size``, ``close`` go to every set; other attributes (``num_classes``,
  ``classes``, ``mean``, ``height``, ``can_resize`` ...) are set 0's.

Each set holds its own copy of what its loader keeps (the resident split of ``gpu``, the worker
processes of ``torch``): the price of reusing every loader unchanged.
"""

from __future__ import annotations

from typing import Any, Iterator

from .base import derive_seed

__all__ = ["SetsLoader", "set_seed", "split_policies"]


def set_seed(seed: int, i: int) -> int:
    """The loader seed of augmentation set ``i``: ``seed`` itself for set 0."""
    return int(seed) if i == 0 else derive_seed(seed, -i)


def split_policies(policy) -> list:
    """``"a+b"`` or ``("a", "b")`` -> ``["a", "b"]``; a single policy (or ``None``) -> ``[policy]``."""
    if isinstance(policy, str):
        return policy.split("+")
    if isinstance(policy, (list, tuple)):
        return list(policy) or [None]
    return [policy]


class SetsLoader:
    """One epoch = a pass of ``loaders[0]``, then of ``loaders[1]``, ... (see the module docstring)."""

    def __init__(self, loaders: list):
        self.loaders = list(loaders)
        self._pass = 0                              # the set the cursor is in
        self._resume: tuple[int, int] | None = None  # (epoch, set) of a pending resume

    def __getattr__(self, name: str) -> Any:
        if name == "loaders":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.loaders[0], name)

    @property
    def num_samples(self) -> int:
        return sum(ld.num_samples for ld in self.loaders)

    def __len__(self) -> int:
        return sum(len(ld) for ld in self.loaders)

    def _offset(self, i: int) -> int:
        return sum(len(ld) for ld in self.loaders[:i])

    def set_epoch(self, epoch: int) -> None:
        if self._resume is not None and self._resume[0] != int(epoch):
            self._resume = None
        for ld in self.loaders:
            ld.set_epoch(epoch)
        if self._resume is None:
            self._pass = 0

    def set_out_size(self, size) -> None:
        for ld in self.loaders:
            ld.set_out_size(size)

    def state_dict(self) -> dict[str, Any]:
        inner = self.loaders[self._pass].state_dict()
        return {**inner, "seed": self.loaders[0].seed, "sets": len(self.loaders),
                "batch": self._offset(self._pass) + inner["batch"]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("sets", 1) != len(self.loaders):
            raise ValueError(f"cannot resume: state has sets={state.get('sets', 1)}, this loader "
                             f"sets={len(self.loaders)}")
        if "seed" in state and state["seed"] != self.loaders[0].seed:
            raise ValueError(f"cannot resume: state has seed={state['seed']!r}, this loader seed={self.loaders[0].seed!r}")
        batch, i = int(state["batch"]), 0
        while i < len(self.loaders) - 1 and batch >= self._offset(i + 1):
            i += 1
        inner = {k: v for k, v in state.items() if k != "sets"}
        self.loaders[i].load_state_dict({**inner, "seed": self.loaders[i].seed, "batch": batch - self._offset(i)})
        self._pass = i
        self._resume = (int(state["epoch"]), i)

    def __iter__(self) -> Iterator:
        start = 0
        if self._resume is not None and self._resume[0] == self.loaders[0].epoch:
            start = self._resume[1]
        self._resume = None
        self._pass = start
        its = iter(self.loaders[start])  # the cursor moves now, as on every loader
        return self._run(start, its)

    def _run(self, start: int, first: Iterator) -> Iterator:
        epoch = self.loaders[0].epoch
        for i in range(start, len(self.loaders)):
            self._pass = i
            yield from (first if i == start else iter(self.loaders[i]))
        if self._resume is None and self.loaders[0].epoch == epoch:
            self._pass = 0

    def close(self) -> None:
        for ld in self.loaders:
            ld.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SetsLoader({', '.join(map(repr, self.loaders))})"
