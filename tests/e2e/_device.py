"""Helpers for the device-flow end-to-end tests: clients, users with a second factor, Chromium, a keyring."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp

from ..support import LiveServer
from ..web._codeflow import forms

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PASSWORD = "correct horse battery staple"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def device_client(server: LiveServer, **spec: Any) -> dict[str, Any]:
    spec.setdefault("name", "MyCorp CLI " + secrets.token_hex(2))
    spec.setdefault("client_type", "public")
    spec.setdefault("grant_types", [DEVICE_GRANT, "refresh_token"])
    spec.setdefault("scopes", ["openid", "profile", "email", "offline_access"])
    return server.create_client(**spec)


@dataclass
class User:
    username: str
    password: str
    user_id: str
    totp_secret: str | None = None

    def otp(self) -> str:
        assert self.totp_secret is not None
        return pyotp.TOTP(self.totp_secret).now()


def new_user(server: LiveServer, *, totp: bool = False) -> User:
    username = "u" + secrets.token_hex(5)
    with server.admin() as c:
        r = c.post("/users", json={"username": username, "name": "Dev Ice", "email": username + "@example.com",
                                   "password": PASSWORD})
    assert r.status_code == 201, r.text
    user = User(username, PASSWORD, r.json()["id"])
    if totp:
        user.totp_secret = enrol_totp(server, user)
    return user


def _hidden(html: str, form_id: str) -> dict[str, str]:
    fields: dict[str, str] = forms(html)[form_id]["fields"]
    return fields


def enrol_totp(server: LiveServer, user: User) -> str:
    with httpx.Client(base_url=server.base_url, timeout=30) as b:
        page = b.get("/login").text
        r = b.post("/login", data={**_hidden(page, "login-form"), "username": user.username,
                                   "password": user.password})
        assert r.status_code == 303, r.text
        enrol = b.get("/account/totp")
        secret = enrol.text.split('id="totp-secret">')[1].split("<")[0]
        r = b.post("/account/totp", data={**_hidden(enrol.text, "totp-enroll-form"),
                                          "code": pyotp.TOTP(secret).now()})
        assert r.status_code == 200, r.text
    return secret


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def decide_in_browser(browser: Any, url: str, user: User, decision: str, *, type_code: str | None = None) -> Any:
    """Open the verification page, (type the code), sign in with the second factor, approve or deny.
    Returns the page showing the outcome."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    if type_code is not None:
        page.fill("#user_code", type_code)
    page.click("#device-submit")
    page.wait_for_selector("#login-form")
    page.fill("#username", user.username)
    page.fill("#password", user.password)
    page.click("#login-submit")
    if user.totp_secret:
        page.wait_for_selector("#totp-form")
        page.fill("#code", user.otp())
        page.click("#totp-submit")
    page.wait_for_selector("#device-confirm-form")
    page.click("#device-approve" if decision == "approve" else "#device-deny")
    page.wait_for_selector("#device-done-title")
    return page


@dataclass
class Background:
    """Run a blocking call (the toolkit's polling loop) in a thread and collect its outcome."""

    fn: Callable[[], Any]
    result: Any = None
    error: BaseException | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 60) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the polling loop did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def file_keyring(path: Path) -> Any:
    from keyrings.alt.file import PlaintextKeyring

    backend = PlaintextKeyring()
    backend.file_path = str(path)
    return backend
