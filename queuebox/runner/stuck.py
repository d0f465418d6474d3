"""Ending a worker process whose job would not stop.

Python cannot kill a thread: a job blocked inside C code (or one that swallows the
interruption) keeps its thread until the call returns. When a run was asked to stop (its
``max_runtime`` passed, or it was cancelled) and is still going ``stop_grace`` seconds later,
the process ends itself, from the heartbeat's thread:

1. the stuck run's outcome is written (a timeout is retried with backoff like any error, a
   cancelled run is kept as cancelled) while its lock is still held, so no other worker can
   have started it;
2. successes waiting for their acknowledgement are acknowledged, and claimed jobs that never
   started are given back;
3. the process exits with ``EXIT_REPLACE_ME`` (75); ``work -n`` and the supervisor start a
   fresh worker in its place. Jobs still running on other slots (only with concurrency above
   1, when the loop itself is frozen) are abandoned: their locks lapse and they run again.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TYPE_CHECKING

from queuebox.errors import StorageUnavailable
from queuebox.runner.execution import Outcome
from queuebox.runner.runs import Held, Phase

if TYPE_CHECKING:
    from queuebox.runner.worker import Worker

__all__ = ["end_process"]


def end_process(worker: Worker, held: Held, exit_code: int = 75) -> None:
    """Write ``held``'s outcome, hand back what the worker holds, and exit the process."""
    try:
        if held.prepared is not None:
            elapsed = time.monotonic() - held.started_at
            worker.record(Outcome(held, held.prepared, elapsed, reason=held.stop_reason))
        done = worker.take_done()
        if done:
            acks = [success.ack for success in done]
            worker.adapter.complete_many(acks, keep=not worker.settings.delete_successful_jobs)
        waiting = [job.record for job in worker.held.all() if job.phase is Phase.WAITING]
        worker.release(waiting)
    except StorageUnavailable as exc:
        worker.logger.error("could not record everything before exiting: %s", exc)
    except Exception:
        worker.logger.exception("could not record everything before exiting")
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)
