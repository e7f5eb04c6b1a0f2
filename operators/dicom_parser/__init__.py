"""dicom-parser: a folder of DICOM files -> hierarchy, DICOM JSON metadata and volumes."""

from pydicom import config

# Hospital data is full of values a little outside their VR's rules (long UIDs, text in IS).
# The parser checks the values it uses where it uses them; pydicom's own check of every value
# read only costs time and repeats the same warning.
config.settings.reading_validation_mode = config.IGNORE
