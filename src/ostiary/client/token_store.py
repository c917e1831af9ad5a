"""Where a CLI keeps a user's tokens: the OS keyring, or an encrypted file the user opts into.

One entry per issuer + client + account. There is deliberately no plain-text token file: when no keyring
backend exists (a headless Linux machine without Secret Service), :class:`NoKeyringError` says so and names
the alternative, :class:`EncryptedFileTokenStore` (AES-256-GCM under a key derived with scrypt from a
passphrase the user supplies, for example through an environment variable).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .._json import loads as json_loads
from .errors import NoKeyringError, TokenStoreError

__all__ = [
    "PASSPHRASE_ENV",
    "TOKEN_FILE_ENV",
    "EncryptedFileTokenStore",
    "KeyringTokenStore",
    "StoredTokens",
    "TokenStore",
    "default_token_store",
]

#: Opt into the encrypted file store: its path, and the passphrase that protects it. The client toolkit's
#: variables live under ``OSTIARY_TOOLKIT_``, a namespace the server's settings leave alone, so one shell can
#: hold both the server's ``OSTIARY_*`` settings and these.
TOKEN_FILE_ENV = "OSTIARY_TOOLKIT_TOKEN_FILE"
PASSPHRASE_ENV = "OSTIARY_TOOLKIT_PASSPHRASE"
_CURRENT = "@current"
_NO_KEYRING_HELP = (
    "no secure OS keyring is available on this machine ({why}). Tokens are never written to a plain-text file. "
    f"Either install and unlock a keyring (GNOME Keyring / KWallet via Secret Service), or opt into the "
    f"encrypted file store: set {TOKEN_FILE_ENV}=~/.config/ostiary/tokens.enc and {PASSPHRASE_ENV} to a "
    "passphrase (or pass EncryptedFileTokenStore(path, passphrase) in code)."
)


@dataclass(frozen=True, slots=True)
class StoredTokens:
    """A user's tokens for one issuer + client + account. Token values never appear in ``repr``.

    ``dpop_key``: the PEM of the DPoP key the tokens are bound to (RFC 9449), kept with them so that refreshes
    and API calls after a restart prove possession of the same key; None for tokens stored without one.
    """

    issuer: str
    client_id: str
    account: str
    access_token: str = field(repr=False)
    expires_at: float
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    token_type: str = "Bearer"
    dpop_key: str | None = field(default=None, repr=False)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str | Mapping[str, Any]) -> StoredTokens:
        raw = json_loads(data) if isinstance(data, str) else dict(data)
        try:
            return cls(issuer=str(raw["issuer"]), client_id=str(raw["client_id"]), account=str(raw["account"]),
                       access_token=str(raw["access_token"]), expires_at=float(raw["expires_at"]),
                       refresh_token=raw.get("refresh_token"), id_token=raw.get("id_token"),
                       scope=raw.get("scope"), token_type=str(raw.get("token_type", "Bearer")),
                       dpop_key=raw.get("dpop_key") if isinstance(raw.get("dpop_key"), str) else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenStoreError("the stored tokens are unreadable; log in again") from exc


class TokenStore(Protocol):
    def load(self, issuer: str, client_id: str, account: str | None = None) -> StoredTokens | None:
        """The tokens of ``account``, or of the account used last when ``account`` is None."""
        ...

    def save(self, tokens: StoredTokens) -> None:
        """Store (replace) the entry and make its account the current one, atomically for the entry."""
        ...

    def delete(self, issuer: str, client_id: str, account: str | None = None) -> bool: ...


def _service(issuer: str, client_id: str) -> str:
    return f"ostiary:{issuer.rstrip('/')}|{client_id}"


# -- OS keyring ------------------------------------------------------------------------------------


def _is_plaintext(backend: Any) -> bool:
    inner = getattr(backend, "backends", None)
    if inner is not None:  # keyring's ChainerBackend
        return bool(inner) and all(_is_plaintext(b) for b in inner)
    return type(backend).__module__.startswith("keyrings.alt")


class KeyringTokenStore:
    """Tokens in the OS keyring through the ``keyring`` library (macOS Keychain, Windows Credential Locker,
    Secret Service / KWallet on Linux).

    ``backend``: a keyring backend object to use instead of the configured one (tests use a file-backed
    one from ``keyrings.alt``). Without it, the backend ``keyring`` selects is used, except that a fallback
    that keeps secrets in a readable file (``keyrings.alt``) is refused unless chosen explicitly
    (``PYTHON_KEYRING_BACKEND`` or ``allow_plaintext=True``).
    """

    def __init__(self, backend: Any | None = None, *, allow_plaintext: bool = False) -> None:
        self._backend = backend
        self._allow_plaintext = allow_plaintext or backend is not None or bool(os.environ.get("PYTHON_KEYRING_BACKEND"))

    def _kr(self) -> Any:
        if self._backend is not None:
            return self._backend
        import keyring
        from keyring.backends import fail

        with self._errors():
            backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring):
            raise NoKeyringError(_NO_KEYRING_HELP.format(why="the keyring library found no backend"))
        if _is_plaintext(backend) and not self._allow_plaintext:
            raise NoKeyringError(_NO_KEYRING_HELP.format(why="only a plain-text file backend was found"))
        return backend

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        from keyring.errors import KeyringError, KeyringLocked
        from keyring.errors import NoKeyringError as KrNoKeyring

        try:
            yield
        except TokenStoreError:
            raise
        except KrNoKeyring as exc:
            raise NoKeyringError(_NO_KEYRING_HELP.format(why=_one_line(exc) or "no backend")) from exc
        except KeyringLocked as exc:
            raise TokenStoreError("the OS keyring is locked: unlock it and try again") from exc
        except KeyringError as exc:
            raise TokenStoreError(f"the OS keyring refused the operation: {type(exc).__name__}") from exc
        except Exception as exc:
            # A backend that cannot start (Secret Service without a D-Bus session, a dead daemon) raises its
            # own exception types, not keyring's: one line that says what to do, never a traceback.
            why = f"the keyring backend failed: {type(exc).__name__}: {_one_line(exc)}".rstrip(": ")
            raise NoKeyringError(_NO_KEYRING_HELP.format(why=why)) from exc

    def load(self, issuer: str, client_id: str, account: str | None = None) -> StoredTokens | None:
        kr = self._kr()
        service = _service(issuer, client_id)
        with self._errors():
            if account is None:
                account = kr.get_password(service, _CURRENT)
                if account is None:
                    return None
            raw = kr.get_password(service, account)
        return StoredTokens.from_json(raw) if raw else None

    def save(self, tokens: StoredTokens) -> None:
        kr = self._kr()
        service = _service(tokens.issuer, tokens.client_id)
        with self._errors():
            kr.set_password(service, tokens.account, tokens.to_json())
            if kr.get_password(service, _CURRENT) != tokens.account:
                kr.set_password(service, _CURRENT, tokens.account)

    def delete(self, issuer: str, client_id: str, account: str | None = None) -> bool:
        from keyring.errors import PasswordDeleteError

        kr = self._kr()
        service = _service(issuer, client_id)
        with self._errors():
            current = kr.get_password(service, _CURRENT)
            account = account or current
            if account is None:
                return False
            found = True
            try:
                kr.delete_password(service, account)
            except PasswordDeleteError:
                found = False
            if current == account:
                with contextlib.suppress(PasswordDeleteError):
                    kr.delete_password(service, _CURRENT)
        return found


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


# -- encrypted file --------------------------------------------------------------------------------

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
_FORMAT = "ostiary-tokens-v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class EncryptedFileTokenStore:
    """Tokens in one file, encrypted with AES-256-GCM under a key derived by scrypt (N=2^15, r=8, p=1)
    from ``passphrase``. The file is created with mode 0600 and replaced atomically on every change.

    For machines without a keyring, by explicit choice: ``EncryptedFileTokenStore(path)`` reads the
    passphrase from ``$OSTIARY_TOOLKIT_PASSPHRASE`` when none is given.
    """

    def __init__(self, path: str | os.PathLike[str], passphrase: str | None = None) -> None:
        self.path = Path(path)
        secret = passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV)
        if not secret:
            raise TokenStoreError(f"the encrypted token file needs a passphrase: set {PASSPHRASE_ENV}")
        if len(secret) < 8:
            raise TokenStoreError("the token file passphrase must have at least 8 characters")
        self._passphrase = secret.encode("utf-8")
        self._keys: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EncryptedFileTokenStore({str(self.path)!r})"

    def _key(self, salt: bytes) -> bytes:
        key = self._keys.get(salt)
        if key is None:
            from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

            key = Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P).derive(self._passphrase)
            self._keys[salt] = key
        return key

    def _read(self) -> dict[str, Any]:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            blob = json_loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {"entries": {}, "current": {}}
        except (OSError, ValueError) as exc:
            raise TokenStoreError(f"cannot read the token file {self.path}") from exc
        try:
            if blob.get("format") != _FORMAT:
                raise ValueError("unknown format")
            salt, nonce, ct = (base64.b64decode(blob[k]) for k in ("salt", "nonce", "ciphertext"))
            plain = AESGCM(self._key(salt)).decrypt(nonce, ct, _FORMAT.encode())
            data: dict[str, Any] = json_loads(plain)
        except InvalidTag as exc:
            raise TokenStoreError(f"cannot decrypt {self.path}: wrong passphrase, or the file was altered") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TokenStoreError(f"the token file {self.path} is damaged") from exc
        return data

    def _write(self, data: dict[str, Any]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
        ct = AESGCM(self._key(salt)).encrypt(nonce, json.dumps(data).encode(), _FORMAT.encode())
        body = json.dumps({"format": _FORMAT, "kdf": {"name": "scrypt", "n": _SCRYPT_N, "r": _SCRYPT_R,
                                                      "p": _SCRYPT_P},
                           "salt": _b64(salt), "nonce": _b64(nonce), "ciphertext": _b64(ct)})
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=self.path.parent)
        try:
            # mkstemp creates the file with mode 0600: the tokens are never readable by others
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def load(self, issuer: str, client_id: str, account: str | None = None) -> StoredTokens | None:
        with self._lock:
            data = self._read()
        service = _service(issuer, client_id)
        account = account or data["current"].get(service)
        raw = data["entries"].get(service, {}).get(account) if account else None
        return StoredTokens.from_json(raw) if raw else None

    def save(self, tokens: StoredTokens) -> None:
        service = _service(tokens.issuer, tokens.client_id)
        with self._lock:
            data = self._read()
            data["entries"].setdefault(service, {})[tokens.account] = asdict(tokens)
            data["current"][service] = tokens.account
            self._write(data)

    def delete(self, issuer: str, client_id: str, account: str | None = None) -> bool:
        service = _service(issuer, client_id)
        with self._lock:
            data = self._read()
            account = account or data["current"].get(service)
            found = account is not None and data["entries"].get(service, {}).pop(account, None) is not None
            if account is not None and data["current"].get(service) == account:
                data["current"].pop(service, None)
            if found:
                self._write(data)
        return found


def default_token_store() -> TokenStore:
    """The encrypted file store when ``$OSTIARY_TOOLKIT_TOKEN_FILE`` is set (opt-in), else the OS keyring."""
    path = os.environ.get(TOKEN_FILE_ENV)
    if path:
        return EncryptedFileTokenStore(os.path.expanduser(path))
    return KeyringTokenStore()
