"""``python -m tinyfast.loaders --bench``: loader images/sec (see :func:`tinyfast.loaders.main`)."""
import sys

from tinyfast.loaders import main

if __name__ == "__main__":
    sys.exit(main())
