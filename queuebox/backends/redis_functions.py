"""The Redis Functions library of the queue scripts (Redis 7 and later).

``EVALSHA`` runs a script's whole top level on every call, and for a queue script that is the
library prelude: dozens of ``local function`` closures created again per call, a third of a
one-job enqueue's server time even trimmed to what the script reaches (``redis_prelude``).
Loaded once with ``FUNCTION LOAD``, the libraries' closures are built once; each queue script
is registered as a function of that library, ``FCALL``\\ ed with the same keys and arguments
and running the same text, opened by ``bind(KEYS)`` as under ``EVALSHA``.

The library's name carries a digest of its text, so processes of different queuebox versions
on one server each find their own. A server without Functions (Redis 6.2), or one that
refuses to load them (ACL rules, a Lua limit), gets ``EVALSHA`` of the same scripts instead:
``ScriptRunner`` decides once per process, from the server's answer to ``FUNCTION LOAD``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

__all__ = ["Library", "build_library", "is_missing", "load_library"]

_NOT_FOUND = "Function not found"
_EXISTS = "already exists"


@dataclass(frozen=True, slots=True)
class Library:
    """The source ``FUNCTION LOAD`` takes, and the function name of each queue script."""

    name: str
    source: str
    functions: Mapping[str, str]
    probe: str  # a function that answers 1 where the library's functions can run


def build_library(libraries: str, bodies: Mapping[str, str]) -> Library:
    """The library of ``libraries`` (the Lua libraries' text, whole) with one function per
    script of ``bodies`` (script name -> its own file's text), named after a digest of the
    whole source: a server that holds a library of that name holds this one."""
    # A function that uses what the scripts use (cmsgpack): a server that loads the library
    # but cannot run it (fakeredis's Lua has no modules in functions) answers with an error.
    parts = [libraries, _register("probe", "", "return cmsgpack.unpack(cmsgpack.pack(1))")]
    parts += [_register(name, "KEYS, ARGV", f"bind(KEYS)\n{body}") for name, body in bodies.items()]
    template = "".join(parts)
    digest = hashlib.sha1(template.encode(), usedforsecurity=False).hexdigest()[:16]
    library = f"queuebox_{digest}"
    source = f"#!lua name={library}\n" + template.replace(_NAME, library)
    functions = {name: f"{library}_{name}" for name in bodies}
    return Library(library, source, functions, f"{library}_probe")


_NAME = "@LIBRARY@"  # the library's name in the template, once the digest is known


def _register(name: str, parameters: str, body: str) -> str:
    return f"\nredis.register_function('{_NAME}_{name}', function({parameters})\n{body}\nend)\n"


def is_missing(reply: object) -> bool:
    """Whether a reply says the script or function called is not on the server (a restart,
    a failover, ``SCRIPT FLUSH``, ``FUNCTION FLUSH``): the call never ran."""
    return isinstance(reply, NoScriptError) or (
        isinstance(reply, ResponseError) and _NOT_FOUND in str(reply)
    )


def load_library(client: Any, library: Library) -> bool:
    """Load ``library`` through ``client`` (every primary of a cluster); whether the server
    holds it and can run it now. A refusal (no such command, no permission, a Lua error) is
    ``False``; a server that cannot be reached raises."""
    try:
        client.function_load(library.source)
    except ResponseError as exc:
        if _EXISTS not in str(exc):
            return False
    try:
        return bool(client.fcall(library.probe, 0) == 1)
    except ResponseError:
        return False


async def aload_library(client: Any, library: Library) -> bool:
    """``load_library`` through an asyncio client."""
    try:
        await client.function_load(library.source)
    except ResponseError as exc:
        if _EXISTS not in str(exc):
            return False
    try:
        return bool(await client.fcall(library.probe, 0) == 1)
    except ResponseError:
        return False
