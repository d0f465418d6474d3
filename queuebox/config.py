"""Configuration: where jobs are stored, which modules define them, how workers run.

Each setting comes from the first of these that gives it:

1. ``queuebox.configure(...)`` in code;
2. the command line (``--url``, ``--app``);
3. the environment (``QUEUEBOX_URL``, ``QUEUEBOX_APP``);
4. ``[tool.queuebox]`` in ``pyproject.toml``, or ``queuebox.toml``, found in the current
   directory or the nearest parent that has one;
5. the embedded default, ``sqlite:///queuebox.db``.

An adapter given to ``configure(adapter=...)`` is the store, whatever URL the other sources
name. A relative SQLite path in a config file (and the default one, when a config file is
found) is relative to that file's folder, so a command run from a subfolder acts on the same
file as one run beside the config.

Nothing is read at import time: the first use resolves the settings, and ``configure`` or
``reset`` start again.
"""

from __future__ import annotations

import logging
import os
import threading
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from queuebox.backends import from_url
from queuebox.backends.base import Adapter
from queuebox.errors import ConfigurationError, redact_text, redact_url
from queuebox.payload import DEFAULT_MAX_PAYLOAD_BYTES
from queuebox.runner.settings import WorkerSettings

__all__ = [
    "DEFAULT_URL",
    "HOOK_EVENTS",
    "Settings",
    "add_hook",
    "close_adapter",
    "configure",
    "describe_store",
    "get_adapter",
    "get_hooks",
    "get_logger",
    "get_settings",
    "reset",
    "set_command_line",
]

DEFAULT_URL = "sqlite:///queuebox.db"
#: Lifecycle events a global hook can follow; see ``add_hook``.
HOOK_EVENTS = ("before_perform", "after_perform", "after_success", "after_failure")
_FILE_KEYS = {"url", "app", "max_payload_bytes", "workers", "run_dir"}


@dataclass(frozen=True)
class Settings:
    """The resolved configuration. ``sources`` says where each value came from."""

    url: str = DEFAULT_URL
    app: tuple[str, ...] = ()
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    workers: tuple[WorkerSettings, ...] = (WorkerSettings(),)
    #: Where ``start`` keeps pid files and logs: beside the config file, or the cwd.
    run_dir: Path = Path(".queuebox")
    sources: dict[str, str] = field(default_factory=dict)
    #: The config file read (``queuebox.toml`` or ``pyproject.toml``), if one was found.
    config_file: Path | None = None


@dataclass
class _State:
    code: dict[str, Any] = field(default_factory=dict)
    command_line: dict[str, Any] = field(default_factory=dict)
    adapter: Adapter | None = None
    adapter_is_ours: bool = False
    logger: logging.Logger | None = None
    settings: Settings | None = None
    hooks: dict[str, list[Callable[..., object]]] = field(default_factory=dict)


_state = _State()
_QUEUEBOX_LOGGER = logging.getLogger("queuebox")
_lock = threading.RLock()


def configure(
    *,
    url: str | None = None,
    adapter: Adapter | None = None,
    logger: logging.Logger | None = None,
    app: str | Sequence[str] | None = None,
    max_payload_bytes: int | None = None,
) -> None:
    """Set configuration in code; it wins over every other source.

    Give ``url`` (the store is built on first use) or ``adapter`` (an instance), not both.
    """
    if url is not None and adapter is not None:
        raise ConfigurationError("configure() takes url= or adapter=, not both")
    if adapter is not None and not isinstance(adapter, Adapter):
        raise ConfigurationError(
            f"adapter={adapter!r} is not a queuebox.backends.base.Adapter instance"
        )
    if logger is not None and not isinstance(logger, logging.Logger):
        raise ConfigurationError(f"logger={logger!r} is not a logging.Logger")
    with _lock:
        if url is not None:
            _state.code["url"] = _check_url(url, "configure(url=...)")
        if app is not None:
            _state.code["app"] = _app_tuple(app, "configure(app=...)")
        if max_payload_bytes is not None:
            _state.code["max_payload_bytes"] = _check_max_payload(max_payload_bytes)
        if logger is not None:
            _state.logger = logger
        if url is not None or adapter is not None:
            _drop_adapter()
        if adapter is not None:
            _state.adapter, _state.adapter_is_ours = adapter, False
        _state.settings = None


def set_command_line(*, url: str | None = None, app: Sequence[str] = ()) -> None:
    """Record ``--url`` / ``--app``; called by the CLI only.

    An adapter given to ``configure(adapter=...)`` stays the store: code wins.
    """
    with _lock:
        if url:
            _state.command_line["url"] = _check_url(url, "--url")
        if app:
            _state.command_line["app"] = _app_tuple(app, "--app")
        if _state.adapter_is_ours:
            _drop_adapter()  # built from a URL that may have just changed
        _state.settings = None


def add_hook(event: str, hook: Callable[..., object]) -> None:
    """Call ``hook`` at a lifecycle event of every job, after the job's own hook.

    ``before_perform``, ``after_perform`` and ``after_success`` hooks receive the job
    instance; ``after_failure`` hooks receive the job and the exception. A ``before_perform``
    hook that raises fails the attempt; an ``after_*`` hook that raises is logged and does not
    change the job's outcome.
    """
    if event not in HOOK_EVENTS:
        raise ConfigurationError(
            f"unknown hook event {event!r}; use one of {', '.join(HOOK_EVENTS)}"
        )
    if not callable(hook):
        raise ConfigurationError(f"hook {hook!r} is not callable")
    with _lock:
        _state.hooks.setdefault(event, []).append(hook)


def get_hooks(event: str) -> tuple[Callable[..., object], ...]:
    return tuple(_state.hooks.get(event, ()))


def reset() -> None:
    """Forget every setting and close the store queuebox opened (tests use this)."""
    with _lock:
        _drop_adapter()
        _state.code.clear()
        _state.command_line.clear()
        _state.logger = None
        _state.settings = None
        _state.hooks.clear()


def get_settings() -> Settings:
    settings = _state.settings  # resolved once: the common case needs no lock
    if settings is not None:
        return settings
    with _lock:
        if _state.settings is None:
            _state.settings = _resolve()
        return _state.settings


def get_adapter() -> Adapter:
    """The configured store, built from the URL on first use."""
    adapter = _state.adapter  # built once: the common case (every enqueue) needs no lock
    if adapter is not None:
        return adapter
    with _lock:
        if _state.adapter is None:
            _state.adapter = from_url(get_settings().url)
            _state.adapter_is_ours = True
        return _state.adapter


def describe_store() -> str:
    """Which store the commands act on, for people: the URL with its secrets hidden, or the
    repr of an adapter given to ``configure(adapter=...)``. Builds nothing."""
    with _lock:
        adapter = _state.adapter
        if adapter is not None and not _state.adapter_is_ours:
            return f"{redact_text(repr(adapter))} (configured in code)"
        return redact_url(get_settings().url)


def close_adapter() -> None:
    """Close the store in use, whoever built it (the command line does so at exit). One that
    queuebox built from a URL is forgotten too; one given to ``configure`` stays configured
    (adapters reconnect when used again)."""
    with _lock:
        adapter, ours = _state.adapter, _state.adapter_is_ours
        if adapter is None:
            return
        if ours:
            _drop_adapter()
        else:
            adapter.close()


def get_logger() -> logging.Logger:
    return _state.logger or _QUEUEBOX_LOGGER  # (getLogger takes a lock: not per enqueue)


def _drop_adapter() -> None:
    if _state.adapter is not None and _state.adapter_is_ours:
        _state.adapter.close()
    _state.adapter, _state.adapter_is_ours = None, False


def _resolve() -> Settings:
    file_values, file_path = _read_config_file(Path.cwd())
    env_values: dict[str, Any] = {}
    if os.environ.get("QUEUEBOX_URL"):
        env_values["url"] = _check_url(os.environ["QUEUEBOX_URL"], "QUEUEBOX_URL")
    if os.environ.get("QUEUEBOX_APP"):
        env_values["app"] = _app_tuple(os.environ["QUEUEBOX_APP"], "QUEUEBOX_APP")
    layers = [
        ("configure()", _state.code),
        ("command line", _state.command_line),
        ("environment", env_values),
        (str(file_path), file_values),
    ]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for key, value in layer.items():
            if key not in values:
                values[key], sources[key] = value, source
    base_dir = file_path.parent if file_path is not None else Path.cwd()
    run_dir = Path(values.pop("run_dir", ".queuebox"))
    if file_path is not None and sources.get("url", str(file_path)) == str(file_path):
        values["url"] = _anchor_sqlite_path(values.get("url", DEFAULT_URL), base_dir)
    return Settings(
        run_dir=run_dir if run_dir.is_absolute() else base_dir / run_dir,
        sources=sources,
        config_file=file_path,
        **values,
    )


def _anchor_sqlite_path(url: str, base_dir: Path) -> str:
    """``sqlite:///jobs.db`` from a config file means the ``jobs.db`` beside that file."""
    head = "sqlite:///"
    if not url.lower().startswith(head):
        return url
    path = url[len(head) :]
    if not path or path.startswith("/") or path.lower().startswith(":memory:"):
        return url
    return f"sqlite:///{quote(base_dir.as_posix())}/{path}"  # the adapter unquotes the path


def _read_config_file(start: Path) -> tuple[dict[str, Any], Path | None]:
    for directory in [start, *start.parents]:
        own = directory / "queuebox.toml"
        if own.is_file():
            return _parse_file(own, _load_toml(own)), own
        project = directory / "pyproject.toml"
        if project.is_file():
            table = _load_toml(project).get("tool", {}).get("queuebox")
            if table is not None:
                return _parse_file(project, table), project
    return {}, None


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None


def _parse_file(path: Path, table: Any) -> dict[str, Any]:
    where = f"{path} [tool.queuebox]" if path.name == "pyproject.toml" else str(path)
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where} must be a table of settings")
    unknown = sorted(set(table) - _FILE_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_FILE_KEYS))}"
        )
    values: dict[str, Any] = {}
    if "url" in table:
        values["url"] = _check_url(table["url"], f"{where} url")
    if "app" in table:
        values["app"] = _app_tuple(table["app"], f"{where} app")
    if "max_payload_bytes" in table:
        values["max_payload_bytes"] = _check_max_payload(table["max_payload_bytes"])
    if "run_dir" in table:
        if not isinstance(table["run_dir"], str):
            raise ConfigurationError(f"{where} run_dir must be a path string")
        values["run_dir"] = table["run_dir"]
    if "workers" in table:
        groups = table["workers"]
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise ConfigurationError(
                f"{where} workers must be an array of tables ([[tool.queuebox.workers]])"
            )
        try:
            values["workers"] = tuple(WorkerSettings.from_mapping(group) for group in groups)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where} workers: {exc}") from None
    return values


def _check_url(url: object, where: str) -> str:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"{where}: {url!r} is not a store URL; use e.g. sqlite:///queuebox.db, memory://, "
            "redis://localhost:6379/0 or postgresql://localhost/mydb"
        )
    return url


def _app_tuple(app: object, where: str) -> tuple[str, ...]:
    if isinstance(app, str):
        names = [part.strip() for part in app.split(",") if part.strip()]
    elif isinstance(app, list | tuple) and all(isinstance(part, str) for part in app):
        names = [part.strip() for part in app if part.strip()]
    else:
        raise ConfigurationError(f"{where}: give module names, e.g. 'myapp.jobs'")
    for name in names:
        if not all(piece.isidentifier() for piece in name.split(".")):
            raise ConfigurationError(f"{where}: {name!r} is not a Python module name")
    return tuple(names)


def _check_max_payload(value: object) -> int:
    if type(value) is not int or value < 64:
        raise ConfigurationError(
            f"max_payload_bytes={value!r} is not valid: give a whole number of bytes >= 64"
        )
    return value
