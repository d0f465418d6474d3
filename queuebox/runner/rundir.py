"""The run folder (``.queuebox/`` beside the config file by default) and what lives there.

::

    .queuebox/
        supervisor.pid        the supervisor's pid (see pidfile.py)
        supervisor.json       the supervisor's state: phase, and each worker slot's pid
        workers/<pid>.json    each worker's own status: the job it runs now, jobs done
        queuebox.log          the log of a background ``start`` without ``--log-file``

Every JSON file is written whole under a temporary name and renamed into place, so a reader
(``status``, ``stop``, ``start`` waiting for the workers) never sees half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from queuebox.json_text import load_json

__all__ = ["RunDir", "read_json", "write_json"]


def write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(temporary, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = load_json(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def pid_file(self) -> Path:
        return self.path / "supervisor.pid"

    @property
    def state_file(self) -> Path:
        return self.path / "supervisor.json"

    @property
    def workers_dir(self) -> Path:
        return self.path / "workers"

    @property
    def default_log_file(self) -> Path:
        return self.path / "queuebox.log"

    def create(self) -> None:
        self.workers_dir.mkdir(parents=True, exist_ok=True)

    def worker_file(self, pid: int) -> Path:
        return self.workers_dir / f"{pid}.json"

    def read_state(self) -> dict[str, Any] | None:
        return read_json(self.state_file)

    def write_state(self, state: dict[str, Any]) -> None:
        write_json(self.state_file, state)

    def read_worker(self, pid: int) -> dict[str, Any] | None:
        return read_json(self.worker_file(pid))

    def remove_worker(self, pid: int) -> None:
        self.worker_file(pid).unlink(missing_ok=True)

    def worker_pids(self) -> list[int]:
        """Pids that have a status file (alive or not)."""
        try:
            names = os.listdir(self.workers_dir)
        except FileNotFoundError:
            return []
        return sorted(
            int(name[:-5]) for name in names if name.endswith(".json") and name[:-5].isdigit()
        )

    def clear(self, *, keep_state: bool = False) -> None:
        """Forget a supervisor that is gone: its state and its workers' status files."""
        if not keep_state:
            self.state_file.unlink(missing_ok=True)
        for pid in self.worker_pids():
            self.remove_worker(pid)
