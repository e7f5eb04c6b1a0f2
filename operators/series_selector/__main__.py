"""``python -m series_selector``."""

import sys

from series_selector.cli import main

sys.exit(main())
