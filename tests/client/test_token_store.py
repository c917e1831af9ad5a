"""Token stores: the OS keyring through ``keyring`` (a file backend from keyrings.alt stands in for it), the
opt-in encrypted file, and the clear error when no keyring exists."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail
from keyrings.alt.file import PlaintextKeyring

from ostiary.client import (
    EncryptedFileTokenStore,
    KeyringTokenStore,
    NoKeyringError,
    StoredTokens,
    TokenStoreError,
    default_token_store,
)

ISS = "https://id.example.com"


def tokens(account: str = "user-1", access: str = "at-1", refresh: str | None = "rt-1") -> StoredTokens:
    return StoredTokens(issuer=ISS, client_id="cli", account=account, access_token=access, expires_at=2e9,
                        refresh_token=refresh, id_token="id.token.x", scope="openid offline_access")


@pytest.fixture
def file_keyring(tmp_path: Path):
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring.cfg")
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_repr_never_shows_tokens() -> None:
    text = repr(tokens(access="SECRET-AT", refresh="SECRET-RT"))
    assert "SECRET" not in text and "user-1" in text


def test_keyring_round_trip_one_entry_per_issuer_client_account(file_keyring: PlaintextKeyring) -> None:
    store = KeyringTokenStore(file_keyring)
    assert store.load(ISS, "cli") is None
    store.save(tokens())
    store.save(tokens(account="user-2", access="at-2"))
    assert store.load(ISS, "cli").access_token == "at-2"  # the last login is the current account
    assert store.load(ISS, "cli", "user-1").access_token == "at-1"
    assert store.load(ISS, "other-client") is None
    assert store.load(ISS + "/other", "cli") is None
    assert keyring.get_password(f"ostiary:{ISS}|cli", "user-1") is not None  # really in the keyring backend
    store.save(tokens(access="at-3"))  # replaces user-1's entry and makes it current again
    assert store.load(ISS, "cli").access_token == "at-3"
    assert store.delete(ISS, "cli")
    assert store.load(ISS, "cli") is None
    assert store.load(ISS, "cli", "user-2").access_token == "at-2"
    assert not store.delete(ISS, "cli")


def test_configured_backend_is_used_by_default_store(file_keyring: PlaintextKeyring, monkeypatch) -> None:
    monkeypatch.delenv("OSTIARY_TOOLKIT_TOKEN_FILE", raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")  # an explicit choice
    store = default_token_store()
    assert isinstance(store, KeyringTokenStore)
    store.save(tokens())
    assert Path(file_keyring.file_path).exists()


def test_no_keyring_is_a_clear_error_naming_the_alternative(monkeypatch) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        with pytest.raises(NoKeyringError) as info:
            KeyringTokenStore().load(ISS, "cli")
        message = str(info.value)
        assert "no secure OS keyring" in message
        assert "OSTIARY_TOOLKIT_TOKEN_FILE" in message and "OSTIARY_TOOLKIT_PASSPHRASE" in message
        assert "plain-text" in message
        with pytest.raises(NoKeyringError):
            KeyringTokenStore().save(tokens())
    finally:
        keyring.set_keyring(previous)


def test_a_plaintext_fallback_picked_by_priority_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "k.cfg")
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        with pytest.raises(NoKeyringError, match="plain-text file backend"):
            KeyringTokenStore().save(tokens())
        assert not (tmp_path / "k.cfg").exists()
    finally:
        keyring.set_keyring(previous)


def test_encrypted_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tokens.enc"
    store = EncryptedFileTokenStore(path, "a long passphrase")
    store.save(tokens(access="SECRET-ACCESS", refresh="SECRET-REFRESH"))
    store.save(tokens(account="user-2", access="at-2"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    raw = path.read_text()
    assert "SECRET" not in raw and "user-1" not in raw and ISS not in raw
    assert json.loads(raw)["format"] == "ostiary-tokens-v1"
    again = EncryptedFileTokenStore(path, "a long passphrase")
    assert again.load(ISS, "cli").access_token == "at-2"
    assert again.load(ISS, "cli", "user-1").refresh_token == "SECRET-REFRESH"
    assert again.delete(ISS, "cli", "user-2")
    assert again.load(ISS, "cli", "user-2") is None
    assert [p.name for p in path.parent.iterdir()] == ["tokens.enc"]  # no temporary files left behind


def test_encrypted_file_wrong_passphrase_or_tampering(tmp_path: Path) -> None:
    path = tmp_path / "tokens.enc"
    EncryptedFileTokenStore(path, "a long passphrase").save(tokens())
    with pytest.raises(TokenStoreError, match="wrong passphrase"):
        EncryptedFileTokenStore(path, "another passphrase").load(ISS, "cli")
    blob = json.loads(path.read_text())
    blob["ciphertext"] = blob["ciphertext"][:-4] + ("AAAA" if not blob["ciphertext"].endswith("AAAA") else "BBBB")
    path.write_text(json.dumps(blob))
    with pytest.raises(TokenStoreError):
        EncryptedFileTokenStore(path, "a long passphrase").load(ISS, "cli")


def test_encrypted_file_needs_a_passphrase(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OSTIARY_TOOLKIT_PASSPHRASE", raising=False)
    with pytest.raises(TokenStoreError, match="OSTIARY_TOOLKIT_PASSPHRASE"):
        EncryptedFileTokenStore(tmp_path / "t.enc")
    monkeypatch.setenv("OSTIARY_TOOLKIT_TOKEN_FILE", str(tmp_path / "t.enc"))
    monkeypatch.setenv("OSTIARY_TOOLKIT_PASSPHRASE", "from the environment")
    store = default_token_store()
    assert isinstance(store, EncryptedFileTokenStore)
    store.save(tokens())
    assert store.load(ISS, "cli") is not None


class _BrokenSecretService:
    """A keyring backend that cannot start, as Secret Service does on a machine without a D-Bus session."""

    priority = 5

    def get_password(self, service: str, username: str) -> str | None:
        raise ConnectionError("org.freedesktop.DBus.Error.ServiceUnknown: The name org.freedesktop.secrets "
                              "was not provided by any .service files\n  (and forty more lines of trace)")

    set_password = get_password


def test_a_keyring_backend_that_cannot_start_is_one_line(monkeypatch) -> None:
    with pytest.raises(NoKeyringError) as info:
        KeyringTokenStore(_BrokenSecretService()).load(ISS, "cli")
    message = str(info.value)
    assert "\n" not in message, message
    assert "ConnectionError" in message and "ServiceUnknown" in message
    assert "OSTIARY_TOOLKIT_TOKEN_FILE" in message
