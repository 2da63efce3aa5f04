"""Reports of experiment runs: `render` (report.md and figures from a run directory) and
`style` (the one matplotlib look, headless). ``Figure`` and ``Section`` are what an
experiment's report hook returns; importing them does not import matplotlib."""

from __future__ import annotations

from testbed.report.render import Figure, ReportError, Section, render_run

__all__ = ["Figure", "ReportError", "Section", "render_run"]
