"""The query files of the SQL dialects: the same names in each, every name the code asks for
defined, no SQL pasted twice, and the loader's fragments. No server needed."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

from queuebox.backends.postgres import PostgresAdapter
from queuebox.backends.sql import SQLStore, is_empty, load_queries, parse_queries
from queuebox.backends.sqlite import SQLiteAdapter

DIALECTS: list[type[SQLStore]] = [SQLiteAdapter, PostgresAdapter]
_MIGRATION = re.compile(r"migrate_v(?P<number>[0-9]+)")


def _names(dialect: type[SQLStore]) -> set[str]:
    return set(load_queries(str(dialect.query_file)))


def _mixin_queries(dialect: type[SQLStore]) -> dict[type, frozenset[str]]:
    """The queries each optional-interface mixin of ``dialect`` asks for."""
    return {
        klass: vars(klass)["sql_queries"]
        for klass in dialect.__mro__
        if "sql_queries" in vars(klass) and vars(klass)["sql_queries"]
    }


def test_sqlite_and_postgres_define_the_same_query_names() -> None:
    """Only the numbered migrations differ (each dialect has its own schema history), and
    the queries of an optional interface that one dialect declares and the other not yet."""
    sqlite, postgres = (
        {name for name in _names(dialect) if not _MIGRATION.fullmatch(name)} for dialect in DIALECTS
    )
    mixins = [_mixin_queries(dialect) for dialect in DIALECTS]
    own = [
        frozenset().union(*(q for k, q in mine.items() if k not in theirs))
        for mine, theirs in (mixins, mixins[::-1])
    ]
    assert sqlite - postgres - own[0] == set(), "in sqlite.sql only"
    assert postgres - sqlite - own[1] == set(), "in postgres.sql only"


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.__name__)
def test_a_dialect_defines_exactly_the_queries_its_class_asks_for(
    dialect: type[SQLStore],
) -> None:
    required, defined = dialect.required_queries(), _names(dialect)
    assert required - defined == set(), "asked for by the code, missing from the file"
    assert defined - required == set(), "in the file, never asked for"


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.__name__)
def test_migrations_are_numbered_from_one_without_gaps(dialect: type[SQLStore]) -> None:
    numbers = [int(m["number"]) for n in _names(dialect) if (m := _MIGRATION.fullmatch(n))]
    assert sorted(numbers) == list(range(1, len(dialect.migrations) + 1))
    assert list(dialect.migrations) == [f"migrate_v{n}" for n in sorted(numbers)]


@pytest.mark.parametrize("file", ["sqlite.sql", "postgres.sql"])
def test_no_sql_is_pasted_twice_in_a_file(file: str) -> None:
    """Six statement lines in a row never appear twice: shared SQL is a fragment."""
    text = files("queuebox.backends.sql").joinpath(file).read_text("utf-8")
    lines = [line.strip() for line in text.splitlines()]
    code = [line for line in lines if line and not line.startswith("--")]
    seen: dict[tuple[str, ...], int] = {}
    repeated = []
    for start in range(len(code) - 5):
        window = tuple(code[start : start + 6])
        if window in seen and start - seen[window] >= 6:
            repeated.append(window)
        seen.setdefault(window, start)
    assert repeated == [], f"{file} repeats {repeated[:1]}: make it a fragment"


def test_fragments_are_pasted_where_they_are_included() -> None:
    queries = parse_queries(
        "-- fragment: clock\nnow()\n"
        "-- fragment: due\nrun_at <= {% clock %}\n"
        "-- name: claim\nSELECT 1 WHERE {% due %} AND {%due%}\n"
        "-- name: nothing\n-- this dialect needs no statement here\n"
        "\n-- Next section ----------\n"
        "-- name: last\nSELECT 2\n-- a trailing comment of the file\n"
    )
    assert queries == {
        "claim": "SELECT 1 WHERE run_at <= now() AND run_at <= now()",
        "nothing": "-- this dialect needs no statement here",
        "last": "SELECT 2",
    }
    assert is_empty(queries["nothing"]) and not is_empty(queries["claim"])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("-- name: a\nSELECT {% missing %}", "names no fragment"),
        ("-- fragment: a\n{% b %}\n-- fragment: b\n{% a %}\n-- name: q\n{% a %}", "itself"),
        ("-- name: a\nSELECT 1\n-- name: a\nSELECT 2", "twice"),
        ("-- fragment: a\nx\n-- name: a\nSELECT 1", "twice"),
    ],
)
def test_a_broken_file_fails_when_it_is_loaded(text: str, problem: str) -> None:
    with pytest.raises(RuntimeError, match=problem):
        parse_queries(text)
