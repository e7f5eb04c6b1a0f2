"""series-report: one page that shows which volume was chosen, and what every volume looks like."""

from series_selection.report.facts import gather, read_inputs
from series_selection.report.page import render_page

__all__ = ["gather", "read_inputs", "render_page"]
