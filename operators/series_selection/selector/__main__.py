"""``python -m series_selection.selector``."""

import sys

from series_selection.selector.cli import main

sys.exit(main())
