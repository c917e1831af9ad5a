"""admin/ is services: the CLI and the admin HTTP API share them, and they load no web framework."""

from __future__ import annotations

import subprocess
import sys


def test_the_admin_services_import_without_the_web_layer() -> None:
    code = (
        "import sys, ostiary.admin.service, ostiary.admin.users, ostiary.admin.federation\n"
        "bad = [m for m in ('starlette', 'jinja2', 'httpx', 'sqlalchemy', 'ostiary.web', 'ostiary.store',"
        " 'ostiary.cli') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"the admin services pulled in: {out}"
