"""dicom-parser: a folder of DICOM files -> hierarchy, DICOM JSON metadata and volumes."""

from series_selection.common.models import VOLUME_FORMATS as FORMATS
from series_selection.parser.run import ParseSummary, parse_folder

__all__ = ["FORMATS", "ParseSummary", "parse_folder"]
