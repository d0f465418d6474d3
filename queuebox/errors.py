"""Every error queuebox raises, in one hierarchy.

::

    QueueboxError
    ├── ValidationError            bad input at the API; nothing was stored
    │   ├── InvalidQueueName
    │   ├── InvalidPriority
    │   ├── InvalidSchedule        wait / wait_until
    │   ├── InvalidArguments       an argument that is not a JSON value
    │   └── PayloadTooLarge
    ├── ConfigurationError         unknown URL scheme, missing app module, bad settings
    │   └── BackendNotAvailable    a store whose extra is not installed
    ├── DuplicateJobName           two job classes registered under one name
    ├── UnknownJob                 a stored job names no registered job
    ├── PayloadError               a stored payload that cannot be decoded
    ├── StorageUnavailable         the store cannot be reached (password hidden)
    └── LockLost                   a worker's lock was taken over by another worker

Messages say what was wrong and how to fix it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = [
    "BackendNotAvailable",
    "ConfigurationError",
    "DuplicateJobName",
    "InvalidArguments",
    "InvalidPriority",
    "InvalidQueueName",
    "InvalidSchedule",
    "LockLost",
    "PayloadError",
    "PayloadTooLarge",
    "QueueboxError",
    "StorageUnavailable",
    "UnknownJob",
    "ValidationError",
    "is_secret_key",
    "redact_text",
    "redact_url",
    "scrub",
    "url_secrets",
]


class QueueboxError(Exception):
    """Root of every error queuebox raises on purpose."""


class ValidationError(QueueboxError, ValueError):
    """Input rejected at the API; nothing was stored."""


class InvalidQueueName(ValidationError):
    pass


class InvalidPriority(ValidationError):
    pass


class InvalidSchedule(ValidationError):
    pass


class InvalidArguments(ValidationError, TypeError):
    pass


class PayloadTooLarge(ValidationError):
    pass


class ConfigurationError(QueueboxError):
    pass


class BackendNotAvailable(ConfigurationError):
    pass


class DuplicateJobName(QueueboxError):
    pass


class UnknownJob(QueueboxError):
    pass


class PayloadError(QueueboxError):
    pass


class StorageUnavailable(QueueboxError):
    """The store could not be reached. ``url`` never holds a password."""

    def __init__(self, message: str, url: str | None = None) -> None:
        self.url = redact_url(url) if url else None
        super().__init__(message if self.url is None else f"{message} (store: {self.url})")


class LockLost(QueueboxError):
    pass


#: Query parameters (and libpq ``key=value`` settings) whose value is a secret, compared
#: without case, ``-`` or ``_``: drivers take a password from any of these.
_SECRET_KEYS = frozenset({"password", "passwd", "pass", "pwd", "sslpassword", "auth", "apikey"})
_SECRET_WORDS = ("password", "passwd", "secret", "token")
_REDACTED = "***"


def _secret_setting(bare_value: str) -> re.Pattern[str]:
    """``password=...`` and the like; a value is quoted libpq-style, or runs while
    ``bare_value`` matches."""
    return re.compile(
        r"(?P<key>\b[A-Za-z_]*(?:password|passwd|secret|token)[A-Za-z_]*|\bpass|\bpwd)"
        rf"(?P<eq>\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|{bare_value})",
        re.IGNORECASE,
    )


#: In a libpq ``key=value`` string a bare value runs to the next space; in free text (a
#: repr, a message) it also ends at the punctuation around it.
_CONNINFO_SECRET = _secret_setting(r"[^\s']*")
_TEXT_SECRET = _secret_setting(r"[^\s'\",;)\]}]*")
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*")


def is_secret_key(key: str) -> bool:
    """Whether a URL query parameter or libpq setting named ``key`` holds a secret."""
    folded = unquote(key).lower().replace("-", "").replace("_", "")
    return folded in _SECRET_KEYS or any(word in folded for word in _SECRET_WORDS)


def redact_url(url: str) -> str:
    """Return ``url`` with every secret in it replaced by ``***``.

    That covers the password of the userinfo (``redis://:pw@host``,
    ``postgresql://user:pw@h1,h2/db``), query parameters that carry one (``?password=``,
    ``passwd``, ``pass``, ``sslpassword``, anything named like a password, secret or token),
    and a libpq ``key=value`` string given instead of a URL (``host=db password=pw``).
    """
    if "://" not in url:
        return _CONNINFO_SECRET.sub(_hide_conninfo_value, url)
    scheme, netloc, path, query, fragment = _split(url)
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{_REDACTED}@{hosts}"
    if query is not None:
        path += "?" + "&".join(_hide_query_pair(pair) for pair in query.split("&"))
    if fragment is not None:
        path += "#" + "&".join(_hide_query_pair(pair) for pair in fragment.split("&"))
    return f"{scheme}://{netloc}{path}"


def redact_text(text: str) -> str:
    """``text`` (an error message, a repr) with the secrets of every URL in it hidden, and
    every ``password=...``-like setting (libpq's ``key=value`` form) too."""
    text = _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), text)
    return _TEXT_SECRET.sub(_hide_conninfo_value, text)


def url_secrets(url: str) -> list[str]:
    """The secret values ``url`` holds, raw and percent-decoded, longest first: to scrub them
    from a message a driver wrote about the URL (which may quote them in any form)."""
    found: list[str] = []
    if "://" not in url:
        found += [_unquote_conninfo(m.group("value")) for m in _CONNINFO_SECRET.finditer(url)]
    else:
        _, netloc, _, query, fragment = _split(url)
        userinfo, at, _ = netloc.rpartition("@")
        if at and ":" in userinfo:
            found.append(userinfo.partition(":")[2])
        for section in (query or "", fragment or ""):
            for pair in section.split("&"):
                key, eq, value = pair.partition("=")
                if eq and is_secret_key(key):
                    found.append(value)
    values = {text for value in found for text in (value, unquote(value)) if text}
    return sorted(values, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` (and of any URL in it) replaced by ``***``."""
    for secret in url_secrets(url):
        text = text.replace(secret, _REDACTED)
    return redact_text(text)


def _split(url: str) -> tuple[str, str, str, str | None, str | None]:
    """``scheme, netloc, path, query, fragment`` of ``scheme://...``, cut by hand so that the
    URL is rebuilt exactly as written (``urlunsplit`` drops an empty host, ``sqlite:///x``)."""
    scheme, _, rest = url.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    before, hash_sign, fragment = tail.partition("#")
    path, question, query = before.partition("?")
    return scheme, netloc, path, query if question else None, fragment if hash_sign else None


def _hide_query_pair(pair: str) -> str:
    key, eq, value = pair.partition("=")
    return f"{key}={_REDACTED}" if eq and value and is_secret_key(key) else pair


def _hide_conninfo_value(match: re.Match[str]) -> str:
    return f"{match.group('key')}{match.group('eq')}{_REDACTED}"


def _unquote_conninfo(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value
