"""Scan a built front-end or mobile bundle for what must never ship to users: client secrets, private keys and
refresh tokens (mistake 10), and code that asks for the implicit flow (mistake 1) or the password grant (mistake 5).

A finding needs a strong signal: a vendor's secret prefix, a PEM or JWK private key, or a value assigned to a
``client_secret`` / ``refresh_token`` name that looks random (length and entropy) and is not a placeholder.
Secrets are never printed whole: the evidence shows the first characters and the length.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from .._json import loads as json_loads
from .findings import Report

__all__ = ["scan_bundle"]

_TEXT_SUFFIXES: Final = frozenset({
    ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".map", ".html", ".htm", ".json", ".txt", ".xml", ".plist",
    ".properties", ".env", ".yml", ".yaml", ".smali", ".strings", ".config", ".conf", ".ini", ".vue", ".svelte",
    ".dart", ".kt", ".java", ".swift", ".css", ".pem", ".key", ".p8", ".jwk", ".jwks",
})
_SKIP_DIRS: Final = frozenset({".git", "node_modules", "__pycache__"})
_MAX_BYTES: Final = 8 * 1024 * 1024

#: Secrets recognisable by their prefix alone (vendor formats), as (name, pattern).
_PREFIXED: Final = (
    ("an Ostiary client secret", re.compile(r"\bost_cs_[A-Za-z0-9_-]{20,}")),
    ("a Google OAuth client secret", re.compile(r"\bGOCSPX-[A-Za-z0-9_-]{24,}")),
    ("an Azure AD client secret", re.compile(r"(?<![A-Za-z0-9_~.-])[A-Za-z0-9_~.-]{3}8Q~[A-Za-z0-9_~.-]{31,34}")),
    ("a Stripe secret key", re.compile(r"\b[sr]k_live_[A-Za-z0-9]{20,}")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})")),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("a Slack token", re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
)
_REFRESH_PREFIXED: Final = re.compile(r"\bost_rt_[A-Za-z0-9_-]{20,}")
_NAME_VALUE = r"""["']?\s*[:=]\s*["'`]([^"'`\s]{8,400})["'`]"""
_CLIENT_SECRET: Final = re.compile(r"(?i)\b(?:client|app|oauth|consumer)[_-]?secret" + _NAME_VALUE)
_CLIENT_SECRET_URL: Final = re.compile(r"(?i)[?&\"'`]client_secret=([^&\s\"'`]{8,400})")
_REFRESH: Final = re.compile(r"(?i)\brefresh[_-]?token" + _NAME_VALUE)
_PEM: Final = re.compile(r"-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY)-----")
_PEM_SPACE: Final = re.compile(r"\\[rn]|\s")  # real line breaks, or \n escapes inside a JS string
_PEM_BODY: Final = re.compile(r"[A-Za-z0-9+/]{64}")
_JWK_D: Final = re.compile(r"""["']d["']\s*:\s*["']([A-Za-z0-9_-]{20,})["']""")
_IMPLICIT: Final = (
    re.compile(r"(?i)\bresponse_?type" + r"""["']?\s*[:=]\s*["'`]([a-z_ +]+)["'`]"""),
    re.compile(r"(?i)[?&\"'`]response_type=([a-z_]+(?:(?:%20|\+)[a-z_]+)*)"),
)
_PASSWORD: Final = (
    re.compile(r"""(?i)\bgrant_?type["']?\s*[:=]\s*["'`]password["'`]"""),
    re.compile(r"(?i)[?&\"'`]grant_type=password\b"),
)
_PLACEHOLDER: Final = re.compile(r"(?i)your|example|sample|placeholder|change_?me|dummy|redacted|secret_?here|"
                                 r"xxxx|\*\*\*|<|>|\$\{|\{\{|%s|process\.env|import\.meta|undefined|null|"
                                 r"^(?:client|refresh)[_-]?(?:secret|token)$")


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _random_looking(value: str, min_len: int = 12) -> bool:
    return (len(value) >= min_len and not _PLACEHOLDER.search(value) and _entropy(value) >= 3.0
            and len(set(value)) >= 8)


def _redact(value: str) -> str:
    return f"{value[:6]}… ({len(value)} characters)"


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() in _TEXT_SUFFIXES or path.name.startswith(".env"):
                yield path


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > _MAX_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\x00" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _scan_text(text: str, where: str, rel: str, report: Report, line_base: int | None = None) -> None:
    """Scan one text. ``where`` names it in the evidence; ``rel`` is the file for SARIF; when ``line_base`` is
    given (a source inside a source map), SARIF points at the map file's line 1."""
    seen: set[tuple[str, int]] = set()

    def add(check: str, offset: int, what: str) -> None:
        line = _line(text, offset)
        if (check, line) in seen:
            return
        seen.add((check, line))
        report.add(check, f"{where}:{line}: {what}", path=rel, line=line if line_base is None else line_base)

    for name, pattern in _PREFIXED:
        for m in pattern.finditer(text):
            add("bundle.client-secret", m.start(), f"{name}: {_redact(m.group(0))}")
    for pattern in (_CLIENT_SECRET, _CLIENT_SECRET_URL):
        for m in pattern.finditer(text):
            if _random_looking(m.group(1)):
                add("bundle.client-secret", m.start(), f"a client secret assigned in code: {_redact(m.group(1))}")
    for m in _PEM.finditer(text):
        body = _PEM_SPACE.sub("", text[m.end(): m.end() + 400])
        if _PEM_BODY.match(body) or body.startswith("Proc-Type:"):  # a key, not a prefix test or a placeholder
            add("bundle.private-key", m.start(), f"a PEM {m.group(1)}")
    for m in _JWK_D.finditer(text):
        window = text[max(0, m.start() - 400): m.end() + 400]
        if '"kty"' in window or "'kty'" in window:
            add("bundle.private-key", m.start(), f"a JWK with its private member d: {_redact(m.group(1))}")
    for m in _REFRESH_PREFIXED.finditer(text):
        add("bundle.refresh-token", m.start(), f"an Ostiary refresh token: {_redact(m.group(0))}")
    for m in _REFRESH.finditer(text):
        if _random_looking(m.group(1), 20) and m.group(1).lower() != "refresh_token":
            add("bundle.refresh-token", m.start(), f"a refresh token assigned in code: {_redact(m.group(1))}")
    for pattern in _IMPLICIT:
        for m in pattern.finditer(text):
            value = re.split(r"%20|\+| ", m.group(1).lower())
            if "token" in value:
                add("bundle.implicit", m.start(), f"response_type {' '.join(value)!r}")
    for pattern in _PASSWORD:
        for m in pattern.finditer(text):
            add("bundle.password-grant", m.start(), "grant_type 'password'")


def scan_bundle(path: str | os.PathLike[str]) -> Report:
    """Scan a file or a folder (a built SPA, an unpacked APK or IPA)."""
    root = Path(path)
    report = Report(str(path), "bundle")
    if not root.exists():
        report.add("bundle.not-assessed", f"{path}: no such file or directory")
        report.assessed = False
        return report
    scanned = 0
    for file in _files(root):
        text = _read(file)
        if text is None:
            continue
        scanned += 1
        rel = file.name if root.is_file() else file.relative_to(root).as_posix()
        if file.suffix.lower() == ".map":
            try:
                data = json_loads(text)
            except ValueError:
                data = None
            if isinstance(data, dict) and isinstance(data.get("sourcesContent"), list):
                raw = data.get("sources")
                sources: list[object] = raw if isinstance(raw, list) else []
                for i, content in enumerate(data["sourcesContent"]):
                    if isinstance(content, str):
                        name = str(sources[i]) if i < len(sources) else f"source {i}"
                        _scan_text(content, f"{rel} ({name})", rel, report, line_base=1)
                continue
        _scan_text(text, rel, rel, report)
    if scanned == 0:
        report.add("bundle.not-assessed", f"{path}: no text file to scan (JS, HTML, JSON, source maps, XML…)")
        report.assessed = False
    return report
