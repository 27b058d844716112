"""The conformance kit: play one side of the protocol against another team's packager or server, and report."""

from tdm_messaging.conformance.report import Case, Level, Outcome, Report, Result

__all__ = ["Case", "Level", "Outcome", "Report", "Result"]
