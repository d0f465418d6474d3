"""Stop requests: the first SIGINT/SIGTERM is a warm stop, the second a cold one. The pool and
the supervisor send SIGUSR1 (warm) and SIGUSR2 (cold) instead, so that their requests and a
service manager's SIGTERM never add up to a cold stop. SIGHUP (the terminal or SSH session
went away) is a warm stop too, and never counts towards a cold one: without a handler it
would kill the worker and leave its claimed jobs locked for a lease.

A warm stop lets the job in hand finish, gives back claimed jobs not yet started, and exits.
A cold stop interrupts the running job (``ColdStop`` is raised inside it, in the main thread)
and gives its lock back so another worker can run it at once. Handlers only set flags, except
that second signal while a job runs, which must interrupt it. The previous handlers come back
when the ``handle_stop_signals`` block ends, and embedders can skip it altogether.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = [
    "COLD_STOP_SIGNAL",
    "PASSED_ON_SIGNALS",
    "WARM_STOP_SIGNAL",
    "ColdStop",
    "StopFlag",
    "handle_stop_signals",
]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: What a parent (the pool, the supervisor) sends its workers for a warm stop and for a cold
#: one. Neither counts as a SIGINT/SIGTERM, so a worker that also gets the service manager's
#: SIGTERM (systemd signals every process of a service by default), in whatever order, still
#: lets its job finish.
WARM_STOP_SIGNAL = signal.SIGUSR1
COLD_STOP_SIGNAL = signal.SIGUSR2
#: The two above. A parent starts its workers with them blocked, and ``handle_stop_signals``
#: unblocks them once its handlers are in place, so that one sent while the worker starts
#: waits for the handlers instead of killing it (the default action of both).
PASSED_ON_SIGNALS = frozenset({WARM_STOP_SIGNAL, COLD_STOP_SIGNAL})


class ColdStop(BaseException):
    """Raised inside a running job by a second stop signal.

    A ``BaseException``, so that a job's ``except Exception`` does not swallow it.
    """


class StopFlag:
    """Shared by a worker and whatever asks it to stop (signals, tests, an embedding app)."""

    def __init__(self) -> None:
        self.warm = threading.Event()
        self.cold = threading.Event()
        #: True while the worker runs a sync job in the main thread; a cold stop raises
        #: ``ColdStop`` inside it.
        self.job_running = False
        #: Set while an async job runs on the main thread's event loop: a cold stop calls it
        #: (to cancel the job's task) instead of raising inside the loop.
        self.interrupt: Callable[[], object] | None = None

    def request(self) -> None:
        """A stop request: the first is warm, any later one cold."""
        if self.warm.is_set():
            self.cold.set()
        self.warm.set()

    def stop_now(self) -> None:
        self.warm.set()
        self.cold.set()

    @property
    def stopping(self) -> bool:
        return self.warm.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, or less when a stop is requested."""
        return self.warm.wait(timeout)


@contextlib.contextmanager
def handle_stop_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Route SIGINT/SIGTERM to ``flag`` inside the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    stop_signals_seen = 0

    def cold_stop(reason: str) -> None:
        flag.stop_now()
        if flag.job_running:
            flag.job_running = False
            raise ColdStop(reason)
        if flag.interrupt is not None:
            flag.interrupt()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_signals_seen
        stop_signals_seen += 1
        if stop_signals_seen == 1:
            flag.warm.set()
        else:
            cold_stop(f"stopped by a second {signal.Signals(signum).name}")

    def on_warm_stop(signum: int, frame: FrameType | None) -> None:
        flag.warm.set()

    def on_cold_stop(signum: int, frame: FrameType | None) -> None:
        cold_stop("stopped at once by the parent process")

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    previous[WARM_STOP_SIGNAL] = signal.signal(WARM_STOP_SIGNAL, on_warm_stop)
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_warm_stop)
    previous[COLD_STOP_SIGNAL] = signal.signal(COLD_STOP_SIGNAL, on_cold_stop)
    # A worker's parent started it with these blocked (see PASSED_ON_SIGNALS): one that came
    # while it started is delivered now, to the handlers.
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, PASSED_ON_SIGNALS)
    try:
        yield flag
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
