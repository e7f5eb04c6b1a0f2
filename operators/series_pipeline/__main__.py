import sys

from series_pipeline.cli import main

sys.exit(main())
