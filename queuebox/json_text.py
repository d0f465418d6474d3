"""Reading JSON that queuebox did not necessarily write: a job's payload, a store's row, a
cursor or a request body from outside, a file of the run folder.

``json.loads`` raises ``RecursionError``, not ``ValueError``, for arrays or objects nested
past about a thousand levels (its C decoder recurses). queuebox never writes such JSON, so
text like that is bad input like any other, and every reader here treats it as one: it
fails that one record, request or file with ``ValueError``, instead of escaping the
``except ValueError`` around it and stopping a worker, a page or a command.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["TOO_DEEP", "NestedTooDeep", "load_json"]

#: What ``load_json``'s error says of JSON nested past the decoder's limit.
TOO_DEEP = (
    "nested too deeply to decode (JSON arrays or objects inside each other past Python's "
    "recursion limit)"
)


class NestedTooDeep(ValueError):
    """JSON nested past the decoder's limit (a ``ValueError``, as any other bad JSON is)."""


def load_json(text: str | bytes, **options: Any) -> Any:
    """``json.loads(text, **options)``, with JSON nested too deeply raised as
    ``NestedTooDeep``."""
    try:
        return json.loads(text, **options)
    except RecursionError:
        raise NestedTooDeep(TOO_DEEP) from None
