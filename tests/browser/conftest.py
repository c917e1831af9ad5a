"""Browser tests: Playwright driving Debian's chromium (never ``playwright install``), one live server per
module, a tiny relying party on 127.0.0.1 that records what comes back to its callback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ..support import LiveServer, start_server
from ._flow import RelyingParty, rp_handler

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def rp() -> Iterator[RelyingParty]:
    party = RelyingParty()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), rp_handler(party))
    party.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield party
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server per module (SQLite: the HTTP suite covers PostgreSQL)."""
    tmp: Path = tmp_path_factory.mktemp("browser-server")
    srv = start_server(f"sqlite+aiosqlite:///{tmp / 'ost.db'}", tmp)
    yield srv
    srv.stop()


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    """One browser for every test in this package. Not session-scoped: Playwright's sync API keeps an asyncio
    loop running in the main thread while it is open, which would break every later ``asyncio.run`` and
    async test of the session."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (never `playwright install`)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    ctx = chromium.new_context()
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()
