"""The Redis store's URLs: which client they name, and which options are the adapter's.

``redis://``, ``rediss://`` and ``unix://`` name a ``redis.Redis`` client, ``redis+cluster://``
and ``rediss+cluster://`` a ``redis.cluster.RedisCluster``. ``?prefix=`` and
``?registry_ttl=`` are the adapter's own options; every other query parameter goes to
redis-py (see ``docs/redis.md``). Everything that can be checked without a server is checked
here, with a ``ConfigurationError`` that says what is wrong and never shows a password.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from queuebox.backends.redis_keys import DEFAULT_PREFIX, check_prefix
from queuebox.errors import ConfigurationError, redact_url

__all__ = ["SCHEMES", "RedisURL", "parse_url"]

SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_ADAPTER_OPTIONS = ("prefix", "registry_ttl")
_CLIENT_DEFAULTS = {"socket_connect_timeout": "5", "socket_timeout": "30"}
_DATABASE_MAX = 2**31 - 1  # Redis reads SELECT's index as a C int


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A store URL taken apart."""

    #: The URL redis-py's ``from_url`` is given (``RedisCluster``'s too: ``redis://`` or
    #: ``rediss://`` then), the adapter's options removed, defaults added.
    client_url: str
    cluster: bool
    database: int
    prefix: str
    registry_ttl: float | None
    #: The URL as messages show it: no password.
    shown: str


def _number(kind: type[int] | type[float], low: float, what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{what}, not {text!r}") from None
        if not math.isfinite(value) or value < low:
            raise ValueError(f"{what}, not {text!r}")
        return text

    return check


#: redis-py's options whose values the adapter checks here (redis-py itself would fail on
#: them only when it first connects); every other option is checked by building a connection.
_CLIENT_CHECKS: dict[str, Callable[[str], str]] = {
    "socket_timeout": _number(float, 1e-3, "a number of seconds above 0"),
    "socket_connect_timeout": _number(float, 1e-3, "a number of seconds above 0"),
    "timeout": _number(float, 1e-3, "a number of seconds above 0"),
    "health_check_interval": _number(int, 0, "a whole number of seconds, 0 or more"),
    "max_connections": _number(int, 1, "a whole number, 1 or more"),
    "socket_read_size": _number(int, 1, "a whole number of bytes, 1 or more"),
}


def parse_url(url: str) -> RedisURL:
    """Split a store URL between redis-py and the adapter, checking what can be checked."""
    shown = redact_url(url) if isinstance(url, str) else repr(url)

    def bad(what: str) -> ConfigurationError:
        return ConfigurationError(f"bad Redis URL {shown}: {what}")

    if not isinstance(url, str):
        raise bad("give the URL as text")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise bad(f"{exc} (the port is a number from 1 to 65535)") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise bad(f"the scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")
    if port == 0:
        raise bad("the port is a number from 1 to 65535, not 0")
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = _options(query, bad)
    database = _database(scheme, parts.path, options, bad)
    cluster = scheme in _CLUSTER_SCHEMES
    if cluster and database:
        raise bad("Redis Cluster has database 0 only: remove the database from the URL")
    theirs = dict(_CLIENT_DEFAULTS)
    theirs.update({key: value for key, value in query if key not in _ADAPTER_OPTIONS})
    if scheme == "unix":
        theirs.pop("socket_connect_timeout", None)
    base = _CLUSTER_SCHEMES.get(scheme, scheme)
    client_url = f"{base}://{parts.netloc}{parts.path}?{urlencode(theirs)}"
    try:
        prefix = check_prefix(options.get("prefix", DEFAULT_PREFIX))
    except ConfigurationError as exc:
        raise bad(str(exc)) from None
    return RedisURL(
        client_url=client_url,
        cluster=cluster,
        database=database,
        prefix=prefix,
        registry_ttl=_registry_ttl(options, bad),
        shown=shown,
    )


def _options(
    query: list[tuple[str, str]], bad: Callable[[str], ConfigurationError]
) -> dict[str, str]:
    """The URL's options by name, each given once, those the adapter can check checked."""
    options: dict[str, str] = {}
    for key, value in query:
        if key in options:
            raise bad(f"the option {key!r} is given twice")
        options[key] = value
    if options.get("decode_responses", "").lower() not in ("", "0", "f", "false", "n", "no"):
        raise bad("decode_responses cannot be on: the store reads its records as bytes")
    for key, check in _CLIENT_CHECKS.items():
        if key in options:
            try:
                check(options[key])
            except ValueError as exc:
                raise bad(f"{key} must be {exc}") from None
    return options


def _database(
    scheme: str, path: str, options: dict[str, str], bad: Callable[[str], ConfigurationError]
) -> int:
    """The database number of the URL's path (``/0``) or ``?db=``, which must agree."""
    texts = [] if scheme == "unix" else [unquote(path).strip("/")]
    texts = [text for text in texts if text] + ([options["db"]] if "db" in options else [])
    found = set()
    for text in texts:
        if not (text.isascii() and text.isdigit()):
            raise bad(
                f"{text!r} is not a database number: give one from 0 (redis://host:6379/0, "
                "or ?db=0 for unix:// URLs)"
            )
        found.add(int(text))
    if len(found) > 1:
        raise bad(f"the path and ?db= name two databases ({' and '.join(texts)})")
    database = found.pop() if found else 0
    if database > _DATABASE_MAX:
        raise bad(
            f"there is no database {database}: a server's are numbered from 0 "
            "(0 to 15 unless its databases setting says otherwise)"
        )
    return database


def _registry_ttl(
    options: dict[str, str], bad: Callable[[str], ConfigurationError]
) -> float | None:
    if "registry_ttl" not in options:
        return None
    try:
        ttl = float(options["registry_ttl"])
    except ValueError:
        ttl = math.nan
    if not math.isfinite(ttl) or ttl < 0:
        raise bad("registry_ttl must be a number of seconds, 0 or more")
    return ttl
