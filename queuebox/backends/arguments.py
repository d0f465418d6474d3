"""Checks of the arguments a store's constructor takes from Python code (a URL's options are
checked where it is parsed): a wrong type fails when the store is built, naming the argument,
rather than deep inside the first call, or, worse, not at all (``wakeup="off"`` is a true
string and would have left wake-ups on)."""

from __future__ import annotations

import math
from typing import Any

from queuebox.errors import ConfigurationError

__all__ = ["check_flag", "check_seconds", "check_text"]


def check_flag(owner: str, name: str, value: Any) -> None:
    """``value`` is ``True``, ``False`` or ``None`` (the URL's or the default)."""
    if value is not None and not isinstance(value, bool):
        raise ConfigurationError(f"{owner}: {name}={value!r} must be True, False or None")


def check_text(owner: str, name: str, value: Any, *, optional: bool = False) -> None:
    """``value`` is a string (or ``None`` where ``optional``)."""
    if optional and value is None:
        return
    if not isinstance(value, str):
        what = "a string or None" if optional else "a string"
        raise ConfigurationError(
            f"{owner}: {name} must be {what}, not {type(value).__name__} ({value!r:.80})"
        )


def check_seconds(owner: str, name: str, value: Any, *, above_zero: bool = False) -> float:
    """``value`` as a float: a finite number of seconds, >= 0 (> 0 where ``above_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"{owner}: {name} must be a number of seconds, not {type(value).__name__}"
        )
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (above_zero and seconds == 0):
        bound = "above 0" if above_zero else ">= 0"
        raise ConfigurationError(f"{owner}: {name} must be a finite number {bound}, not {value!r}")
    return seconds
