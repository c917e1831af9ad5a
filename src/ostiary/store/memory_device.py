"""Device authorizations (RFC 8628) for the in-memory store, and the per-process poll tracker."""

from __future__ import annotations

import dataclasses

from ..core.device import DeviceAuthorization, PollResult, poll_decision, user_code_locator

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
    their device authorization expires."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._entries: dict[str, tuple[float, int, float]] = {}  # hash -> (last poll, interval, expires_at)
        self._max = max_entries

    async def poll(self, device_code_hash: str, interval: int, now: float, expires_at: float) -> PollResult:
        last, current, _ = self._entries.get(device_code_hash, (None, interval, expires_at))
        result, current = poll_decision(last, max(current, interval), now)
        if len(self._entries) >= self._max and device_code_hash not in self._entries:
            self._sweep(now)
        self._entries[device_code_hash] = (now, current, expires_at)
        return result

    async def interval(self, device_code_hash: str, default: int) -> int:
        entry = self._entries.get(device_code_hash)
        return max(default, entry[1]) if entry else default

    async def forget(self, device_code_hash: str) -> None:
        self._entries.pop(device_code_hash, None)

    def _sweep(self, now: float) -> None:
        for h in [h for h, (_, _, exp) in self._entries.items() if exp <= now]:
            del self._entries[h]
        if len(self._entries) >= self._max:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
