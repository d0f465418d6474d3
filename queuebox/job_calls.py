"""Checking a call against ``perform``'s signature at enqueue time, so that a call that can
never run (a missing or unexpected argument) is refused at ``perform_later`` instead of
failing 24 times over two weeks in a worker.

The check is built once per job class; for the common signature (plain positional
parameters, no defaults) a call with the right number of positional arguments costs one
length comparison.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from queuebox.errors import InvalidArguments

if TYPE_CHECKING:
    from queuebox.job import Job

__all__ = ["CallCheck", "call_check", "perform_signature"]

#: Raises ``InvalidArguments`` for ``(args, kwargs)`` that ``perform`` cannot take.
CallCheck = Callable[[tuple[Any, ...], dict[str, Any]], None]


def perform_signature(job_class: type[Job]) -> inspect.Signature:
    """What a call of the job takes: the decorated function's signature for
    ``@queuebox.job``, else ``perform``'s without ``self``."""
    function: Callable[..., Any] | None = getattr(job_class, "__wrapped_function__", None)
    if function is not None:
        return inspect.signature(function)
    signature = inspect.signature(job_class.perform)
    parameters = list(signature.parameters.values())[1:]  # self
    return signature.replace(parameters=parameters)


def call_check(job_class: type[Job]) -> CallCheck:
    try:
        signature = perform_signature(job_class)
    except (TypeError, ValueError):  # a callable without a readable signature: accept all
        return _accept_all
    parameters = list(signature.parameters.values())
    plain = all(
        parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        and parameter.default is inspect.Parameter.empty
        for parameter in parameters
    )
    count = len(parameters)
    name = job_class.name
    shown = signature.replace(
        parameters=[p.replace(annotation=inspect.Parameter.empty) for p in parameters],
        return_annotation=inspect.Signature.empty,
    )

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if plain and not kwargs and len(args) == count:
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(
                f"{name} cannot be called with these arguments: {exc}; its perform takes {shown}"
            ) from None

    return check


def _accept_all(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    return None
