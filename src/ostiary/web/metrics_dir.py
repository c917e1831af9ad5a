"""The PROMETHEUS_MULTIPROC_DIR of ``ostiary serve``: a directory ``ostiary-metrics-<pid>-*`` in the temporary
directory, removed when the server exits, and removed at the next start when the server that made it was
killed (the pid in its name is gone). Imports nothing of prometheus_client, which reads the variable once."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

__all__ = ["multiproc_dir", "remove_stale_multiproc_dirs"]


_PREFIX = "ostiary-metrics-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_multiproc_dirs(parent: str | None = None) -> list[str]:
    """Remove the metrics directories of servers that were killed (the pid in the name is gone)."""
    parent = parent or tempfile.gettempdir()
    removed = []
    with contextlib.suppress(OSError):
        for name in os.listdir(parent):
            m = re.fullmatch(re.escape(_PREFIX) + r"(\d+)-\w+", name)
            if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
                path = os.path.join(parent, name)
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


@contextlib.contextmanager
def multiproc_dir() -> Iterator[str]:
    """A fresh PROMETHEUS_MULTIPROC_DIR for this server's workers, removed on exit (leftovers cleaned first)."""
    remove_stale_multiproc_dirs()
    path = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield path
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(path, ignore_errors=True)
