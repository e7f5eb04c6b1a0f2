import sys

from series_selection.parser.cli import main

sys.exit(main())
