"""Claim the next batch while this one runs.

A worker on one queue acknowledges a batch and claims the next in one round trip
(``complete_and_claim``), but it still waits for that round trip between batches: the store's
time per job (a claim and an acknowledgement, ~10 us of Redis CPU on a small machine) is time
the worker does nothing. With batches of more than one job, a store that can split the round
trip in two (``send_complete_and_claim``, the Redis store) lets the worker send it when a
batch starts, decode and run the batch meanwhile, and read the reply (the acknowledgements of
the batch before, and the next batch) when it ends.

What it changes, and what it does not:

* At-least-once holds: a batch's acknowledgements go out only after its jobs ran, at the same
  moment as without claiming ahead (when the batch ends and the next starts).
* A worker holds up to two batches: the one running and the next. Those locks were taken
  when the round trip went out; the heartbeat holds them from the moment the batch is read.
  If the running batch took longer than a third of the lease, the worker first renews each
  lock of the next batch and drops those it no longer owns, so a long batch never makes it run
  a job another worker has taken over.
* A worker killed mid-batch leaves up to ``batch_size`` jobs that ran but whose
  acknowledgement was still in flight, plus the batch in hand; they run again after the lease.
  Batches of one job (the default, and the advice for long jobs) never claim ahead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from queuebox.backends.base import JobRecord

__all__ = ["Acked", "Batch", "InFlight", "Prefetcher", "Receive", "Send"]

#: A job that succeeded: its record, how long it ran, the logger of its job class.
Acked = tuple[JobRecord, float, logging.Logger]


class Batch(Protocol):
    """Claimed jobs, not yet decoded (``queuebox.backends.redis_keys.ClaimedBatch``)."""

    def __len__(self) -> int: ...

    def records(self) -> list[JobRecord]:
        """The jobs in claim order."""
        ...


#: Reads the reply of a round trip sent by ``Send``: one bool per acknowledgement, then the
#: claimed batch. Called once.
Receive = Callable[[], tuple[list[bool], Batch]]

#: Sends "acknowledge these (job id, lock token) pairs and claim the next batch".
Send = Callable[[Sequence[tuple[str, str]]], Receive]


@dataclass(frozen=True)
class InFlight:
    done: list[Acked]
    acks: list[tuple[str, str]]
    receive: Receive
    sent_at: float  # monotonic: when the locks of the claimed batch were taken


class Prefetcher:
    """At most one round trip in flight."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.in_flight: InFlight | None = None

    def start(self, done: list[Acked]) -> None:
        """Send the acknowledgements of ``done`` and the next claim; return without waiting."""
        if self.in_flight is not None:
            raise RuntimeError("a round trip is already in flight: take it first")
        acks = [(record.id, record.lock_token or "") for record, _, _ in done]
        sent_at = time.monotonic()
        self.in_flight = InFlight(done, acks, self._send(acks), sent_at)

    def take(self) -> InFlight | None:
        """The round trip in flight (the caller reads it), and forget it."""
        in_flight, self.in_flight = self.in_flight, None
        return in_flight
