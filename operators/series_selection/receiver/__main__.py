"""``python -m series_selection.receiver``."""

import sys

from series_selection.receiver.cli import main

sys.exit(main())
