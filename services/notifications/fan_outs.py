"""Announcements worked through page by page: the use case behind ``run_fan_outs``.

Each page is one transaction: its notifications and the job's cursor (``jobs.advance``, which
also renews the lease) commit together, so a crash repeats at most the page it was in, and the
notification ids (``<kind>:<fact>:<recipient>``) make a repeated page create nothing twice. A job is
held by one instance at a time; an instance whose lease ran out meets ``LeaseLost`` at its next
page, whose transaction then writes nothing, and leaves the job to whoever took it over.
"""
from __future__ import annotations

import logging

from services.notifications import rules
from services.notifications.store import LeaseLost

log = logging.getLogger(__name__)


def run(jobs, create, now_fn, defaults, page_size: int, lease_s: float) -> int:
    """Every claimable job, one after the other; returns how many notifications were made.
    ``jobs``: the fan-out store (``store.FanOuts``); ``create(records, then)``: the records created in a
    transaction of their own with ``then(session)`` in it, returning those made anew."""
    made = 0
    while (job := jobs.claim(now_fn(), lease_s)) is not None:
        try:
            made += work_through(jobs, job, create, now_fn, defaults, page_size, lease_s)
        except LeaseLost as exc:
            log.warning("%s", exc)
    return made


def work_through(jobs, job: dict, create, now_fn, defaults, page_size: int, lease_s: float) -> int:
    """One job's audience from its cursor on, a page a transaction; ``LeaseLost`` if it was taken over."""
    made, finished = 0, False

    def advance(after):
        return lambda session: jobs.advance(job, after, now_fn(), lease_s, session)

    for records, after in rules.fan_out(jobs, job, page_size, now_fn(), defaults):
        made += len(create(records, then=advance(after)))
        finished = after is None
    if not finished:  # nobody (left) to tell
        create([], then=advance(None))
    return made
