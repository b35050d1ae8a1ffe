"""Phases of training with their own batch size and augmentation, over any registered loader.

:func:`tinyfast.loaders.build` given ``phases=[(epochs, batch_size, policy), ...]`` returns a
:class:`PhasedLoader`: epoch ``e`` belongs to the phase its count of epochs falls in (the last
phase goes on past the end), and that epoch is exactly what a plain loader of the phase's batch
size and policy yields for epoch ``e`` (same seed: the shuffle and the augmentation draws are
functions of the seed and the epoch). It keeps the loader contract:

* ``set_epoch(e)`` selects the phase of ``e``: the loader of the phase before it is closed and one
  for the new phase built (the price of reusing every loader unchanged: a ``gpu`` loader copies
  its split to the device again, a ``torch`` loader starts its workers again);
* ``len()`` is the batches of the current epoch, :meth:`PhasedLoader.batches_at` those of any epoch;
* ``state_dict()`` is the current phase's loader's (its epoch says the phase); ``load_state_dict()``
  first selects the phase of the saved epoch, so a resume anywhere continues exactly;
* ``set_out_size`` is kept across phases; other attributes are the current phase's loader's.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

__all__ = ["PhasedLoader"]


class PhasedLoader:
    """Epochs in phases of their own batch size and policy (see the module docstring).

    Args:
        make: ``make(batch_size, policy)`` builds the loader of a phase.
        phases: ``(epochs, batch_size, policy)`` per phase, in order.
    """

    def __init__(self, make: Callable[[int, Any], Any], phases: Sequence[tuple[int, int, Any]]):
        if not phases or any(int(n) < 1 or int(b) < 1 for n, b, _ in phases):
            raise ValueError(f"phases: need (epochs >= 1, batch_size >= 1, policy) each, got {list(phases)}")
        self.make = make
        self.phases = [(int(n), int(b), p) for n, b, p in phases]
        self.out_size = None
        self.phase: int | None = None
        self.loader = None
        self._switch(0)
        unit = self.loader.loaders[0] if hasattr(self.loader, "loaders") else self.loader  # one set's
        self._samples, self._drop_last = int(unit.num_samples), bool(unit.drop_last)

    def __getattr__(self, name: str) -> Any:
        if name in ("loader", "phases"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def phase_of(self, epoch: int) -> int:
        """The phase epoch ``epoch`` belongs to."""
        end = 0
        for i, (n, _, _) in enumerate(self.phases):
            end += n
            if epoch < end:
                return i
        return len(self.phases) - 1

    def _switch(self, i: int) -> None:
        if i == self.phase:
            return
        if self.loader is not None:
            self.loader.close()
            self.loader = None
        _, batch, policy = self.phases[i]
        self.loader = self.make(batch, policy)
        if self.out_size is not None:
            self.loader.set_out_size(self.out_size)
        self.phase = i

    def batches_at(self, epoch: int) -> int:
        """Batches of epoch ``epoch``: its phase's batches (as :class:`~tinyfast.loaders.base.ShardedOrder`
        counts them) times its number of augmentation sets."""
        from .sets import split_policies
        _, batch, policy = self.phases[self.phase_of(epoch)]
        from .base import batch_count
        return len(split_policies(policy)) * batch_count(self._samples, batch, self._drop_last)

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self._switch(self.phase_of(int(epoch)))
        self.loader.set_epoch(epoch)

    def set_out_size(self, size) -> None:
        self.loader.set_out_size(size)
        self.out_size = size

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._switch(self.phase_of(int(state["epoch"])))
        self.loader.load_state_dict(state)

    def __iter__(self) -> Iterator:
        return iter(self.loader)

    def close(self) -> None:
        if self.loader is not None:
            self.loader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PhasedLoader(phase {self.phase + 1} of {len(self.phases)}: {self.loader!r})"
