"""The report stage: the only code that writes output files, plots and HTML pages.

* :mod:`~.image_clusters` - what an image clustering leaves in a folder;
* :mod:`~.table_clusters` - what a table clustering leaves in a folder;
* :mod:`~.classification` - what a classifier's evaluation leaves in a folder;
* :mod:`~.html` (a small page builder), :mod:`~.figures` (matplotlib, one way to
  save), :mod:`~.files` (one CSV and one JSON writer).

It takes fitted estimators and computed results; it runs no model.
"""

from pixsort.report.html import HtmlReport

__all__ = ["HtmlReport"]
