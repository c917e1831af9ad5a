"""The openid-client relying party (tests/rp_node/rp.mjs) as a child process: its pinned npm dependencies
installed once, processes started and cleaned up, its one-JSON-line answers read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

RP_DIR = Path(__file__).resolve().parent.parent / "rp_node"

StartRp = Callable[..., "subprocess.Popen[str]"]


def ensure_installed() -> Path:
    """``npm ci``: the versions package-lock.json pins, installed when node_modules is missing or holds another
    openid-client than the lock's (idempotent otherwise)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are needed for the openid-client tests (apt-get install nodejs npm)")
    pinned = json.loads((RP_DIR / "package-lock.json").read_text())["packages"]["node_modules/openid-client"]
    installed = RP_DIR / "node_modules" / "openid-client" / "package.json"
    if not installed.is_file() or json.loads(installed.read_text())["version"] != pinned["version"]:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=RP_DIR, check=True, capture_output=True,
                       timeout=300)
    return RP_DIR / "rp.mjs"


@contextmanager
def rp_processes(script: Path) -> Iterator[StartRp]:
    """``start(*args, env=None)`` runs ``node rp.mjs *args`` (``env`` added to the environment); every process
    started is killed on the way out."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(["node", str(script), *args], cwd=RP_DIR, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {})})
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream:
                    stream.close()


def read_line(proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    assert proc.stdout is not None
    with ThreadPoolExecutor(1) as pool:
        line = pool.submit(proc.stdout.readline).result(timeout=timeout)
    if not line:
        proc.wait(timeout=10)
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"rp.mjs exited ({proc.returncode}) without output:\n{err}")
    out: dict[str, Any] = json.loads(line)
    return out


def send_callback(proc: subprocess.Popen[str], callback: str) -> dict[str, Any]:
    """Hand the callback URL to the relying party; its result line, after it exited cleanly."""
    assert proc.stdin is not None
    proc.stdin.write(callback + "\n")
    proc.stdin.flush()
    result = read_line(proc)
    code = proc.wait(timeout=30)
    assert code == 0, proc.stderr.read() if proc.stderr else code
    return result
