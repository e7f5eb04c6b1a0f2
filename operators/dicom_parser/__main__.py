import sys

from dicom_parser.cli import main

sys.exit(main())
