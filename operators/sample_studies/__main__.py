"""``python -m sample_studies``."""

import sys

from sample_studies.cli import main

sys.exit(main())
