"""Shared fixtures: the real scanner data beside the repository, when it is there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real scanner DICOM with reference conversions), or a skip."""
    if not (SHARED_DATA / "cases.json").is_file():
        pytest.skip(f"real scanner data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_cases(shared_data: Path) -> dict[str, dict[str, Any]]:
    """The cases of ``cases.json`` keyed by their input path."""
    cases = json.loads((shared_data / "cases.json").read_text())["cases"]
    return {case["input"]: case for case in cases}
