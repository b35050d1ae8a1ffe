"""tinyfast: fast, honest Tiny ImageNet training.

Packed data (``python -m tinyfast.pack``), one fused C++/CUDA augmentation op
(``tinyfast.ops.augment``), loaders with one contract (``tinyfast.loaders.build``), a model zoo
(``tinyfast.models``) and a trainer (``python -m tinyfast.train``). Nothing heavy runs at import.
"""

__version__ = "0.1.0"

import sys as _sys

if _sys.argv[:1] == ["-m"]:  # ``python -m tinyfast.<command>`` is importing us: a wrong Python is one line
    from tinyfast.environment import exit_without_torch as _check

    _check(_sys.orig_argv[_sys.orig_argv.index("-m") + 1] if "-m" in _sys.orig_argv else "tinyfast")
