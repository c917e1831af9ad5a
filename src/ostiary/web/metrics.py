"""Prometheus metrics. With several workers, ``ostiary serve`` sets PROMETHEUS_MULTIPROC_DIR so /metrics
aggregates every process (the directory: ``web.metrics_dir``)."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = ["AUDIT_DROPPED", "AUTH_FAILURES", "CONTENT_TYPE_LATEST", "DEVICE_GUESSING", "PASSWORD_HASH_BUSY",
           "RATE_LIMITED", "REDIS_FALLBACK", "REFRESH_TOKEN_REUSE", "REQUESTS", "TOKENS", "audit_dropped", "latency",
           "redis_fallback", "render", "tokens_issued"]

REQUESTS = Counter("ostiary_http_requests_total", "HTTP requests", ["route", "status"])
LATENCY = Histogram("ostiary_http_request_seconds", "Request latency", ["route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5))
TOKENS = Counter("ostiary_tokens_issued_total", "Tokens issued", ["grant_type"])
AUTH_FAILURES = Counter("ostiary_client_auth_failures_total", "Failed client authentications")
RATE_LIMITED = Counter("ostiary_rate_limited_total", "Requests refused by a rate limit", ["scope"])
REDIS_FALLBACK = Counter("ostiary_redis_fallback_total",
                         "Operations answered by the in-process fallback because Redis was unavailable", ["component"])
PASSWORD_HASH_BUSY = Counter("ostiary_password_hash_busy_total",
                             "Sign-ins refused (429) because every password-hashing thread was busy")
DEVICE_GUESSING = Counter("ostiary_device_code_guessing_total",
                          "Wrong user codes beyond device.attempts_global in its window (an alert, never a refusal)")
#: every reuse of a spent refresh token; ``revoked_family`` = this one revoked the family (one audit event each)
REFRESH_TOKEN_REUSE = Counter("ostiary_refresh_token_reuse_total", "Reuses of a spent refresh token",
                              ["revoked_family"])
AUDIT_DROPPED = Counter("ostiary_audit_events_dropped_total", "Audit events never written to the database",
                        ["reason"])


def audit_dropped(reason: str, count: int = 1) -> None:
    """``rejected``: the database refused the event (it is logged); ``queue_full``: 100,000 events waiting."""
    AUDIT_DROPPED.labels(reason).inc(count)


def redis_fallback(component: str) -> None:
    """An operation of ``component`` (``ratelimit``, ``device_poll``, ``readyz``) answered without Redis."""
    REDIS_FALLBACK.labels(component).inc()


_token_counters: dict[str, Any] = {}


def tokens_issued(grant_type: str) -> None:
    counter = _token_counters.get(grant_type)
    if counter is None:
        counter = _token_counters[grant_type] = TOKENS.labels(grant_type)
    counter.inc()


def latency(route: str) -> Histogram:
    return LATENCY.labels(route)


def start_listener(host: str, port: int) -> None:
    """Serve ``/metrics`` on its own address (a daemon thread of the calling process), so the public port
    need not expose it. Run by ``ostiary serve`` in the process that starts the workers; with
    PROMETHEUS_MULTIPROC_DIR set it reports every worker."""
    from prometheus_client import start_http_server

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        start_http_server(port, host, registry=registry)
    else:
        start_http_server(port, host)


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()

