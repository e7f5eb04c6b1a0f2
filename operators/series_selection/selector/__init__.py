"""series-selector: choose the image series an AI model needs, by rules users can read and debug."""

from series_selection.selector.inputs import read_parser_output
from series_selection.selector.rules import Rules, load_rules, parse_rules
from series_selection.selector.selection import Selected, check_required, select

__all__ = [
    "Rules",
    "Selected",
    "check_required",
    "load_rules",
    "parse_rules",
    "read_parser_output",
    "select",
]
