""":class:`IssuerClient`: what the blocking toolkit objects that act as one client of one issuer share
(:class:`~ostiary.client.device_login.DeviceLogin`, :class:`~ostiary.client.session.TokenSession`)."""

from __future__ import annotations

from types import TracebackType

import httpx

from .._clock import Clock, SystemClock
from .discovery import ServerMetadata, discover, require_https
from .dpop import DpopKey, DpopNonces, dpop_advertised, nonce_challenge
from .errors import DiscoveryError
from .http_clients import HttpClients
from .service_token import client_secret_basic

__all__ = ["IssuerClient"]


class IssuerClient:
    """One client (``client_id``, and ``client_secret`` for a confidential one) of one pinned issuer: an HTTP
    client (the caller's, or one made on first use and closed by :meth:`close`), the issuer's metadata
    (discovered once), its endpoints by name (``https`` except on loopback), and form posts authenticated as
    the client (``client_secret_basic``, or ``client_id`` in the form for a public client, RFC 6749 §2.3).

    ``dpop``: send DPoP proofs (RFC 9449) to the token endpoint. ``None`` (the default) does so when the issuer's
    metadata advertises ``dpop_signing_alg_values_supported`` with ES256; ``False`` never, ``True`` always."""

    def __init__(self, issuer: str, client_id: str, *, client_secret: str | None = None,
                 http_client: httpx.Client | None = None, timeout: float = 15.0, dpop: bool | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._http = HttpClients(http_client, timeout=timeout)
        self._metadata: ServerMetadata | None = None
        self._dpop = dpop
        self._clock: Clock = SystemClock()
        #: The last ``DPoP-Nonce`` of each server (the issuer and the APIs called with this object's tokens).
        self.nonces = DpopNonces()

    def dpop_enabled(self) -> bool:
        """Whether token requests carry DPoP proofs (see ``dpop``; may fetch the issuer's metadata)."""
        return self._dpop if self._dpop is not None else dpop_advertised(self.metadata().raw)

    def _client(self) -> httpx.Client:
        return self._http.sync()

    def close(self) -> None:
        """Close the HTTP client this object made (never the caller's)."""
        self._http.close()

    def __enter__(self) -> IssuerClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def metadata(self) -> ServerMetadata:
        if self._metadata is None:
            self._metadata = discover(self.issuer, self._client())
        return self._metadata

    def _endpoint(self, name: str) -> str:
        """The metadata's ``name`` (e.g. ``token_endpoint``); DiscoveryError when the issuer has none."""
        value = self.metadata().raw.get(name)
        if not isinstance(value, str):
            raise DiscoveryError(f"the issuer does not offer {name.replace('_', ' ')}")
        return require_https(value, name)

    def _post(self, url: str, form: dict[str, str], *, dpop_key: DpopKey | None = None) -> httpx.Response:
        """POST ``form`` to ``url`` as this client, with a DPoP proof by ``dpop_key`` when given (retried once
        with the server's nonce on ``use_dpop_nonce``, RFC 9449 §8). Transport errors propagate."""
        headers = {"Accept": "application/json"}
        if self._secret is not None:
            headers["Authorization"] = client_secret_basic(self.client_id, self._secret)
        else:
            form = {**form, "client_id": self.client_id}
        if dpop_key is None:
            return self._client().post(url, data=form, headers=headers)
        for attempt in (1, 2):
            headers["DPoP"] = dpop_key.proof("POST", url, now=self._clock.now(), nonce=self.nonces.get(url))
            response = self._client().post(url, data=form, headers=headers)
            self.nonces.remember(url, response)
            if attempt == 1 and nonce_challenge(response):
                continue
            break
        return response
