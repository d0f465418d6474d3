"""The SQL base: job logic written once (``SQLStore``) over named queries, one ``.sql``
file per dialect, shipped in the wheel. SQLite and PostgreSQL are dialects of it;
``docs/sql-base.md`` shows how to write another (MySQL/MariaDB, SQL Server, Oracle).
"""

from __future__ import annotations

from queuebox.backends.sql.extras import SQLCancellation, SQLPipelinedClaims, SQLRecurring
from queuebox.backends.sql.inserts import Stored
from queuebox.backends.sql.queries import is_empty, load_queries, parse_queries
from queuebox.backends.sql.rows import UnreadableColumn, read_records, record_from_row
from queuebox.backends.sql.store import SQLStore
from queuebox.backends.sql.waiting import ChangeCounterWatch, ChangeWatch, Wake

__all__ = [
    "ChangeCounterWatch",
    "ChangeWatch",
    "SQLCancellation",
    "SQLPipelinedClaims",
    "SQLRecurring",
    "SQLStore",
    "Stored",
    "UnreadableColumn",
    "Wake",
    "is_empty",
    "load_queries",
    "parse_queries",
    "read_records",
    "record_from_row",
]
