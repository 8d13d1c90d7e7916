"""One retry loop for work that can lose a race on a unique key.

Two instances (or two batches) creating the same records at once: the loser's transaction fails
on the unique index (``DuplicateKeyError``, or ``BulkWriteError`` from a bulk insert), and its
next attempt reads what the winner made. pymongo's ``with_transaction`` retries write conflicts,
not these: they are errors of the work, which only the work can answer by looking again.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from pymongo.errors import BulkWriteError, DuplicateKeyError

LOST_RACES = (DuplicateKeyError, BulkWriteError)
ATTEMPTS = 3

T = TypeVar("T")


def retried(run: Callable[[int], T], *, on: tuple[type[BaseException], ...] = LOST_RACES,
            attempts: int = ATTEMPTS) -> T:
    """``run(attempt)`` (attempt 0, 1, ...) until it returns, tried again after an error of ``on``,
    ``attempts`` times in all; the last attempt's error is raised. ``attempt > 0`` tells ``run``
    that an earlier attempt lost a race (it may look first, then, at what the winner made)."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(attempts - 1):
        try:
            return run(attempt)
        except on:
            continue
    return run(attempts - 1)
