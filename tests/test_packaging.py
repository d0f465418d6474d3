"""What ships in the wheel, and what the package never does."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "queuebox"


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    from hatchling.builders.wheel import WheelBuilder

    out = tmp_path_factory.mktemp("wheel")
    [wheel] = list(WheelBuilder(str(ROOT)).build(directory=str(out), versions=["standard"]))
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_ships_every_sql_and_lua_file(wheel_names: set[str]) -> None:
    resources = [
        path.relative_to(ROOT).as_posix()
        for pattern in ("*.sql", "*.lua")
        for path in PACKAGE.rglob(pattern)
    ]
    assert any(name.endswith(".sql") for name in resources)
    missing = sorted(set(resources) - wheel_names)
    assert missing == [], f"not in the wheel: {missing}"


def test_wheel_is_typed_and_has_the_cli(wheel_names: set[str]) -> None:
    assert "queuebox/py.typed" in wheel_names
    assert "queuebox/cli.py" in wheel_names or "queuebox/cli/__init__.py" in wheel_names
    entry_points = next(name for name in wheel_names if name.endswith("entry_points.txt"))
    assert entry_points


def test_no_module_imports_pickle_or_marshal() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert name.split(".")[0] not in {"pickle", "marshal", "shelve", "dill"}, path


def test_importing_queuebox_loads_no_pickle_and_no_store_client() -> None:
    code = (
        "import sys, queuebox, queuebox.cli, queuebox.runner.worker;"
        "bad = sorted(m for m in ('pickle', 'redis', 'psycopg', 'msgpack') if m in sys.modules);"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_importing_queuebox_for_perform_later_loads_no_asyncio(tmp_path: Path) -> None:
    """An application that only enqueues (a Django or Flask view) imports queuebox and its
    store, never asyncio (with ssl and concurrent.futures, about 15 ms of each start);
    aperform_later and async jobs import it when they run."""
    code = (
        "import sys, queuebox\n"
        "from queuebox import Job\n"
        "class Hello(Job):\n"
        "    def perform(self, name): pass\n"
        "queuebox.configure(url='sqlite:///' + sys.argv[1])\n"
        "Hello.perform_later('x')\n"
        "Hello.perform_now('y')\n"
        "print(','.join(m for m in ('asyncio', 'ssl') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "jobs.db")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
