"""``python -m barista``: the same as the ``barista`` console script."""

import sys

from .cli import main

sys.exit(main())
