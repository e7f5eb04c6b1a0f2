"""Tools that check the pipeline, installed apart from it: synthetic DICOM studies with known
geometry (``make-sample-studies``) and the real-data fidelity report (``fidelity-report``)."""

__all__ = ["fidelity", "samples"]
