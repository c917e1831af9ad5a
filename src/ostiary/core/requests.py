"""Frozen request objects built by the web layer, and the parameter rules every endpoint shares."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import InvalidRequest

__all__ = ["MULTI_VALUED", "EndpointRequest", "form_value", "is_audience_uri", "is_scope_token", "scope_set",
           "single_params", "storable_text"]

#: Parameters that may legitimately repeat (RFC 8707 §2 ``resource``, RFC 8693 §2.1 ``audience``).
MULTI_VALUED = frozenset({"resource", "audience"})
MAX_PARAM_LENGTH = 8192
_PARAM_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,40}")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 §3.3: 1*NQCHAR
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^#]+")  # RFC 3986 §4.3 absolute-URI (no fragment)


@dataclass(frozen=True, slots=True)
class EndpointRequest:
    """A POSTed form to the token, introspection, revocation or device endpoint.

    ``params`` keeps every (name, value) pair in order; ``authorization`` and ``dpop`` are the headers
    of the same names (DPoP is carried for sender-constrained tokens, RFC 9449); ``client_cert`` is the DER
    certificate the client presented on the TLS connection, or that a trusted proxy forwarded (RFC 8705).
    """

    endpoint: str
    params: tuple[tuple[str, str], ...] = field(repr=False)
    authorization: str | None = field(default=None, repr=False)
    dpop: str | None = field(default=None, repr=False)
    client_ip: str | None = None
    client_cert: bytes | None = field(default=None, repr=False)
    #: the DPoP replay cache's answer for this request's proof, when the web layer recorded its id together
    #: with the rate limits (``DPoPVerifier.replay_key``, True: first use)
    dpop_first_use: tuple[str, bool] | None = field(default=None, repr=False)

    def single(self) -> dict[str, str]:
        return single_params(self.params)

    def multi(self, name: str) -> list[str]:
        return [v for k, v in self.params if k == name]


def storable_text(value: str) -> bool:
    """Text PostgreSQL and SQLite both store and compare: no NUL (PostgreSQL text refuses it), no lone surrogate
    (not UTF-8; JSON's ``\\ud800`` escape makes one). What a form parameter always is (web/http.py refuses NUL
    and decodes UTF-8); a JSON document's strings need not be."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def single_params(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """RFC 6749 §3.1/§3.2: parameters MUST NOT be included more than once. Empty values count as absent. No NUL
    character in a name or value (a query string may carry ``%00``; no database text column can store it)."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if len(value) > MAX_PARAM_LENGTH:
            raise InvalidRequest(f"parameter {_shown(name)} is too long")
        if "\x00" in value or "\x00" in name:
            raise InvalidRequest("parameters must not contain NUL characters")
        if name in seen and name not in MULTI_VALUED:
            raise InvalidRequest(f"parameter {_shown(name)} is repeated")
        seen.add(name)
        if value == "" or name in MULTI_VALUED:
            continue
        out[name] = value
    return out


def _shown(name: str) -> str:
    """A parameter name safe to echo in an error description, or a neutral phrase."""
    return f"'{name}'" if _PARAM_NAME.fullmatch(name) else "(an unusual name)"


def is_scope_token(tok: str) -> bool:
    """RFC 6749 §3.3 scope-token: one or more NQCHAR (printable ASCII but space, ``"`` and ``\\``)."""
    return _SCOPE_TOKEN.fullmatch(tok) is not None


def is_audience_uri(value: str) -> bool:
    """An audience or resource indicator: an absolute URI without a fragment (RFC 3986 §4.3, RFC 8707 §2),
    such as ``https://api.example.com`` or ``urn:example:api``; printable ASCII, at most 2000 characters,
    and with ``//`` an authority (a host) after the scheme."""
    if not (0 < len(value) <= 2000 and value.isascii() and value.isprintable() and " " not in value):
        return False
    if not _ABSOLUTE_URI.fullmatch(value):
        return False
    rest = value.partition(":")[2]
    return not rest.startswith("//") or (len(rest) > 2 and rest[2] not in "/?")


def scope_set(value: str | None) -> frozenset[str]:
    """RFC 6749 §3.3: space-delimited, case-sensitive scope tokens (NQCHAR)."""
    if not value:
        return frozenset()
    tokens = value.split(" ")
    if not all(_SCOPE_TOKEN.fullmatch(tok) for tok in tokens):
        raise InvalidRequest("scope is malformed")
    return frozenset(tokens)


def form_value(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise InvalidRequest(f"missing parameter '{name}'")
    return value
