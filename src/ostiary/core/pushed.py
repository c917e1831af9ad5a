"""Pushed authorization requests (RFC 9126): the stored request and its storage Protocol.

A client POSTs its authorization request to ``/par`` and gets back a ``request_uri``
(``urn:ietf:params:oauth:request_uri:<random>``) that lives at most a minute. The random part is stored only as
its keyed hash (``request_id``). The request then moves through three states:

* **pushed** — stored, not yet seen by a browser; it expires ``expires_in`` seconds after the push;
* **claimed** — a browser brought it to ``/authorize`` (once: a second plain ``/authorize`` with it is refused,
  RFC 9126 §4 "one-time use"); from then on only the sign-in and consent forms of that flow continue it,
  for at most :data:`INTERACTION_TTL` seconds (people take longer than a minute to type a password);
* **spent** — the flow ended (a code or an error went back to the client): the row is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "INTERACTION_TTL",
    "MAX_PAR_TTL",
    "REQUEST_URI_PREFIX",
    "PushedRequest",
    "PushedRequestRepository",
]

#: RFC 9126 §2.2: ``urn:ietf:params:oauth:request_uri:`` followed by a reference (here 32 random bytes).
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
#: The longest ``expires_in`` the setting allows (the issue: a request_uri lives at most 60 seconds).
MAX_PAR_TTL = 60
#: How long sign-in and consent may take once a browser has claimed the request (seconds).
INTERACTION_TTL = 600


@dataclass(frozen=True, slots=True)
class PushedRequest:
    """One pushed authorization request. ``params`` are the effective parameters (from the form, or from the
    request object when one was sent), validated at the push."""

    request_id: str = field(repr=False)  # keyed hash of the random part of the request_uri
    client_id: str
    params: tuple[tuple[str, str], ...] = field(repr=False)
    created_at: float
    expires_at: float
    claimed_at: float | None = None
    #: hash of the browser binding of the claim (the sign-in forms must come from the same browser)
    browser_hash: str | None = field(default=None, repr=False)


class PushedRequestRepository(Protocol):
    async def add_pushed_request(self, request: PushedRequest) -> None: ...

    async def get_pushed_request(self, request_id: str) -> PushedRequest | None:
        """The row, whatever its state (the caller checks expiry, client and claim)."""
        ...

    async def claim_pushed_request(self, request_id: str, client_id: str, browser_hash: str | None, now: float,
                                   until: float) -> bool:
        """pushed → claimed: True for exactly one caller, only while unclaimed, unexpired and of ``client_id``
        (``UPDATE … WHERE claimed_at IS NULL AND expires_at > now``); the row then lives until ``until``."""
        ...

    async def update_pushed_params(self, request_id: str, params: tuple[tuple[str, str], ...]) -> None:
        """Replace the parameters of a claimed request (a sign-in that satisfied ``prompt=login``)."""
        ...

    async def spend_pushed_request(self, request_id: str) -> bool:
        """Delete it: True for exactly one caller."""
        ...

    async def purge_pushed_requests(self, now: float) -> int:
        """Delete requests that expired."""
        ...
