"""Named SQL queries: one ``.sql`` file per dialect, read once.

A file holds queries under headers ``-- name: claim``; the text up to the next header is the
query. A header ``-- fragment: state_of_job`` starts a piece of SQL that is not a query but
is pasted into queries with ``{% state_of_job %}`` (fragments may include fragments), so
that a file never repeats a long expression. A query whose text is only comments is empty:
the dialect needs no statement for that step, and the comment says why (the SQL base skips
it). Loading with ``importlib.resources`` works from a wheel, a zip or a checkout alike.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = ["is_empty", "load_queries", "parse_queries"]

_HEADER = re.compile(
    r"^--\s*(?P<kind>name|fragment):\s*(?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE
)
_INCLUDE = re.compile(r"\{%\s*(?P<name>[a-z_][a-z0-9_]*)\s*%\}")
_COMMENT_LINE = re.compile(r"^\s*--.*$", re.MULTILINE)


@functools.cache
def load_queries(source: str | Path) -> dict[str, str]:
    """``{name: sql}`` of ``queuebox/backends/sql/<source>.sql``, or of the file at ``source``
    when it is a path (a dialect kept outside queuebox)."""
    if isinstance(source, Path):
        file: Traversable | Path = source
    else:
        file = importlib.resources.files(__package__).joinpath(f"{source}.sql")
    return parse_queries(file.read_text("utf-8"), where=str(getattr(file, "name", source)))


def parse_queries(text: str, *, where: str = "<sql>") -> dict[str, str]:
    """Split ``text`` into named queries, with every ``{% fragment %}`` pasted in."""
    headers = list(_HEADER.finditer(text))
    queries: dict[str, str] = {}
    fragments: dict[str, str] = {}
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        end = following.start() if following is not None else len(text)
        name, body = header.group("name"), _without_trailing_comments(text[header.end() : end])
        into = queries if header.group("kind") == "name" else fragments
        if name in queries or name in fragments:
            raise RuntimeError(f"{where} defines {name!r} twice")
        into[name] = body

    def expand(body: str, seen: tuple[str, ...]) -> str:
        def paste(match: re.Match[str]) -> str:
            name = match.group("name")
            if name not in fragments:
                raise RuntimeError(f"{where}: {{% {name} %}} names no fragment")
            if name in seen:
                raise RuntimeError(f"{where}: fragment {name!r} includes itself")
            return expand(fragments[name], (*seen, name))

        return _INCLUDE.sub(paste, body)

    return {name: expand(body, ()) for name, body in queries.items()}


def _without_trailing_comments(body: str) -> str:
    """The body without the comment lines after its last statement line: those introduce
    the next section of the file (and would end up inside the SQL SQLite keeps)."""
    lines = body.strip().splitlines()
    last = max(
        (n for n, line in enumerate(lines) if not line.lstrip().startswith("--")), default=-1
    )
    return "\n".join(lines if last < 0 else lines[: last + 1]).strip()


def is_empty(query: str) -> bool:
    """True for a query that is only comments: the dialect has nothing to run there."""
    return not _COMMENT_LINE.sub("", query).strip()
