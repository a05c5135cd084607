"""Reports: plots (matplotlib, Agg) and a self-contained HTML page that ties them together."""

from pixsort.report.html import HtmlReport

__all__ = ["HtmlReport"]
