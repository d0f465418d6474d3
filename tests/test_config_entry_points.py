"""Custom stores answer their own URL scheme through the ``queuebox.adapters`` entry points.

Most tests write a distribution's metadata (a ``.dist-info`` folder) on ``sys.path``, which is
exactly what ``importlib.metadata`` reads for an installed package; one builds a real package
with ``pip install --target`` and uses it from the command line and the config file.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from queuebox import config
from queuebox.backends import ENTRY_POINT_GROUP, from_url, installed_schemes
from queuebox.backends.memory import MemoryAdapter
from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.errors import ConfigurationError

STORE_MODULE = textwrap.dedent(
    """
    from urllib.parse import unquote, urlsplit

    from queuebox.backends.sqlite import SQLiteAdapter


    class DemoStore(SQLiteAdapter):
        \"\"\"A SQLite file under a scheme of its own: demo:///path/to/file.db\"\"\"

        schemes = ("demo",)

        @classmethod
        def from_url(cls, url):
            path = unquote(urlsplit(url).path)
            if not path:
                raise ValueError("demo:// needs a path")
            return cls(path)

        def __repr__(self):
            return f"DemoStore({str(self.path)!r})"


    class NoUrl(SQLiteAdapter):
        @classmethod
        def from_url(cls, url):
            return super(SQLiteAdapter, cls).from_url(url)


    NOT_AN_ADAPTER = object()
    """
)


def write_distribution(
    site: Path, name: str, entry_points: dict[str, str], module: str | None = STORE_MODULE
) -> None:
    """What pip leaves on disk for a package ``name`` whose module is ``{name}_store``."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    if module is not None:
        (site / f"{name}_store.py").write_text(module)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    for name in list(sys.modules):
        if name.endswith("_store") and name.startswith("qbdemo"):
            monkeypatch.delitem(sys.modules, name)
    return folder


def test_an_installed_package_answers_its_scheme(site: Path, tmp_path: Path) -> None:
    write_distribution(site, "qbdemo", {"demo": "qbdemo_store:DemoStore"})
    assert installed_schemes()["demo"] == ["demo = qbdemo_store:DemoStore (qbdemo 1.0)"]
    adapter = from_url(f"demo://{tmp_path / 'jobs.db'}")
    try:
        assert type(adapter).__name__ == "DemoStore" and isinstance(adapter, SQLiteAdapter)
        assert adapter.path == tmp_path / "jobs.db"
    finally:
        adapter.close()


def test_the_config_file_url_uses_the_installed_scheme(site: Path, tmp_path: Path) -> None:
    write_distribution(site, "qbdemo", {"demo": "qbdemo_store:DemoStore"})
    (tmp_path / "queuebox.toml").write_text(f'url = "demo://{tmp_path / "file.db"}"\n')
    adapter = config.get_adapter()
    assert repr(adapter) == f"DemoStore({str(tmp_path / 'file.db')!r})"


def test_a_built_in_scheme_cannot_be_taken_over(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_distribution(site, "qbdemo", {"memory": "qbdemo_store:DemoStore"})
    with caplog.at_level(logging.WARNING, logger="queuebox"):
        adapter = from_url("memory://")
    assert type(adapter) is MemoryAdapter
    assert "memory = qbdemo_store:DemoStore (qbdemo 1.0)" in caplog.text
    assert "claim the built-in store URL scheme memory://" in caplog.text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("qbdemo_missing:DemoStore", "raised ModuleNotFoundError: No module named"),
        ("qbdemo_store:Nothing", "raised AttributeError"),
        ("qbdemo_store:NOT_AN_ADAPTER", "which is not a subclass of queuebox.backends.base"),
        ("qbdemo_store:NoUrl", "does not override Adapter.from_url"),
    ],
)
def test_a_broken_entry_point_gives_a_clear_error(site: Path, value: str, expected: str) -> None:
    write_distribution(site, "qbdemo", {"demo": value})
    with pytest.raises(ConfigurationError) as caught:
        from_url("demo:///x.db")
    assert expected in str(caught.value)
    if "raised" in expected:
        assert f"the entry point demo = {value} (qbdemo 1.0)" in str(caught.value)


def test_a_store_url_it_cannot_build_from_is_a_configuration_error(site: Path) -> None:
    write_distribution(site, "qbdemo", {"demo": "qbdemo_store:DemoStore"})
    with pytest.raises(ConfigurationError, match=r"cannot build the demo:// store from "):
        from_url("demo://:hunter2@host")
    with pytest.raises(ConfigurationError) as caught:
        from_url("demo://:hunter2@host")
    assert "hunter2" not in str(caught.value)


def test_two_packages_claiming_one_scheme_is_an_error(site: Path) -> None:
    write_distribution(site, "qbdemo", {"demo": "qbdemo_store:DemoStore"})
    write_distribution(site, "qbdemo2", {"demo": "qbdemo2_store:DemoStore"})
    with pytest.raises(ConfigurationError, match="claimed by several installed packages"):
        from_url("demo:///x.db")


def test_unknown_schemes_list_the_installed_ones(site: Path) -> None:
    write_distribution(site, "qbdemo", {"demo": "qbdemo_store:DemoStore"})
    with pytest.raises(ConfigurationError) as caught:
        from_url("mysql://user:hunter2@db/x")
    message = str(caught.value)
    assert "unknown store URL scheme 'mysql'" in message and "demo://" in message
    assert "hunter2" not in message and ENTRY_POINT_GROUP in message


PACKAGE_PYPROJECT = textwrap.dedent(
    """
    [build-system]
    requires = ["hatchling"]
    build-backend = "hatchling.build"

    [project]
    name = "qbdemo-real"
    version = "0.1"

    [project.entry-points."queuebox.adapters"]
    demo = "qbdemo_real:DemoStore"

    [tool.hatch.build.targets.wheel]
    packages = ["qbdemo_real"]
    """
)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_pip_installed_package_works_from_the_command_line(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "qbdemo_real").mkdir(parents=True)
    (source / "pyproject.toml").write_text(PACKAGE_PYPROJECT)
    (source / "qbdemo_real" / "__init__.py").write_text(STORE_MODULE)
    target = tmp_path / "installed"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--no-index", "--target", str(target), str(source)],
        check=True,
        capture_output=True,
        timeout=170,
    )
    assert (target / "qbdemo_real-0.1.dist-info" / "entry_points.txt").exists()
    project = tmp_path / "project"
    project.mkdir()
    (project / "app_jobs.py").write_text("from queuebox import Job\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEBOX_")}
    env["PYTHONPATH"] = str(target)

    def queuebox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "queuebox", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    migrated = queuebox("--url", f"demo://{project / 'by-flag.db'}", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert f"demo://{project / 'by-flag.db'}" in migrated.stdout
    assert (project / "by-flag.db").exists()
    (project / "queuebox.toml").write_text(f'url = "demo://{project / "by-file.db"}"\n')
    status = queuebox("status")
    assert status.returncode == 0, status.stderr
    assert f"store: demo://{project / 'by-file.db'}" in status.stdout
    assert (project / "by-file.db").exists()
    assert not (project / "queuebox.db").exists()
