"""The ``per_class`` subset of a loader: the first N samples of each class, in packed order."""
from __future__ import annotations

import torch


def first_per_class(labels, n: int, where) -> torch.Tensor:
    """The packed rows of the first ``n`` samples of each class (all of a smaller class), in packed
    order: the ``per_class`` subset of a loader (``where`` names the split in errors)."""
    import numpy as np

    if labels is None:
        raise ValueError(f"{where}: per_class needs a labelled split")
    if int(n) < 1:
        raise ValueError(f"per_class must be >= 1, got {n}")
    labels = np.asarray(labels)
    rows = np.concatenate([np.flatnonzero(labels == c)[:int(n)] for c in np.unique(labels)])
    return torch.from_numpy(np.sort(rows).astype(np.int64))
