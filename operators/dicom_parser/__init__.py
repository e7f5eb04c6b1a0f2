"""dicom-parser: a folder of DICOM files -> hierarchy, DICOM JSON metadata and volumes."""
