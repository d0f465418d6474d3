"""The stored form of a job call: JSON ``{"name": ..., "args": [...], "kwargs": {...}}``.

Only JSON goes in and comes out; a payload names a registered job, never code to import.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from queuebox.errors import PayloadError, PayloadTooLarge
from queuebox.json_text import TOO_DEEP, NestedTooDeep, load_json
from queuebox.validation import check_arguments, is_short_int

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "Call", "decode_handler", "encode_handler"]

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN, Infinity and -Infinity, which are not JSON and which
    # encode_handler never writes: a job sees only the finite numbers it was promised.
    raise ValueError(f"{name} is not a JSON value (queuebox stores only finite numbers)")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
#: The decoder's scanner: one JSON value at an index, ``StopIteration`` where there is none.
#: Builds a named tuple from its fields without the keyword-taking ``__new__`` in Python
#: (Call and the worker's Success are built once per run).
_new_tuple = tuple.__new__
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_PREFIXES: dict[str, str] = {}  # job name -> '{"name":<name>,"args":['


class Call(NamedTuple):
    """A decoded payload: the job's name and its arguments. A named tuple, not a frozen
    dataclass: the worker builds one per run, and a frozen dataclass sets each field through
    ``object.__setattr__`` (1.2 against 0.2 us a build)."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]


def encode_handler(
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> str:
    """Validate the arguments and return the handler text, at most ``max_bytes`` of UTF-8."""
    if not kwargs and all(type(value) is int and is_short_int(value) for value in args):
        # The common call, a few ints: what the encoder below writes, without its machinery.
        prefix = _PREFIXES.get(name)
        if prefix is None:
            prefix = '{"name":' + _ENCODER.encode(name) + ',"args":['
            if len(_PREFIXES) < 10_000:
                _PREFIXES[name] = prefix
        text = prefix + ",".join(map(str, args)) + '],"kwargs":{}}'
    else:
        check_arguments(args, kwargs)
        text = _ENCODER.encode({"name": name, "args": list(args), "kwargs": kwargs})
    # A character is at most 4 bytes of UTF-8: short text needs no encoding to be measured.
    size = len(text) if len(text) * 4 <= max_bytes else len(text.encode("utf-8"))
    if size > max_bytes:
        raise PayloadTooLarge(
            f"the arguments of {name} encode to {size} bytes, over the limit of {max_bytes}: "
            "store large data elsewhere and pass its key, or raise max_payload_bytes"
        )
    return text


def _parse(text: str) -> Any:
    """What queuebox wrote is one JSON text with nothing around it: ``raw_decode`` reads it
    without ``json.loads``'s layers (a worker decodes every job it runs). Anything else
    (whitespace around it, bytes, invalid JSON) takes ``json.loads``, whose errors say what
    is wrong."""
    if type(text) is str:
        try:
            data, end = _SCAN(text, 0)  # raw_decode's own call, without its Python frame
        except (StopIteration, ValueError, RecursionError):
            pass  # json.loads below says what is wrong
        else:
            if end == len(text):
                return data
    return load_json(text, parse_constant=_refuse_constant)


def decode_handler(text: str) -> Call:
    """Parse stored handler text; ``PayloadError`` says exactly what is wrong with it."""
    try:
        data = _parse(text)
    except NestedTooDeep:  # a payload the worker fails alone (json_text.py)
        raise PayloadError(f"the stored payload is {TOO_DEEP}") from None
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"the stored payload is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"the stored payload is a JSON {type(data).__name__}, not an object")
    name, args, kwargs = data.get("name"), data.get("args", []), data.get("kwargs", {})
    if not isinstance(name, str) or not name:
        raise PayloadError("the stored payload has no job name (a non-empty string 'name')")
    if not isinstance(args, list):
        raise PayloadError(f"the stored payload's 'args' is a {type(args).__name__}, not a list")
    if not isinstance(kwargs, dict):
        raise PayloadError(
            f"the stored payload's 'kwargs' is a {type(kwargs).__name__}, not an object"
        )
    return _new_tuple(Call, (name, args, kwargs))
