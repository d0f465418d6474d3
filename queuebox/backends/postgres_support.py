"""Helpers of the PostgreSQL store: URL options, identifiers, the check that an idle
connection is still alive, and the LISTEN connection that wakes waiting workers."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import select
import time
import types
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.adapt import AdaptersMap, Buffer, Transformer
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg.types.datetime import TimestamptzLoader

from queuebox.backends.sql.waiting import ChangeWatch, Wake, sleep_until
from queuebox.errors import ConfigurationError, StorageUnavailable, redact_url

__all__ = [
    "URL_OPTIONS",
    "NotifyWatch",
    "check_identifier",
    "close_quietly",
    "display_url",
    "function_body",
    "identifier",
    "lenient_rows",
    "parse_flag",
    "short_channel",
    "split_url",
    "usable",
]

_log = logging.getLogger("queuebox.backends.postgres")

#: Query parameters of a store URL that configure queuebox; the others go to libpq.
URL_OPTIONS = frozenset({"schema", "table", "wakeup", "prepare"})
_FLAGS = {"1": True, "true": True, "yes": True, "on": True}
_FLAGS |= {"0": False, "false": False, "no": False, "off": False}


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Split queuebox's own query parameters off a URL; a ``key=value`` string has none."""
    if not isinstance(url, str) or "://" not in url:
        return url, {}
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    options = {key: value for key, value in pairs if key in URL_OPTIONS}
    # quote, not quote_plus: libpq reads "+" as a plus sign, not as a space.
    kept = [(key, value) for key, value in pairs if key not in URL_OPTIONS]
    rest = urlencode(kept, quote_via=quote)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), options


def display_url(url: str) -> str:
    """``url`` without its password, for messages."""
    if "://" in url:
        return redact_url(url)
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "<unparsable conninfo>"
    params.pop("password", None)
    return make_conninfo("", **params)


def parse_flag(value: str, option: str = "wakeup") -> bool:
    try:
        return _FLAGS[value.strip().lower()]
    except KeyError:
        raise ConfigurationError(
            f"{option}={value!r} in the PostgreSQL URL: use {option}=on or {option}=off"
        ) from None


def check_identifier(what: str, value: str | None, longest: int) -> None:
    if value is None:
        return
    if not value or len(value.encode()) > longest or "\x00" in value:
        raise ConfigurationError(
            f"the PostgreSQL {what} name {value!r} must be 1 to {longest} bytes long"
        )


def identifier(schema: str | None, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name) if schema else sql.Identifier(name)


_PARAMETER = re.compile(r"%\((?P<name>[a-z_][a-z0-9_]*)\)s")


def function_body(text: str) -> str:
    """``text`` with each ``%(name)s`` parameter read as the PL/pgSQL argument
    ``claim_name``: a function's body is made of the same fragments as the statements the
    adapter binds, so that the SQL of the claim is written once (``sql/postgres.sql``,
    migrate_v6). Run without parameters, psycopg sends the text as it is."""
    return _PARAMETER.sub(lambda match: f"claim_{match.group('name')}", text)


def short_channel(qualified: str) -> str:
    return "queuebox_" + hashlib.sha256(qualified.encode()).hexdigest()[:32]


def usable(conn: psycopg.Connection[Any]) -> bool:
    """``False`` when the server ended this idle session (restart, pg_terminate_backend,
    idle timeout): its farewell is waiting on the socket, so read it before sending."""
    if conn.closed:
        return False
    try:
        for _ in range(4):
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
            if not readable:
                return True
            conn.pgconn.consume_input()
    except (OSError, ValueError, psycopg.Error):
        return False
    return not conn.closed


def close_quietly(conn: psycopg.Connection[Any] | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


class _LenientTimestamptz(TimestamptzLoader):
    """A timestamptz Python cannot hold (``infinity``, ``-infinity``, year 20000) loads as
    its text, which the SQL base then reports as unreadable for that row alone."""

    def load(self, data: Buffer) -> Any:
        try:
            return super().load(data)
        except psycopg.DataError:
            return bytes(data).decode("utf-8", "replace")


def lenient_rows(cursor: psycopg.Cursor[Any]) -> list[DictRow]:
    """The rows of ``cursor``'s result again, loading what Python cannot hold as text.

    Used when ``fetchall`` raised: the result is still there (for a claim, the jobs are
    locked already), so it is read again rather than run again.
    """
    result = cursor.pgresult
    if result is None:  # pragma: no cover - only called after a result failed to load
        return []
    adapters = AdaptersMap(cursor.adapters)
    adapters.register_loader("timestamptz", _LenientTimestamptz)
    context = types.SimpleNamespace(adapters=adapters, connection=cursor.connection)
    transformer = Transformer(context)
    transformer.set_pgresult(result)
    return transformer.load_rows(0, result.ntuples, dict_row(cursor))


class NotifyWatch(ChangeWatch):
    """A connection that LISTENs on the store's channel; every enqueue, retry, release and
    reschedule sends a NOTIFY whose payload is the job's queue. Opened by the first wait;
    when it cannot be opened or breaks, waiting falls back to the due time (polling)."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], listen: sql.Composed):
        super().__init__()
        self._connect, self._listen = connect, listen
        self._listener: psycopg.Connection[Any] | None = None

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def arm(self) -> None:
        """Make sure the listener is there, drained of notifications the due time covers."""
        conn = self._listener
        if conn is not None and usable(conn):
            while conn.pgconn.notifies() is not None:
                pass
            return
        self.close()
        try:
            conn = self._connect()
        except (StorageUnavailable, ConfigurationError) as exc:
            _log.warning("queuebox: cannot LISTEN, polling instead: %s", exc)
            return
        try:
            conn.execute(self._listen)
        except psycopg.Error as exc:
            _log.warning("queuebox: cannot LISTEN, polling instead: %s", exc)
            close_quietly(conn)
            return
        self._listener = conn

    def wait(self, queues: frozenset[str] | None, until: float) -> Wake:
        listener = self._listener
        if listener is None:
            sleep_until(until)
            return Wake.TIMEOUT
        try:
            for note in listener.notifies(timeout=max(0.0, until - time.monotonic())):
                if queues is None or note.payload in queues:
                    return Wake.WORK
        except psycopg.Error as exc:  # return early: the next wait listens again
            _log.warning("queuebox: lost the LISTEN connection: %s", exc)
            self.close()
            return Wake.WORK
        return Wake.TIMEOUT

    def close(self) -> None:
        listener, self._listener = self._listener, None
        close_quietly(listener)
