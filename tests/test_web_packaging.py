"""The dashboard works offline: every asset it loads ships in the wheel, and no page or
asset refers to another host."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "queuebox" / "web" / "static"


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    from hatchling.builders.wheel import WheelBuilder

    out = tmp_path_factory.mktemp("wheel")
    [wheel] = list(WheelBuilder(str(ROOT)).build(directory=str(out), versions=["standard"]))
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_every_static_asset_is_in_the_wheel(wheel_names: set[str]) -> None:
    assets = sorted(path.relative_to(ROOT).as_posix() for path in STATIC.iterdir())
    assert {"dashboard.js", "dashboard.css", "favicon.svg"} <= {Path(a).name for a in assets}
    missing = [asset for asset in assets if asset not in wheel_names]
    assert missing == [], f"not in the wheel: {missing}"


def test_no_asset_or_page_loads_anything_from_another_host() -> None:
    sources = [*STATIC.iterdir(), ROOT / "queuebox" / "web" / "pages.py"]
    for path in sources:
        text = path.read_text()
        # The SVG namespace is a name, not something a browser fetches.
        urls = set(re.findall(r"https?://[^\s\"'<>)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert urls == set(), f"{path.name} refers to {urls}"
