"""The dashboard in a real browser: headless Debian chromium driven by Playwright, against
``queuebox web`` (uvicorn) on a real store with real ``queuebox work`` processes running.

Each page is loaded and what it shows is checked against the store; every action is used
and the store is checked afterwards; a job argument that holds HTML and script renders as
text. Where a store does not declare an optional interface yet (``Cancellation``,
``FlowControl``, ``WorkerRegistry``, ``ThroughputHistory``, ``JobSearch``), the test checks
the page's note saying so instead of the missing part. A screenshot of each page is taken;
with ``QUEUEBOX_DOCS_SCREENSHOTS=1`` the SQLite run writes them to ``docs/images`` for
``docs/dashboard.md``.

Skipped (with the reason) when chromium or Playwright is missing, unless ``CI`` is set.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from queuebox.backends import from_url
from queuebox.backends.base import (
    Adapter,
    Cancellation,
    FlowControl,
    JobSearch,
    JobState,
    NewJob,
    ThroughputHistory,
    WorkerRegistry,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = '<script>alert("pwned")</script><img src=x onerror="alert(\'pwned\')">&amp;'
DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
# The command's module is imported before the group runs, whether or not the package's
# __init__ imports it yet.
LAUNCH = "import queuebox.cli.web, queuebox.cli; queuebox.cli.main()"

JOBS = textwrap.dedent(
    """
    import time
    from queuebox import Job

    class Hold(Job):
        queue = "busy"

        def perform(self, seconds):
            # Short sleeps, so that a cancel lands between two of them.
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self.cancelled:
                time.sleep(0.05)

    class Quick(Job):
        def perform(self, n):
            return n

    class Boom(Job):
        max_attempts = 1

        def perform(self, why):
            raise ValueError(f"boom: {why}")

    class Parked(Job):
        queue = "parked"  # no worker takes this queue: its jobs stay as the test puts them

        def perform(self, *args, **kwargs):
            pass

    class Tick(Job):
        every = 60

        def perform(self):
            pass
    """
)


def _playwright() -> Any:
    problem = None
    if not Path(CHROMIUM).exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed (pip install playwright)"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test needs {problem} (CI is set, so this is a failure)")
        pytest.skip(f"the browser test needs {problem}")
    return sync_playwright


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    condition: Callable[[], object],
    what: str,
    timeout: float = 30,
    detail: Callable[[], str] = str,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} {detail()}")
        time.sleep(0.1)


@dataclass
class Site:
    """A project folder with job modules, its worker processes and its dashboard."""

    folder: Path
    url: str
    store: Adapter
    base: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEBOX_")}
        # The child keeps its own copy of the log's descriptor; ours is closed at once.
        with (self.folder / f"proc-{len(self.processes)}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, *args], cwd=self.folder, env=clean, stdout=log, stderr=log
            )
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.folder.glob("proc-*.log")))

    def add(self, name: str, *args: Any, queue: str, delay: float = 0) -> str:
        handler = json.dumps({"name": name, "args": list(args), "kwargs": {}})
        new = NewJob(name=name, handler=handler, queue=queue, priority=50, delay=delay)
        return self.store.schedule([new])[0].id

    def state(self, job_id: str) -> JobState | None:
        job = self.store.get(job_id)
        return None if job is None else job.state


@pytest.fixture
def site(store_url: str, tmp_path: Path) -> Iterator[Site]:
    (tmp_path / "web_jobs.py").write_text(JOBS)
    (tmp_path / "queuebox.toml").write_text(
        f'url = "{store_url}"\napp = ["web_jobs"]\n[[workers]]\nqueue = "*"\nsleep_delay = 0.2\n'
    )
    store = from_url(store_url)
    store.migrate()
    site = Site(tmp_path, store_url, store)
    try:
        yield site
    finally:
        for process in site.processes:
            if process.poll() is None:
                process.terminate()
        for process in site.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        store.close()


def test_every_page_and_action_in_a_real_browser(
    site: Site, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    sync_playwright = _playwright()
    store = site.store
    store_kind = site.url.split(":", 1)[0]
    # Two machines' worth of workers: separate processes, each with its own id.
    for queues in (["-q", "default", "-c", "2"], ["-q", "busy", "-c", "2"], ["-q", "busy"]):
        site.start("-m", "queuebox", "work", *queues)
    port = free_port()
    site.start("-c", LAUNCH, "web", "--port", str(port))
    site.base = f"http://127.0.0.1:{port}"

    # What the pages will show: work running, work failed by a worker, parked jobs.
    holding = [site.add("Hold", 120, queue="busy") for _ in range(2)]
    for n in range(5):
        site.add("Quick", n, queue="default")
    boom = site.add("Boom", "the disk is full", queue="default")
    hostile = site.add("Parked", HOSTILE, {"<b>": "</td></tr></table><h1>x</h1>"}, queue="parked")
    later = [site.add("Parked", f"later-{n}", queue="parked", delay=3600) for n in range(3)]
    ready = [site.add("Parked", f"ready-{n}", queue="parked") for n in range(3)]
    many = [site.add("Parked", f"page-{n}", queue="many") for n in range(55)]
    wait_until(lambda: site.state(boom) is JobState.FAILED, "Boom to fail in a worker")
    wait_until(lambda: all(site.state(j) is JobState.RUNNING for j in holding), "Hold jobs to run")
    if isinstance(store, WorkerRegistry):
        wait_until(lambda: len([w for w in store.workers() if not w.lost]) >= 2, "workers")
    wait_until(lambda: _answers(site.base), "the dashboard to answer", timeout=20)

    shots = (
        DOCS_IMAGES
        if os.environ.get("QUEUEBOX_DOCS_SCREENSHOTS") and store_kind == "sqlite"
        else tmp_path
    )
    shots.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            dialogs: list[tuple[str, str]] = []

            def on_dialog(dialog: Any) -> None:
                dialogs.append((dialog.type, dialog.message))
                dialog.accept()

            page.on("dialog", on_dialog)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            check = Checks(site, page, shots, dialogs)
            check.overview()
            check.jobs_list(many)
            check.job_page(boom, hostile)
            check.actions(boom, later, ready, holding, hostile)
            check.bulk(later, many)
            check.queues()
            check.workers(holding)
            check.recurring()
            check.phone()
            # The only dialogs were the dashboard's own confirmations: no injected alert.
            assert all(kind == "confirm" for kind, _ in dialogs), dialogs
            assert not any("pwned" in message for _, message in dialogs)
            assert errors == [], errors
        finally:
            browser.close()
    assert "Traceback" not in site.logs(), site.logs()


def _answers(base: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base}/api/meta", timeout=2):  # noqa: S310 - loopback
            return True
    except OSError:
        return False


class Checks:
    """The page-by-page checks, each against what the store says."""

    def __init__(self, site: Site, page: Any, shots: Path, dialogs: list[tuple[str, str]]) -> None:
        self.site, self.page, self.shots, self.store = site, page, shots, site.store
        self.dialogs = dialogs

    def status(self) -> str:
        """What the page last said about an action (shown when a wait times out)."""
        text: str = self.page.locator("#status").text_content() or ""
        return f"(the page says: {text!r})"

    def wait(self, condition: Callable[[], object], what: str, timeout: float = 30) -> None:
        """Poll the store until ``condition`` holds, while the browser goes on.

        Playwright's sync API handles the page's events (a ``confirm`` dialog, the answer
        to a POST) only inside its own calls, so the poll sleeps in the page
        (``wait_for_timeout``), never in ``time.sleep``: a dialog left open by a sleeping
        test would hold the page's action back until the wait times out.
        """
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                last = self.dialogs[-1:] or "none"
                raise AssertionError(
                    f"timed out waiting for {what} {self.status()} (last dialog: {last})"
                )
            self.page.wait_for_timeout(100)

    def goto(self, path: str, ready: str) -> None:
        self.page.goto(self.site.base + path)
        self.page.wait_for_selector(ready)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"dashboard-{name}.png"), full_page=True)

    def note(self, interface: type) -> None:
        """The page says the store lacks ``interface``."""
        assert self.page.locator(".note", has_text=interface.__name__).count() >= 1

    def cell(self, selector: str) -> str:
        text: str = self.page.locator(selector).inner_text()
        return text.strip()

    def overview(self) -> None:
        self.goto("/", "#queues")
        counts = {c.queue: c for c in self.store.counts()}
        for queue in ("parked", "many"):
            for state in JobState:
                shown = self.cell(f'tr[data-queue="{queue}"] td[data-state="{state.value}"]')
                assert shown == str(getattr(counts[queue], state.value)), (queue, state)
        if isinstance(self.store, WorkerRegistry):
            alive = len([w for w in self.store.workers() if not w.lost])
            assert self.cell("#workers-alive .card-value") == str(alive)
        else:
            self.note(WorkerRegistry)
        if isinstance(self.store, ThroughputHistory):
            self.page.wait_for_selector('img[src*="charts/throughput.svg"]')
            loaded = self.page.evaluate(
                "[...document.querySelectorAll('figure img')].every(i => i.naturalWidth > 0)"
            )
            assert loaded
        else:
            self.note(ThroughputHistory)
        self.shot("overview")

    def jobs_list(self, many: list[str]) -> None:
        self.goto("/jobs?queue=many", "#jobs")
        first = self.page.locator("#jobs tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.jobId)"
        )
        assert len(first) == 50
        # Nothing the page builds shows as a stray "null" or "undefined" text node.
        shown_text = self.page.locator("main").inner_text()
        assert "null" not in shown_text and "undefined" not in shown_text, shown_text
        assert self.page.locator("a[rel=next]").inner_text() == "Next page »"
        self.page.click("a[rel=next]")
        self.page.wait_for_url("**cursor=*")
        self.page.wait_for_selector("#jobs")
        rest = self.page.locator("#jobs tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.jobId)"
        )
        assert sorted(first + rest) == sorted(many) and len(set(first + rest)) == 55
        if not isinstance(self.store, JobSearch):
            self.note(JobSearch)
        # The filter form: a job name and text in the arguments.
        self.goto("/jobs", "form.filters")
        self.page.fill('input[name="queue"]', "parked")
        self.page.fill('input[name="text"]', "LATER-1")
        self.page.click('form.filters button[type="submit"]')
        self.page.wait_for_url("**text=LATER-1*")
        self.page.wait_for_selector("#jobs")
        shown = self.page.locator("#jobs tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.jobId)"
        )
        expected = [j.id for j in self.store.list_jobs(queues=["parked"]) if "later-1" in j.handler]
        assert shown == expected
        self.goto("/jobs?state=failed", "#jobs")
        self.shot("jobs")

    def job_page(self, boom: str, hostile: str) -> None:
        self.goto(f"/jobs/{boom}", "#job-error")
        record = self.store.get(boom)
        assert record is not None and record.last_error is not None
        assert "ValueError: boom: the disk is full" in record.last_error
        assert self.page.locator("#job-error").text_content() == record.last_error
        assert self.cell("#job-state") == "failed"
        assert self.cell("#job-attempts") == str(record.attempts)
        assert self.page.locator("#job-history li").count() >= 2
        # The page is made of elements only: no stray text (a "null" left by a missing part).
        stray = self.page.evaluate(
            "[...document.getElementById('job-name').closest('h1').parentElement.childNodes]"
            ".filter(n => n.nodeType !== 1).map(n => n.textContent)"
        )
        assert stray == [], stray
        self.shot("job")
        self.goto(f"/jobs/{hostile}", "#job-arguments")
        arguments = self.page.locator("#job-arguments").text_content()
        assert HOSTILE.replace('"', '\\"') in arguments  # shown as JSON text, escaped by JSON
        # Nothing of it became an element, and no script ran (see the dialog check).
        assert self.page.locator("main script, main img, main h1:has-text('x')").count() == 0
        self.goto("/jobs?queue=parked", "#jobs")
        row = self.page.locator(f'#jobs tr[data-job-id="{hostile}"] td.args')
        assert "<script>" in row.inner_text()
        assert self.page.locator("#jobs script, #jobs img").count() == 0

    def click_action(self, job_id: str, action: str) -> None:
        self.goto(f"/jobs/{job_id}", "#job-state")
        self.page.click(f'main .actions button[data-action="{action}"]')

    def actions(
        self, boom: str, later: list[str], ready: list[str], holding: list[str], hostile: str
    ) -> None:
        site = self.site
        self.click_action(boom, "retry")  # a worker takes it again, and it fails again
        self.wait(
            lambda: (
                (self.store.get(boom) or _gone()).attempts <= 1
                and site.state(boom) in (JobState.READY, JobState.RUNNING, JobState.FAILED)
            ),
            "retry",
        )
        self.click_action(later[0], "run_now")
        self.wait(lambda: site.state(later[0]) is JobState.READY, "run now")
        self.click_action(ready[0], "delete")
        self.wait(lambda: site.state(ready[0]) is None, "delete")
        if isinstance(self.store, Cancellation):
            self.click_action(ready[1], "cancel")
            self.wait(lambda: site.state(ready[1]) is JobState.CANCELLED, "cancel")
            # A running job: its worker stops it.
            self.click_action(holding[0], "cancel")
            self.wait(lambda: site.state(holding[0]) is JobState.CANCELLED, "running cancel")
        else:
            self.goto(f"/jobs/{ready[1]}", "#job-state")
            assert self.page.locator('button[data-action="cancel"]').count() == 0
            self.goto("/", "#queues")
            self.note(Cancellation)

    def bulk(self, later: list[str], many: list[str]) -> None:
        self.goto("/jobs?queue=parked&state=scheduled", "#jobs")
        self.page.click('button[data-action="bulk-run_now"]')
        self.wait(
            lambda: all(self.site.state(j) is JobState.READY for j in later),
            "bulk run now",
        )
        self.goto("/jobs?queue=many", "#jobs")
        self.page.click('button[data-action="bulk-delete"]')
        self.wait(lambda: all(self.site.state(j) is None for j in many), "bulk delete")
        if isinstance(self.store, Cancellation):
            self.goto("/jobs?queue=parked&state=ready", "#jobs")
            self.page.click('button[data-action="bulk-cancel"]')
            self.wait(
                lambda: self.store.list_jobs(queues=["parked"], states=[JobState.READY]) == [],
                "bulk cancel",
            )

    def queues(self) -> None:
        store = self.store
        if not isinstance(store, FlowControl):
            self.goto("/", "#queues")
            assert self.page.locator('button[data-action="pause"]').count() == 0
            self.note(FlowControl)
            return
        self.goto("/", "#queues")
        self.page.click('tr[data-queue="parked"] button[data-action="pause"]')
        self.wait(lambda: store.paused_queues() == {"parked"}, "pause")
        self.page.wait_for_selector('tr[data-queue="parked"] button[data-action="resume"]')
        self.page.click('tr[data-queue="parked"] button[data-action="resume"]')
        self.wait(lambda: store.paused_queues() == set(), "resume")
        self.page.check('tr[data-queue="parked"] input[type=checkbox]')
        self.page.check('tr[data-queue="default"] input[type=checkbox]')
        self.page.click('button[data-action="bulk-pause"]')
        self.wait(lambda: store.paused_queues() == {"parked", "default"}, "bulk pause")
        self.page.click('button[data-action="bulk-resume"]')
        self.wait(lambda: store.paused_queues() == set(), "bulk resume")

    def workers(self, holding: list[str]) -> None:
        if not isinstance(self.store, WorkerRegistry):
            self.goto("/workers", ".note")
            self.note(WorkerRegistry)
            self.shot("workers")
            return
        self.goto("/workers", "#workers-summary")
        registered = {w.id: w for w in self.store.workers() if not w.lost}
        shown = self.page.locator("tr[data-worker-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.workerId)"
        )
        assert set(registered) <= set(shown)
        pids = {p.pid for p in self.site.processes}
        assert {w.pid for w in registered.values()} <= pids
        still = holding[1]
        if self.site.state(still) is JobState.RUNNING:
            self.page.wait_for_selector(f'td.running li[data-job-id="{still}"]')
        self.shot("workers")

    def recurring(self) -> None:
        self.goto("/recurring", "main table, main .note")
        if self.page.locator("#recurring").count():
            row = self.page.locator('#recurring tr[data-name="Tick"]')
            assert "every 60s" in row.inner_text()
        self.shot("recurring")

    def phone(self) -> None:
        self.page.set_viewport_size({"width": 390, "height": 844})
        self.goto("/", "#queues")
        width = self.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, f"the overview is {width}px wide on a phone"
        self.shot("phone")


def _gone() -> Any:
    raise AssertionError("the job disappeared")
