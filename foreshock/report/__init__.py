"""Reports of analysed runs: in the terminal (rich) and as one self-contained HTML file (plotly)."""

from foreshock.report.evidence import format_evidence, format_value, group_events
from foreshock.report.html import render_html, write_html
from foreshock.report.terminal import print_analyses, print_analysis, verdict
from foreshock.report.thin import Envelope, NonFiniteRun, envelope, nonfinite_runs

__all__ = [
    "Envelope",
    "NonFiniteRun",
    "envelope",
    "format_evidence",
    "format_value",
    "group_events",
    "nonfinite_runs",
    "print_analyses",
    "print_analysis",
    "render_html",
    "verdict",
    "write_html",
]
