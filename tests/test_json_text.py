"""JSON that queuebox did not write, nested past the decoder's limit, is bad input like any
other: ``ValueError`` from ``load_json``, and each reader fails that one record or file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from queuebox.json_text import TOO_DEEP, load_json
from queuebox.runner.rundir import RunDir

DEEP = "[" * 100_000 + "]" * 100_000


def test_json_nested_too_deeply_is_a_value_error_that_says_so() -> None:
    with pytest.raises(RecursionError):
        json.loads(DEEP)  # what every reader caught by hand before
    with pytest.raises(ValueError, match="nested too deeply") as caught:
        load_json(DEEP)
    assert str(caught.value) == TOO_DEEP
    with pytest.raises(ValueError, match="nested too deeply"):
        load_json(DEEP.encode())


def test_load_json_reads_what_json_loads_reads() -> None:
    assert load_json('{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert load_json(b"[" * 50 + b"]" * 50) == json.loads("[" * 50 + "]" * 50)
    with pytest.raises(ValueError, match="Expecting value"):
        load_json("[not json")

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    with pytest.raises(ValueError, match="NaN is not JSON"):
        load_json("[NaN]", parse_constant=refuse)


def test_a_run_folder_file_nested_too_deeply_reads_as_missing(tmp_path: Path) -> None:
    """The supervisor's state and a worker's status file are read by ``queuebox status`` and
    ``stop``: one that is not a JSON object (here, nested past the limit) reads as absent,
    as a half-written or foreign file does, instead of raising RecursionError."""
    run_dir = RunDir(tmp_path / ".queuebox")
    run_dir.create()
    run_dir.state_file.write_text(DEEP)
    run_dir.worker_file(123).write_text(DEEP)
    assert run_dir.read_state() is None
    assert run_dir.read_worker(123) is None
    run_dir.write_state({"pid": 1})
    assert run_dir.read_state() == {"pid": 1}
