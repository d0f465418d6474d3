"""Where settings come from, in order, and the errors for bad ones."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

import queuebox
from queuebox import config
from queuebox.backends import from_url
from queuebox.backends.memory import MemoryAdapter
from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.errors import (
    BackendNotAvailable,
    ConfigurationError,
    redact_text,
    redact_url,
    scrub,
    url_secrets,
)
from queuebox.runner.settings import WorkerSettings, parse_worker_spec


def test_default_is_the_embedded_sqlite_store(tmp_path: Path) -> None:
    settings = config.get_settings()
    assert settings.url == "sqlite:///queuebox.db"
    assert settings.sources == {}
    assert settings.workers == (WorkerSettings(),)
    assert settings.workers[0].queues is None and settings.workers[0].count == 1


def test_worker_defaults_follow_redwood() -> None:
    group = WorkerSettings()
    assert (group.max_attempts, group.max_runtime, group.sleep_delay) == (24, 14400, 5)
    assert group.delete_successful_jobs is True and group.delete_failed_jobs is False


def test_precedence_code_then_cli_then_env_then_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.queuebox]\nurl = "memory://file"\napp = ["from_file"]\n'
    )
    assert config.get_settings().url == "memory://file"
    assert config.get_settings().app == ("from_file",)
    monkeypatch.setenv("QUEUEBOX_URL", "memory://env")
    monkeypatch.setenv("QUEUEBOX_APP", "a.b, c")
    config.reset()
    assert config.get_settings().url == "memory://env"
    assert config.get_settings().app == ("a.b", "c")
    config.set_command_line(url="memory://cli")
    assert config.get_settings().url == "memory://cli"
    assert config.get_settings().sources["url"] == "command line"
    queuebox.configure(url="memory://code")
    assert config.get_settings().url == "memory://code"
    assert config.get_settings().sources == {"url": "configure()", "app": "environment"}


def test_queuebox_toml_in_a_parent_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "queuebox.toml").write_text(
        'url = "memory://"\nrun_dir = "run"\n'
        '[[workers]]\nqueue = "email"\ncount = 2\nmax_attempts = 5\n'
        '[[workers]]\nqueue = "*"\n'
    )
    nested = tmp_path / "src" / "pkg"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    settings = config.get_settings()
    assert settings.url == "memory://"
    assert settings.run_dir == tmp_path / "run"
    email, everything = settings.workers
    assert (email.queues, email.count, email.max_attempts) == (("email",), 2, 5)
    assert everything.queues is None and everything.count == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('urll = "memory://"', "unknown setting(s) urll"),
        ('url = "nowhere"', "not a store URL"),
        ("url = 5", "not a store URL"),
        ('app = ["not a module"]', "not a Python module name"),
        ("max_payload_bytes = 1", "max_payload_bytes=1"),
        ('workers = "lots"', "array of tables"),
        ('[[workers]]\nqueue = "a b"', "not valid"),
        ("[[workers]]\ncount = 0", "count=0"),
        ("[[workers]]\nsleep_delay = -1", "sleep_delay=-1"),
        ("[[workers]]\ncolour = 1", "unknown worker setting(s) colour"),
        # A string is truthy: "false" kept deleting the jobs it was meant to keep.
        ('[[workers]]\ndelete_failed_jobs = "false"', "delete_failed_jobs='false' is not valid"),
        ("[[workers]]\ndelete_successful_jobs = 0", "delete_successful_jobs=0 is not valid"),
        ('[[workers]]\nclaim_ahead = "no"', "claim_ahead='no' is not valid"),
        ('[[workers]]\nrecord_stats = "yes"', "record_stats='yes' is not valid"),
        ("url = [", "cannot read"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "queuebox.toml").write_text(text + "\n")
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        config.get_settings()


def test_configure_with_an_adapter(memory_store: MemoryAdapter) -> None:
    assert config.get_adapter() is memory_store


def test_the_command_line_keeps_an_adapter_configured_in_code(
    memory_store: MemoryAdapter,
) -> None:
    config.set_command_line(url="redis://:hunter2@elsewhere/0", app=("myapp",))
    assert config.get_adapter() is memory_store, "configure() in code wins"
    assert config.describe_store() == f"{memory_store!r} (configured in code)"
    assert config.get_settings().app == ("myapp",)


def test_describe_store_names_the_url_without_secrets() -> None:
    config.set_command_line(url="redis://:hunter2@host/0?password=hunter2")
    assert config.describe_store() == "redis://:***@host/0?password=***"


def test_close_adapter_closes_a_store_queuebox_did_not_build() -> None:
    class Counting(MemoryAdapter):
        closes = 0

        def close(self) -> None:
            Counting.closes += 1

    adapter = Counting()
    queuebox.configure(adapter=adapter)
    config.close_adapter()
    assert Counting.closes == 1 and config.get_adapter() is adapter
    config.reset()
    assert Counting.closes == 1, "reset() closes only what queuebox built"
    built = config.get_adapter()
    config.close_adapter()
    assert config.get_adapter() is not built, "one queuebox built is rebuilt on next use"


def test_relative_sqlite_paths_in_a_config_file_are_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "a b?c#d"
    (folder / "var").mkdir(parents=True)
    (folder / "queuebox.toml").write_text('url = "sqlite:///var/jobs.db"\n')
    nested = folder / "sub"
    nested.mkdir()
    monkeypatch.chdir(nested)
    settings = config.get_settings()
    assert settings.config_file == folder / "queuebox.toml"
    adapter = config.get_adapter()
    assert isinstance(adapter, SQLiteAdapter) and adapter.path == folder / "var" / "jobs.db"
    (folder / "queuebox.toml").write_text("app = []\n")  # the default store: beside it too
    config.reset()
    default = config.get_adapter()
    assert isinstance(default, SQLiteAdapter) and default.path == folder / "queuebox.db"
    monkeypatch.setenv("QUEUEBOX_URL", "sqlite:///here.db")  # not from the file: as given
    config.reset()
    assert config.get_settings().url == "sqlite:///here.db"
    (folder / "queuebox.toml").write_text('url = "sqlite:////abs/x.db"\n')
    monkeypatch.delenv("QUEUEBOX_URL")
    config.reset()
    assert config.get_settings().url == "sqlite:////abs/x.db"


def test_configure_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        queuebox.configure(url="memory://", adapter=MemoryAdapter())
    with pytest.raises(ConfigurationError, match="Adapter instance"):
        queuebox.configure(adapter="memory://")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"logging\.Logger"):
        queuebox.configure(logger="queuebox")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not a store URL"):
        queuebox.configure(url="queuebox.db")


def test_configure_logger() -> None:
    logger = logging.getLogger("my-app.jobs")
    queuebox.configure(logger=logger)
    assert config.get_logger() is logger


def test_from_url_schemes() -> None:
    assert isinstance(from_url("memory://"), MemoryAdapter)
    with pytest.raises(ConfigurationError, match="unknown store URL scheme 'mysql'"):
        from_url("mysql://user:pw@host/db")
    with pytest.raises(ConfigurationError, match="not a store URL"):
        from_url("queuebox.db")


def test_unknown_scheme_error_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_url("amqp://user:hunter2@host/vhost")
    assert "hunter2" not in str(caught.value)
    assert "user:***@host" in str(caught.value)


def test_a_missing_client_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_psycopg(name: str, *args: object, **kwargs: object) -> object:
        if name == "psycopg" or name.startswith("psycopg."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.delitem(__import__("sys").modules, "queuebox.backends.postgres", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    with pytest.raises(BackendNotAvailable, match=r"pip install 'queuebox\[postgres\]'"):
        from_url("postgresql://localhost/db")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("postgresql://u:s3cret@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("postgresql://u:s3cret@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
        ("redis://host/0?password=s3cret", "redis://host/0?password=***"),
        ("redis://host/0?db=1&PASSWORD=s3cret&x=1", "redis://host/0?db=1&PASSWORD=***&x=1"),
        ("postgresql://u@h/db?password=s3cret", "postgresql://u@h/db?password=***"),
        ("postgresql://u@h/db?sslpassword=s3cret", "postgresql://u@h/db?sslpassword=***"),
        ("postgresql:///db?host=/run&passwd=s3cret", "postgresql:///db?host=/run&passwd=***"),
        ("mysql://h/db?pass=s3cret&pwd=s3cret", "mysql://h/db?pass=***&pwd=***"),
        ("amqp://h/?auth_token=s3cret", "amqp://h/?auth_token=***"),
        ("redis://:p%40ss%3Aword@host/0", "redis://:***@host/0"),
        ("host=db password=s3cret dbname=x", "host=db password=*** dbname=x"),
        ("host=db password = 's3 c\\'ret' user=u", "host=db password = *** user=u"),
        ("sqlite:///queuebox.db", "sqlite:///queuebox.db"),
        ("sqlite:////abs/q.db?busy_timeout=5", "sqlite:////abs/q.db?busy_timeout=5"),
        ("redis://user@host/0?passfile=/x", "redis://user@host/0?passfile=/x"),
    ],
)
def test_redact_url_hides_every_place_a_password_sits(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "s3" not in redact_url(url) and "p%40ss" not in redact_url(url)


def test_secrets_are_scrubbed_from_text_about_a_url() -> None:
    url = "redis://:p%40ss@h/0?password=other"
    assert url_secrets(url) == ["p%40ss", "other", "p@ss"]
    message = "auth failed for p@ss (also tried other) at redis://:p%40ss@h/0?password=other"
    assert (
        scrub(message, url)
        == "auth failed for *** (also tried ***) at redis://:***@h/0?password=***"
    )
    assert redact_text("Store('mysql://root:hunter2@db/x', pool=2)") == (
        "Store('mysql://root:***@db/x', pool=2)"
    )
    assert redact_text("Store('host=db password=hunter2', token=abc)") == (
        "Store('host=db password=***', token=***)"
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("4", [(None, 4)]),
        ("default:2,email:1", [(("default",), 2), (("email",), 1)]),
        ("*:3", [(None, 3)]),
        (" a : 1 , b:2 ", [(("a",), 1), (("b",), 2)]),
    ],
)
def test_worker_spec(spec: str, expected: list[tuple[tuple[str, ...] | None, int]]) -> None:
    groups = parse_worker_spec(spec, WorkerSettings(max_attempts=3))
    assert [(g.queues, g.count) for g in groups] == expected
    assert all(g.max_attempts == 3 for g in groups)


@pytest.mark.parametrize("spec", ["0", "-1", "a", "a:0", "a:x", ":2", "a:1,,b:2", "a b:1", ""])
def test_bad_worker_spec(spec: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_worker_spec(spec, WorkerSettings())
