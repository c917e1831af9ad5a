"""Everything a server process holds: settings, store, key ring, limiter, engine. Built at start."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Sequence
from typing import Any

import orjson

from .._clock import Clock, SystemClock
from ..admin.registration import RegistrationPolicy, RegistrationService
from ..admin.service import AdminService
from ..config import Settings
from ..core import keys as core_keys
from ..core.context import EngineContext
from ..core.dpop import DPoPReplayCache, DPoPVerifier
from ..core.endpoints.introspection import IntrospectionEndpoint, RevocationEndpoint
from ..core.endpoints.metadata import server_metadata
from ..core.endpoints.par import PushedAuthorizationEndpoint
from ..core.endpoints.token import TokenEndpoint
from ..core.errors import StoreUnavailable
from ..core.grants import default_grants
from ..core.keys import KeyRing
from ..core.mtls import TrustAnchors, load_trust_anchors
from ..core.ratelimit import Bucket, Lockout, RateLimiter, Refusal
from ..core.sealing import sealing_key
from ..store.cache import CachedStore
from ..store.memory_dpop import MemoryDPoPReplayCache
from ..store.redis.dpop import RedisDPoPReplayCache
from ..store.redis.guard import RedisGuard
from ..store.redis.ratelimit import RedisLimiter
from ..store.sql import SqlStore, check_schema
from . import metrics
from .audit import BatchingAuditSink
from .client_metadata import HttpClientMetadata
from .device_poll import device_endpoints, make_poll_tracker
from .federation_keys import HttpExternalKeys
from .jwks_fetch import HttpJwksFetcher
from .logs import LineBuffer
from .pages import Pages
from .ratelimit import make_limiter
from .safe_fetch import SafeFetcher

__all__ = ["Runtime", "StartupError"]

log = logging.getLogger("ostiary.server")


class StartupError(Exception):
    """The server cannot start; the message says what to run or set."""


#: Expired sessions, codes and token families are kept this long before they are deleted, so a replayed code
#: or refresh token is still recognised (and its family revoked) for a day after it expired.
PURGE_GRACE = 86_400.0
AUDIT_PURGE_BATCH = 10_000  # rows a retention batch deletes
AUDIT_PURGE_BATCHES = 20  # batches per maintenance minute: 200,000 rows


def _trust_anchors(path: str | None) -> TrustAnchors:
    """``mtls.ca_file``: the CAs of ``tls_client_auth`` (RFC 8705 §2.1); a file that is not one stops the start."""
    if path is None:
        return TrustAnchors()
    try:
        with open(path, "rb") as fh:
            return load_trust_anchors(fh.read())
    except (OSError, ValueError) as exc:
        raise StartupError(f"mtls.ca_file {path}: not a readable PEM certificate bundle ({exc})") from exc


class Runtime:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.policy = settings.policy()
        self.clock: Clock = clock or SystemClock()
        self.kek, self.secret_hash_key, self.admin_hash_key = settings.master_keys()
        #: the database itself (``SqlStore``): for what must see every write at once (a revoked admin client,
        #: key rotation, readiness, the purges, the audit sink)
        self.db = SqlStore.from_url(settings.database_url, timeout=settings.database_timeout,
                                    pool_size=settings.database_pool_size,
                                    max_overflow=settings.database_max_overflow)
        #: the database behind this process's short cache of clients: what the engine and the routes use
        self.store = CachedStore(self.db, self.clock, settings.clients.cache_ttl)
        self.access_log = LineBuffer(logging.getLogger("ostiary.access"))
        self.audit = BatchingAuditSink(self.db, durability=settings.audit.durability,
                                       access_log=self.access_log)
        # one Redis connection pool and one circuit breaker per process, shared by the limiter and the poll
        # tracker; each falls back to process memory while Redis is unavailable
        self.redis = (RedisGuard(settings.redis_url, timeout=settings.redis_timeout,
                                 retry_interval=settings.redis_retry_interval, on_fallback=metrics.redis_fallback)
                      if settings.redis_url else None)
        self.limiter: RateLimiter = make_limiter(self.redis, settings.redis_prefix)
        # one bounded fetcher for every document fetched from a URL someone else chose (safe_fetch)
        self.fetcher = SafeFetcher.for_issuer(settings.issuer)
        self.jwks_fetcher = HttpJwksFetcher(self.fetcher)
        self.external_keys = HttpExternalKeys(self.fetcher)
        # client ID metadata documents: their own fetcher (5 KiB, 3 s), only while they are enabled
        self.client_metadata = (HttpClientMetadata.for_issuer(settings.issuer)
                                if settings.registration.client_metadata_documents else None)
        self._keyring: KeyRing | None = None
        self._key_fingerprint: tuple[Any, ...] = ()
        anchors = _trust_anchors(settings.mtls.ca_file)
        # RFC 9449 §11.1: proof ids in Redis when configured (every worker and node), else in this process;
        # Redis unavailable: this process's memory (replays are still refused, per process)
        self.dpop_replay: DPoPReplayCache = (
            RedisDPoPReplayCache(self.redis, prefix=settings.redis_prefix + "dpop:") if self.redis is not None
            else MemoryDPoPReplayCache())
        self.dpop = DPoPVerifier(self.dpop_replay, self.clock, sealing_key(self.secret_hash_key, "dpop-nonce"),
                                 algs=self.policy.dpop_algs, iat_window=self.policy.dpop_iat_window,
                                 nonce_lifetime=self.policy.dpop_nonce_lifetime)
        self.ctx = EngineContext(policy=self.policy, store=self.store, keyring=self.keyring,
                                 clock=self.clock, audit=self.audit, secret_hash_key=self.secret_hash_key,
                                 jwks_fetcher=self.jwks_fetcher, external_keys=self.external_keys,
                                 poll_tracker=make_poll_tracker(self.redis, settings.redis_prefix),
                                 trust_anchors=anchors, dpop=self.dpop,
                                 client_metadata=self.client_metadata)
        self.grants = default_grants()
        self.token = TokenEndpoint(self.ctx, self.grants)
        self.par = PushedAuthorizationEndpoint(self.ctx)
        self.introspection = IntrospectionEndpoint(self.ctx)
        self.revocation = RevocationEndpoint(self.ctx)
        self.flows = Pages(settings, self.ctx, self.limiter)
        # RFC 8705: certificates reach us from our own TLS listener or from a trusted proxy's header
        mtls = bool(settings.server.tls_client_ca_file
                    or (settings.mtls.proxy_cert_header and settings.server.trusted_proxies))
        self.metadata = server_metadata(self.policy, self.grants, mtls=mtls, tls_client_auth=bool(anchors))
        mtls_methods = frozenset(m for m in ("tls_client_auth", "self_signed_tls_client_auth")
                                 if m in self.metadata["token_endpoint_auth_methods_supported"])
        self.registration = RegistrationService(
            self.store, AdminService(self.store, self.policy, self.clock, self.secret_hash_key, self.kek),
            RegistrationPolicy(settings.registration.policy, frozenset(settings.registration.scopes),
                               tuple(settings.registration.audiences), mtls_methods=mtls_methods),
            self.clock, self.audit, self.secret_hash_key)
        self.device = device_endpoints(self.ctx, settings)
        self.metadata_bytes = orjson.dumps(self.metadata)
        self._tasks: list[asyncio.Task[None]] = []

    def keyring(self) -> KeyRing:
        if self._keyring is None:
            raise core_keys.KeyRingError("keys not loaded")
        return self._keyring

    @property
    def ready(self) -> bool:
        return self._keyring is not None and self._keyring.algs >= set(self.policy.signing_algs)

    async def admit(self, steps: Sequence[Bucket | Lockout],
                    dpop: str | None = None) -> tuple[Refusal | None, tuple[str, bool] | None]:
        """The rate limits (one Redis round trip), and with Redis the DPoP proof's id recorded in that same round
        trip (RFC 9449 §11.1; ``DPoPVerifier.replay_key``): the second member is ``(key, first use)`` for
        ``DPoPVerifier.verify``'s ``first_use``, or None when it was not recorded here (``verify`` checks it)."""
        replay, limiter = self.dpop_replay, self.limiter
        if dpop and isinstance(replay, RedisDPoPReplayCache) and isinstance(limiter, RedisLimiter):
            key = self.dpop.replay_key(dpop)
            if key is not None:
                refused, first = await replay.admit_and_record(limiter, steps, key,
                                                               self.clock.now() + self.dpop.replay_window)
                return refused, (key, first) if first is not None else None
        return await limiter.admit(steps), None

    async def start(self) -> None:
        status = await check_schema(self.settings.database_url)
        if status.state != "current":
            raise StartupError(status.message)
        await core_keys.ensure_signing_key(self.db, self.policy, self.kek, self.clock)
        await self.reload_keys(force=True)
        self.audit.start()
        self._tasks.append(asyncio.create_task(self._maintenance(), name="ostiary-maintenance"))
        # Everything loaded so far lives as long as the process: move it out of the cyclic collector's
        # reach, so full collections under load walk only per-request garbage (shorter pauses, lower p99).
        gc.collect()
        gc.freeze()

    async def reload_keys(self, *, force: bool = False) -> None:
        keys = await self.db.list_keys()
        fingerprint = tuple((k.kid, k.activates_at, k.retires_at) for k in keys)
        now = self.clock.now()
        stale = self._keyring is None or now >= self._keyring.stale_at
        if force or stale or fingerprint != self._key_fingerprint:
            self._keyring = KeyRing(keys, self.kek, now, self.policy.max_token_lifetime,
                                    default_alg=self.policy.access_token_alg)
            self._key_fingerprint = fingerprint
            log.info("signing keys loaded", extra={
                "signers": {alg: k.kid for alg, k in self._keyring.signers.items()},
                "published": len(self._keyring.jwks["keys"])})

    async def _maintenance(self) -> None:
        interval = self.settings.keys.refresh_interval
        ticks = 0
        while True:
            await asyncio.sleep(interval)
            ticks += 1
            try:
                if ticks % max(1, int(60 / interval)) == 0:
                    if await core_keys.maybe_auto_rotate(self.db, self.policy, self.kek, self.clock):
                        log.info("signing key rotated on schedule")
                    await core_keys.purge_expired_keys(self.db, self.policy, self.clock)
                    await self.db.purge_expired(self.clock.now())
                    await self.db.purge_device_authorizations(self.clock.now())
                    await self.db.purge_pushed_requests(self.clock.now())
                    await self.db.purge_user_flows(self.clock.now(), PURGE_GRACE)
                    await self._purge_audit()
                    await self._purge_idle_clients()
                await self.reload_keys()
            except StoreUnavailable:
                pass  # the store logged the outage once; try again next tick
            except Exception:
                log.exception("maintenance failed; retrying")

    async def _purge_audit(self) -> None:
        """Retention: delete events older than ``audit.retention``, at most AUDIT_PURGE_BATCHES batches a
        minute, so a backlog (a table that grew for years) is worked off without long locks."""
        retention = self.settings.audit.retention
        if retention <= 0:
            return
        before = self.clock.now() - retention
        for _ in range(AUDIT_PURGE_BATCHES):
            if await self.db.purge_events(before, AUDIT_PURGE_BATCH) < AUDIT_PURGE_BATCH:
                return

    async def _purge_idle_clients(self) -> None:
        """Dynamic clients unused for ``registration.idle_expiry`` go (and spent initial access tokens)."""
        idle = self.settings.registration.idle_expiry
        if idle is None:
            return
        now = self.clock.now()
        gone = await self.db.purge_idle_dynamic_clients(now - idle, now)
        if gone:
            log.info("idle dynamic clients deleted", extra={"count": gone})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.audit.stop()
        await self.limiter.close()
        await self.device.close()
        self.flows.close()
        await self.external_keys.close()
        await self.fetcher.close()
        if self.client_metadata is not None:
            await self.client_metadata.close()
        await self.db.close()
