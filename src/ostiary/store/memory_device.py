"""Device authorizations (RFC 8628) for the in-memory store, and the per-process poll tracker."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..core.device import PENDING_RECHECK, DeviceAuthorization, PollResult, poll_decision, user_code_locator

__all__ = ["MemoryDeviceMixin", "MemoryPollTracker"]

#: Expired authorizations are kept this long so a late poll still gets ``expired_token``.
EXPIRED_KEEP = 3600


class MemoryDeviceMixin:
    """Mixed into :class:`~ostiary.store.memory.MemoryStore`; implements ``DeviceAuthorizationRepository``."""

    @property
    def _devices(self) -> dict[str, DeviceAuthorization]:
        found: dict[str, DeviceAuthorization] | None = self.__dict__.get("_device_map")
        if found is None:
            found = self.__dict__["_device_map"] = {}
        return found

    async def add_device_authorization(self, auth: DeviceAuthorization) -> None:
        if auth.device_code_hash in self._devices or any(
                d.user_code == auth.user_code for d in self._devices.values()):
            raise ValueError("user code taken")
        self._devices[auth.device_code_hash] = auth

    async def get_device_authorization(self, device_code_hash: str) -> DeviceAuthorization | None:
        return self._devices.get(device_code_hash)

    async def find_device_authorizations(self, locator: str, now: float) -> list[DeviceAuthorization]:
        return [d for d in self._devices.values()
                if d.status == "pending" and d.expires_at > now and user_code_locator(d.user_code) == locator]

    async def record_user_code_failure(self, device_code_hash: str, max_attempts: int, now: float) -> int:
        d = self._devices.get(device_code_hash)
        if d is None:
            return 0
        count = d.failed_attempts + 1
        locked = count >= max_attempts and d.status == "pending"
        self._devices[device_code_hash] = dataclasses.replace(
            d, failed_attempts=count, status="denied" if locked else d.status,
            decided_at=now if locked else d.decided_at)
        return count

    async def decide_device_authorization(self, device_code_hash: str, approve: bool, user_id: str,
                                          session_id: str | None, auth_time: float, amr: tuple[str, ...],
                                          now: float) -> bool:
        d = self._devices.get(device_code_hash)
        if d is None or d.status != "pending" or d.expires_at <= now:
            return False
        self._devices[device_code_hash] = dataclasses.replace(
            d, status="approved" if approve else "denied", user_id=user_id, session_id=session_id,
            auth_time=auth_time, amr=tuple(amr), decided_at=now)
        return True

    async def consume_device_authorization(self, device_code_hash: str, now: float) -> bool:
        d = self._devices.get(device_code_hash)
        if d is None or d.status != "approved":
            return False
        self._devices[device_code_hash] = dataclasses.replace(d, status="consumed")
        return True

    async def purge_device_authorizations(self, now: float) -> int:
        old = [h for h, d in self._devices.items() if d.expires_at + EXPIRED_KEEP <= now]
        for h in old:
            del self._devices[h]
        return len(old)


class MemoryPollTracker:
    """Poll timing in process memory (each worker tracks the devices that poll it). Entries go away when
    their device authorization expires.

    ``answers_pending`` is off in the server: a decision made in another worker (or on another host) would
    go unseen here, so every poll reads the row. Turn it on only where one process sees every decision."""

    def __init__(self, max_entries: int = 200_000, *, answers_pending: bool = False) -> None:
        # hash -> [last poll (None before the first), interval, expires_at, client_id read as pending,
        #          read at, decided]; "decided" survives a later poll(): a poll that read the row before the
        #          decision was stored must not make it look pending again
        self._entries: dict[str, list[Any]] = {}
        self._max = max_entries
        self._answers = answers_pending

    def _entry(self, device_code_hash: str, interval: int, expires_at: float, now: float) -> list[Any]:
        entry = self._entries.get(device_code_hash)
        if entry is None:
            if len(self._entries) >= self._max:
                self._sweep(now)
            entry = self._entries[device_code_hash] = [None, interval, expires_at, "", 0.0, False]
        return entry

    async def poll(self, device_code_hash: str, interval: int, now: float, expires_at: float,
                   client_id: str = "") -> PollResult:
        entry = self._entry(device_code_hash, interval, expires_at, now)
        result, entry[1] = poll_decision(entry[0], max(entry[1], interval), now)
        entry[0], entry[2], entry[3], entry[4] = now, expires_at, client_id, now
        return result

    async def poll_pending(self, device_code_hash: str, client_id: str, now: float) -> PollResult | None:
        entry = self._entries.get(device_code_hash)
        if (not self._answers or entry is None or entry[5] or not entry[3] or entry[3] != client_id
                or now >= entry[2] or now - entry[4] > PENDING_RECHECK):
            return None
        result, entry[1] = poll_decision(entry[0], entry[1], now)
        entry[0] = now
        return result

    async def decided(self, device_code_hash: str, expires_at: float) -> None:
        self._entry(device_code_hash, 0, expires_at, 0.0)[5] = True

    async def interval(self, device_code_hash: str, default: int) -> int:
        entry = self._entries.get(device_code_hash)
        return max(default, entry[1]) if entry else default

    async def forget(self, device_code_hash: str) -> None:
        self._entries.pop(device_code_hash, None)

    def _sweep(self, now: float) -> None:
        for h in [h for h, entry in self._entries.items() if entry[2] <= now]:
            del self._entries[h]
        if len(self._entries) >= self._max:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
