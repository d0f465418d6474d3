"""Helpers of the PostgreSQL store that hold no state: URL options, identifiers, job ids,
rows to records, and the check that an idle connection is still alive."""

from __future__ import annotations

import contextlib
import hashlib
import re
import select
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow

from queuebox.backends.base import JobRecord, record_from_row
from queuebox.errors import ConfigurationError, redact_url

__all__ = [
    "URL_OPTIONS",
    "check_identifier",
    "close_quietly",
    "display_url",
    "fetch_one",
    "identifier",
    "parse_flag",
    "parse_job_id",
    "short_channel",
    "sleep_until",
    "split_url",
    "to_record",
    "to_utc",
    "usable",
]

#: Query parameters of a store URL that configure queuebox; the others go to libpq.
URL_OPTIONS = frozenset({"schema", "table", "wakeup"})
_MAX_ID = 2**63 - 1
_ID = re.compile(r"[0-9]{1,19}")
_FLAGS = {"1": True, "true": True, "yes": True, "on": True}
_FLAGS |= {"0": False, "false": False, "no": False, "off": False}


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Split queuebox's own query parameters off a URL; a ``key=value`` string has none."""
    if not isinstance(url, str) or "://" not in url:
        return url, {}
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    options = {key: value for key, value in pairs if key in URL_OPTIONS}
    rest = urlencode([(key, value) for key, value in pairs if key not in URL_OPTIONS])
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


def parse_flag(value: str) -> bool:
    try:
        return _FLAGS[value.strip().lower()]
    except KeyError:
        raise ConfigurationError(
            f"wakeup={value!r} in the PostgreSQL URL: use wakeup=on or wakeup=off"
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


def sleep_until(deadline: float) -> None:
    threading.Event().wait(max(0.0, deadline - time.monotonic()))


def fetch_one(cursor: psycopg.Cursor[DictRow]) -> DictRow:
    row = cursor.fetchone()
    if row is None:  # pragma: no cover - these queries always return a row
        raise RuntimeError("the query returned no row")
    return row


def parse_job_id(job_id: object) -> int | None:
    if not isinstance(job_id, str) or not _ID.fullmatch(job_id):
        return None
    key = int(job_id)
    return key if 0 < key <= _MAX_ID else None


def to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def to_record(row: DictRow, *, with_token: bool = False) -> JobRecord:
    return record_from_row(row, to_utc, with_token=with_token)
