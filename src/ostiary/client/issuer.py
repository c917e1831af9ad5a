""":class:`IssuerClient`: what the blocking toolkit objects that act as one client of one issuer share
(:class:`~ostiary.client.device_login.DeviceLogin`, :class:`~ostiary.client.session.TokenSession`)."""

from __future__ import annotations

from types import TracebackType

import httpx

from .discovery import ServerMetadata, discover, require_https
from .errors import DiscoveryError
from .http_clients import HttpClients
from .service_token import client_secret_basic

__all__ = ["IssuerClient"]


class IssuerClient:
    """One client (``client_id``, and ``client_secret`` for a confidential one) of one pinned issuer: an HTTP
    client (the caller's, or one made on first use and closed by :meth:`close`), the issuer's metadata
    (discovered once), its endpoints by name (``https`` except on loopback), and form posts authenticated as
    the client (``client_secret_basic``, or ``client_id`` in the form for a public client, RFC 6749 §2.3)."""

    def __init__(self, issuer: str, client_id: str, *, client_secret: str | None = None,
                 http_client: httpx.Client | None = None, timeout: float = 15.0) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._http = HttpClients(http_client, timeout=timeout)
        self._metadata: ServerMetadata | None = None

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

    def _post(self, url: str, form: dict[str, str]) -> httpx.Response:
        """POST ``form`` to ``url`` as this client. Transport errors propagate (``httpx.TransportError``)."""
        headers = {"Accept": "application/json"}
        if self._secret is not None:
            headers["Authorization"] = client_secret_basic(self.client_id, self._secret)
        else:
            form = {**form, "client_id": self.client_id}
        return self._client().post(url, data=form, headers=headers)
