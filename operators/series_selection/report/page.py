"""The report page: ``report.html`` rendered by Jinja2 with autoescaping, so every DICOM text
shown is escaped; one self-contained page with its pictures beside it, no scripts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

TEMPLATE = "report.html.j2"


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("series_selection.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["dicom_date"] = dicom_date
    environment.filters["dicom_time"] = dicom_time
    return environment


def dicom_date(value: str) -> str:
    """A DICOM DA (``YYYYMMDD``) as ``YYYY-MM-DD``; anything else as it is."""
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value or "—"


def dicom_time(value: str) -> str:
    """A DICOM TM (``HHMMSS.ffffff``) as ``HH:MM:SS``; anything else as it is."""
    digits = value.split(".")[0]
    if len(digits) >= 4 and digits.isdigit():
        parts = [digits[i : i + 2] for i in range(0, len(digits), 2)]
        return ":".join(parts[:3])
    return value


def render_page(report: Mapping[str, Any], sizes: Mapping[str, tuple[int, int]]) -> str:
    """The HTML text of the page for a ``report.json`` document; ``sizes`` gives each picture's
    width and height in pixels."""
    return _environment().get_template(TEMPLATE).render(**report, sizes=sizes)
