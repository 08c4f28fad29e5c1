"""Reports from run directories: ``report.html`` (:func:`build_report`) and the cross-run comparison table."""

from moalign.report.comparison import compare_rows, html_table, markdown_table
from moalign.report.page import REPORT_FILE, SECTIONS, build_report, find_evaluations, render_report

__all__ = [
    "REPORT_FILE",
    "SECTIONS",
    "build_report",
    "compare_rows",
    "find_evaluations",
    "html_table",
    "markdown_table",
    "render_report",
]
