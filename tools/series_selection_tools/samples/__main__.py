"""``python -m series_selection_tools.samples``."""

import sys

from series_selection_tools.samples.cli import main

sys.exit(main())
