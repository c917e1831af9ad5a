"""Pushed authorization requests (RFC 9126) for the in-memory store."""

from __future__ import annotations

import dataclasses

from ..core.pushed import PushedRequest

__all__ = ["MemoryPushedMixin"]


class MemoryPushedMixin:
    """Mixed into :class:`~ostiary.store.memory.MemoryStore`; implements ``PushedRequestRepository``."""

    @property
    def _pushed(self) -> dict[str, PushedRequest]:
        found: dict[str, PushedRequest] | None = self.__dict__.get("_pushed_map")
        if found is None:
            found = self.__dict__["_pushed_map"] = {}
        return found

    async def add_pushed_request(self, request: PushedRequest) -> None:
        if request.request_id in self._pushed:
            raise ValueError("request_uri taken")
        self._pushed[request.request_id] = request

    async def get_pushed_request(self, request_id: str) -> PushedRequest | None:
        return self._pushed.get(request_id)

    async def claim_pushed_request(self, request_id: str, client_id: str, browser_hash: str | None, now: float,
                                   until: float) -> bool:
        p = self._pushed.get(request_id)
        if p is None or p.client_id != client_id or p.claimed_at is not None or p.expires_at <= now:
            return False
        self._pushed[request_id] = dataclasses.replace(p, claimed_at=now, expires_at=until,
                                                       browser_hash=browser_hash)
        return True

    async def update_pushed_params(self, request_id: str, params: tuple[tuple[str, str], ...]) -> None:
        p = self._pushed.get(request_id)
        if p is not None:
            self._pushed[request_id] = dataclasses.replace(p, params=tuple(params))

    async def spend_pushed_request(self, request_id: str) -> bool:
        return self._pushed.pop(request_id, None) is not None

    async def purge_pushed_requests(self, now: float) -> int:
        old = [k for k, p in self._pushed.items() if p.expires_at <= now]
        for k in old:
            del self._pushed[k]
        return len(old)
