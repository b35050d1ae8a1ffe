"""``python -m tinyfast.pack``."""

import sys

from tinyfast.pack.cli import main

sys.exit(main())
