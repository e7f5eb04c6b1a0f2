"""Synthetic DICOM studies with known geometry, and the committed sample studies."""
