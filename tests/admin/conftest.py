"""The admin services on the memory store with a fixed clock: the core's test wiring (tests/core/conftest.py)."""

from __future__ import annotations

from ..core.conftest import engine

__all__ = ["engine"]
