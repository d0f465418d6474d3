"""The Redis store's URLs: which client they name, and which options are the adapter's.

``redis://``, ``rediss://`` and ``unix://`` name a ``redis.Redis`` client, ``redis+cluster://``
and ``rediss+cluster://`` a ``redis.cluster.RedisCluster``. ``?prefix=`` and
``?registry_ttl=`` are the adapter's own options; every other query parameter goes to
redis-py (see ``docs/redis.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from queuebox.backends.redis_keys import DEFAULT_PREFIX
from queuebox.errors import ConfigurationError, redact_url

__all__ = ["RedisURL", "parse_url"]

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_ADAPTER_OPTIONS = ("prefix", "registry_ttl")
_CLIENT_DEFAULTS = {"socket_connect_timeout": "5", "socket_timeout": "30"}


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A store URL taken apart."""

    #: The URL redis-py's ``from_url`` is given: the adapter's options removed, defaults added.
    client_url: str
    cluster: bool
    prefix: str
    registry_ttl: float | None
    #: The URL as messages show it: no password.
    shown: str


def parse_url(url: str) -> RedisURL:
    """Split a store URL between redis-py and the adapter."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in query if key in _ADAPTER_OPTIONS}
    theirs = dict(_CLIENT_DEFAULTS)
    theirs.update({key: value for key, value in query if key not in _ADAPTER_OPTIONS})
    if scheme == "unix":
        theirs.pop("socket_connect_timeout", None)
    base = _CLUSTER_SCHEMES.get(scheme, scheme)
    client_url = f"{base}://{parts.netloc}{parts.path}?{urlencode(theirs)}"
    registry_ttl = None
    if "registry_ttl" in ours:
        try:
            registry_ttl = float(ours["registry_ttl"])
        except ValueError:
            raise ConfigurationError(
                f"registry_ttl must be a number of seconds in {redact_url(url)}"
            ) from None
    return RedisURL(
        client_url=client_url,
        cluster=scheme in _CLUSTER_SCHEMES,
        prefix=ours.get("prefix", DEFAULT_PREFIX),
        registry_ttl=registry_ttl,
        shown=redact_url(url),
    )
