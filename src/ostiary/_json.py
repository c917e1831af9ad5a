"""JSON from outside (a token's segments, a fetched document, a peer's answer), parsed so that the only error is
``ValueError``.

``json.loads`` parses nested arrays and objects recursively and raises ``RecursionError``, not ``ValueError``,
when a document nests deeper than the interpreter's recursion limit (about a thousand levels: 2 KB of ``[``).
Callers that turn ``ValueError`` into a protocol error would let that one through as a 500. Here it is a
``ValueError`` like any other malformed document.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(data: str | bytes | bytearray) -> Any:
    """``json.loads(data)``; ``ValueError`` (``json.JSONDecodeError`` or ``UnicodeDecodeError`` included) for
    anything that is not a JSON document, however deeply nested."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("the JSON document is nested too deeply") from None
