"""Exit codes are decided at the command line, one for every kind of user error."""

from __future__ import annotations

import inspect

import pytest

from series_selection.common import errors
from series_selection.common.cli import exit_code

USER_ERRORS = [
    kind
    for _, kind in inspect.getmembers(errors, inspect.isclass)
    if issubclass(kind, errors.PipelineError) and kind not in (errors.PipelineError,)
]


@pytest.mark.parametrize("kind", USER_ERRORS, ids=lambda kind: kind.__name__)
def test_every_user_error_has_a_documented_exit_code(kind: type[errors.PipelineError]) -> None:
    error = errors.OperatorError("parser", 3) if kind is errors.OperatorError else kind("x")
    assert exit_code(error) in {2, 3, 4, 5}


def test_domain_errors_are_value_errors_without_exit_codes() -> None:
    for kind in (errors.ConversionError, errors.GeometryError, errors.DicomReadError):
        assert issubclass(kind, ValueError)
        assert not issubclass(kind, errors.PipelineError)
        assert not hasattr(kind("x"), "exit_code")
