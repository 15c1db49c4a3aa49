"""The HTML report (`builder.build_report`) and the terminal summary (`terminal.render_summary`)."""

from galprof.report.builder import ReportStats, build_report

__all__ = ["ReportStats", "build_report"]
