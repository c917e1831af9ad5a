"""Advice and audit tools: check any OAuth deployment, Ostiary or not, for the ten classic production mistakes.

It talks HTTP to the deployment as an outsider would and imports nothing of the server.
"""

from .advice import CLIENT_KINDS, QUICK_REFERENCE, Recommendation, default_user, recommend
from .findings import CHECKS, MISTAKES, SEVERITIES, Check, Finding, Report, Severity
from .report import to_sarif, to_table

__all__ = [
    "CHECKS",
    "CLIENT_KINDS",
    "MISTAKES",
    "QUICK_REFERENCE",
    "SEVERITIES",
    "Check",
    "Finding",
    "Recommendation",
    "Report",
    "Severity",
    "default_user",
    "recommend",
    "to_sarif",
    "to_table",
]
