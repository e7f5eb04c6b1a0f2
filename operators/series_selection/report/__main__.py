"""``python -m series_selection.report``: the same as the ``series-report`` command."""

import sys

from series_selection.report.cli import main

sys.exit(main())
