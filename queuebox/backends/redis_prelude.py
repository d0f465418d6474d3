"""The part of the Lua libraries each script needs, and nothing more.

Redis has no ``require``, so every script of a queue is loaded as the libraries followed by
its own file, and every call runs the libraries' top level again: each ``local function``
becomes a new closure per call. With the whole of ``lib.lua``, ``lib_limits.lua`` and
``lib_jobs.lua`` in front, that top level cost about a third of a one-job enqueue's server
time (``docs/redis.md``, "Request path"), most of it for functions the enqueue never calls.

The libraries' top level is nothing but ``local`` statements (``tests/test_redis_units.py``
keeps it so), so it splits into blocks, each starting at a line that begins with ``local``;
a script keeps the blocks whose names it uses, and the blocks those use, in their order.
Lua resolves a local by its name where it is written, so a name the text never mentions
cannot be reached: the trimmed prelude behaves as the whole one. A name mentioned only in a
comment or a string keeps a block it does not need, which costs time, never correctness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Block", "blocks", "needed_prelude"]

_START = re.compile(r"^local\s", re.MULTILINE)
_FUNCTION = re.compile(r"local\s+function\s+([A-Za-z_]\w*)")
_NAMES = re.compile(r"local\s+([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)")
_WORD = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True, slots=True)
class Block:
    """One top-level statement of a library (with the comment lines that follow it)."""

    text: str
    defines: frozenset[str]
    uses: frozenset[str]


def blocks(library: str) -> tuple[str, list[Block]]:
    """The text before the first ``local`` (the header comment), and the blocks."""
    starts = [match.start() for match in _START.finditer(library)]
    if not starts:
        return library, []
    found = []
    for begin, end in zip(starts, [*starts[1:], len(library)], strict=True):
        text = library[begin:end]
        named = _FUNCTION.match(text) or _NAMES.match(text)
        if named is None:
            raise ValueError(f"a library statement this cannot read: {text[:60]!r}")
        defines = frozenset(name.strip() for name in named.group(1).split(","))
        found.append(Block(text, defines, frozenset(_WORD.findall(text)) - defines))
    return library[: starts[0]], found


def needed_prelude(library: str, script: str) -> str:
    """The blocks of ``library`` that ``script`` reaches, in the library's order."""
    header, found = blocks(library)
    wanted = set(_WORD.findall(script))
    keep = [False] * len(found)
    for index in range(len(found) - 1, -1, -1):  # a block only uses blocks before it
        if found[index].defines & wanted:
            keep[index] = True
            wanted |= found[index].uses
    return header + "".join(block.text for block, kept in zip(found, keep, strict=True) if kept)
