"""A static HTML page of the pipeline's data (`jalign report`, the `report` stage).

Pure functions turn the stages' records into sections of cards (`funnel`, `pairs`, `games`,
`ifeval_results`), and `render` writes them into the page template (`templates/`) with every text
escaped: model outputs are untrusted, so an answer holding `<script>` shows as text and never runs.
The page needs no server and no network (a Content-Security-Policy forbids any fetch); its filters are
one hand-written script, allowed by its hash.
"""

from jalign.report.page import ReportData, build_page

__all__ = ["ReportData", "build_page"]
