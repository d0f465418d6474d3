"""One queuebox worker process as the benchmarks' "fastest" setting runs it.

``python -m benchmarks.queuebox_worker URL --batch-size 100`` is ``queuebox --url URL --app
benchmarks.jobs work --batch-size 100`` with the log level at WARNING: the command line
logs two INFO lines per job, which costs more than a no-op job itself.
"""

from __future__ import annotations

import argparse
import logging

import benchmarks.jobs
from queuebox.backends import from_url
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import StopFlag, handle_stop_signals
from queuebox.runner.worker import Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--queue", default=benchmarks.jobs.QUEUE)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    settings = WorkerSettings(queues=(args.queue,), batch_size=args.batch_size)
    stop = StopFlag()
    with handle_stop_signals(stop):
        Worker(from_url(args.url), settings, stop=stop).run()


if __name__ == "__main__":
    main()
