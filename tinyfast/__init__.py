"""tinyfast: fast, honest Tiny ImageNet training.

Packed data (``python -m tinyfast.pack``), one fused C++/CUDA augmentation op
(``tinyfast.ops.augment``), loaders with one contract (``tinyfast.loaders.build``), a model zoo
(``tinyfast.models``) and a trainer (``python -m tinyfast.train``). Nothing heavy runs at import.
"""

__version__ = "0.1.0"
