"""The README stays true: every setting is documented, and the layers import as the design says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from ostiary.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def _settings(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _settings(ann, prefix + name + ".")
        else:
            dotted = prefix + name
            out.append((dotted, "OSTIARY_" + dotted.replace(".", "__").upper()))
    return out


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [f"{d} ({env})" for d, env in _settings(Settings) if f"`{d}`" not in readme or f"`{env}`" not in readme]
    assert not missing, "settings missing from the README's Configuration table: " + ", ".join(missing)


def test_toolkits_import_without_server_dependencies() -> None:
    code = (
        "import sys, ostiary.client, ostiary.resource\n"
        "bad = [m for m in ('sqlalchemy', 'starlette', 'jinja2', 'alembic', 'asyncpg', 'ostiary.web', 'ostiary.store')"
        " if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"ostiary.client/resource pulled in server modules: {out}"


def test_core_imports_alone() -> None:
    code = (
        "import sys, ostiary.core.endpoints.token, ostiary.core.grants\n"
        "bad = [m for m in ('sqlalchemy', 'starlette', 'httpx', 'jinja2', 'pydantic') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"core pulled in: {out}"
