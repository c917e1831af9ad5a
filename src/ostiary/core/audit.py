"""Audit events: who did what, and how it ended; the Protocols that record them (a sink that never blocks a
request, and the store that keeps them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["AuditEvent", "AuditEventsRejected", "AuditRepository", "AuditSink"]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Who did what, and how it ended. Never a token or secret value: identifiers (jti, client_id) only."""

    type: str
    outcome: Literal["success", "failure"]
    at: float
    client_id: str | None = None
    subject: str | None = None
    grant_type: str | None = None
    jti: str | None = None
    ip: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type, "outcome": self.outcome, "at": self.at, "client_id": self.client_id,
            "subject": self.subject, "grant_type": self.grant_type, "jti": self.jti, "ip": self.ip,
            "detail": dict(self.detail),
        }


class AuditEventsRejected(Exception):
    """The store refuses these events as they are (a value it cannot hold): retrying them cannot succeed,
    unlike a lost connection. ``record_events`` writes all of a batch or none of it."""


class AuditRepository(Protocol):
    async def record_events(self, events: Sequence[AuditEvent]) -> None:
        """Write every event or none; raise ``AuditEventsRejected`` when the events themselves are refused."""
        ...

    async def list_events(self, limit: int = 100, type_prefix: str | None = None) -> list[AuditEvent]: ...

    async def purge_events(self, before: float, limit: int) -> int:
        """Delete at most ``limit`` of the oldest events recorded before ``before``; return how many went.
        Bounded, so that a retention purge over a large table never holds one long transaction."""
        ...


class AuditSink(Protocol):
    def emit(self, event: AuditEvent) -> None:
        """Record an event without blocking the request."""
        ...
