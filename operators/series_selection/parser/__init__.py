"""dicom-parser: a folder of DICOM files -> hierarchy, DICOM JSON metadata and volumes."""

from series_selection.parser.run import ParseSummary, parse_folder
from series_selection.parser.writers import FORMATS

__all__ = ["FORMATS", "ParseSummary", "parse_folder"]
