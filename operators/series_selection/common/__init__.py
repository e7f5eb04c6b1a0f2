"""Pieces shared by every operator: errors, models, settings, logging, JSON files and output
folders."""

from series_selection.common.errors import (
    ConversionError,
    DicomReadError,
    GeometryError,
    InputError,
    NestingError,
    OperatorError,
    OutputError,
    PipelineError,
    RulesError,
    SelectionError,
)
from series_selection.common.folders import OutputFolder, check_apart, reading
from series_selection.common.jsonio import read_json, write_json

__all__ = [
    "ConversionError",
    "DicomReadError",
    "GeometryError",
    "InputError",
    "NestingError",
    "OperatorError",
    "OutputError",
    "OutputFolder",
    "PipelineError",
    "RulesError",
    "SelectionError",
    "check_apart",
    "read_json",
    "reading",
    "write_json",
]
