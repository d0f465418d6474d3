"""Named SQL queries, one ``.sql`` file per dialect, shipped in the wheel.

A file holds queries under headers of the form ``-- name: claim_jobs``; the text up to the
next header is the query. Loading them with ``importlib.resources`` works from a wheel, a
zip or a source checkout alike.
"""

from __future__ import annotations

import functools
import importlib.resources
import re

__all__ = ["load_queries"]

_HEADER = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@functools.cache
def load_queries(dialect: str) -> dict[str, str]:
    """Return ``{name: sql}`` for ``queuebox/backends/sql/<dialect>.sql``."""
    text = importlib.resources.files(__package__).joinpath(f"{dialect}.sql").read_text("utf-8")
    headers = list(_HEADER.finditer(text))
    queries: dict[str, str] = {}
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        end = following.start() if following is not None else len(text)
        name = header.group("name")
        if name in queries:
            raise RuntimeError(f"{dialect}.sql defines the query {name!r} twice")
        queries[name] = text[header.end() : end].strip()
    return queries
