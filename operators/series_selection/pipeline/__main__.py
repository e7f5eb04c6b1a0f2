import sys

from series_selection.pipeline.cli import main

sys.exit(main())
