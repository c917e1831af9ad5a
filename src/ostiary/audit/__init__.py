"""Advice and audit tools: check any OAuth deployment, Ostiary or not, for the ten classic production mistakes.

It talks HTTP to the deployment as an outsider would and imports nothing of the server.
"""

from .advice import CLIENT_KINDS, QUICK_REFERENCE, Recommendation, default_user, recommend
from .api_probe import ApiAudit, audit_api
from .bundle_scan import scan_bundle
from .findings import CHECKS, MISTAKES, SEVERITIES, Check, Finding, Report, Severity
from .issuer import IssuerAudit, audit_issuer
from .report import to_sarif, to_table

__all__ = [
    "CHECKS",
    "CLIENT_KINDS",
    "MISTAKES",
    "QUICK_REFERENCE",
    "SEVERITIES",
    "ApiAudit",
    "Check",
    "Finding",
    "IssuerAudit",
    "Recommendation",
    "Report",
    "Severity",
    "audit_api",
    "audit_issuer",
    "default_user",
    "recommend",
    "scan_bundle",
    "to_sarif",
    "to_table",
]
