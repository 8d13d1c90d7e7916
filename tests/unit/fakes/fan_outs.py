"""An in-memory ``store.FanOuts`` (fan-out jobs, the audience they page through) with the notifications
they create: the same interface, the same rules (a job is held by one lease owner, a page's
notifications and the job's cursor commit together or not at all, a notification id is made once)."""
from __future__ import annotations

import copy
import uuid
from datetime import timedelta

from services.common import leases
from services.notifications.compose import Recipient
from services.notifications.store import LeaseLost


class FakeFanOuts:
    def __init__(self, audience: list[dict]):
        self.audience = audience  # {"_id", "community_id", "status", "tags", "preferred_language", "consent"}
        self.jobs: dict[str, dict] = {}
        self.notifications: dict[str, dict] = {}
        self.cursors: list = []  # every ``after`` a committed page recorded, in order
        self.pages_read: list[list[str]] = []  # the ids of each page handed out
        self.crash_before_commit = None  # a function of the page's records: raise to die before the commit

    def add(self, job: dict) -> None:
        self.jobs[job["_id"]] = copy.deepcopy(job)

    # -- the interface of ``store.FanOuts`` --------------------------------------------------------

    def claim(self, now, lease_s):
        for job in sorted(self.jobs.values(), key=lambda j: j["_id"]):
            if job.get(leases.CLAIMABLE) is not None and job[leases.CLAIMABLE] <= now:
                job.update({leases.CLAIMABLE: now + timedelta(seconds=lease_s), leases.OWNER: uuid.uuid4().hex})
                return copy.deepcopy(job)
        return None

    def audience_pages(self, query, after, page_size, defaults):
        found = sorted((r for r in self.audience
                        if r["status"] == "active" and r["_id"] > after and _matches(r, query)), key=lambda r: r["_id"])
        for start in range(0, len(found), page_size):
            page = found[start:start + page_size]
            self.pages_read.append([r["_id"] for r in page])
            yield [Recipient(id=r["_id"], community_id=r["community_id"], language=r.get("preferred_language", "zh-CN"),
                             consent=r.get("consent") or {"inapp": True}, prefs=defaults) for r in page], \
                start + page_size >= len(found)

    def advance(self, job, after, now, lease_s, session=None):
        assert session is self._transaction, "a page's cursor is written in the page's transaction"
        stored = self.jobs[job["_id"]]
        if stored.get(leases.OWNER) != job[leases.OWNER]:
            raise LeaseLost(f"fan-out {job['_id']} was taken over by another instance")
        stored.update({"after": after, leases.CLAIMABLE: now + timedelta(seconds=lease_s)} if after is not None
                      else {"status": "done", leases.CLAIMABLE: None})
        self.cursors.append(after)

    # -- the service's ``_create_atomically``: ``store.create`` and ``then`` in one transaction ----------

    _transaction = None

    def create(self, records, then=None) -> list[dict]:
        before = copy.deepcopy((self.jobs, self.notifications, self.cursors))
        self._transaction = object()
        try:
            fresh = [n for n, _ in records if n["_id"] not in self.notifications]  # ``store.create``'s rule
            for notification in fresh:
                self.notifications[notification["_id"]] = notification
            if then is not None:
                then(self._transaction)
            if self.crash_before_commit is not None:
                self.crash_before_commit(records)
            return fresh
        except BaseException:
            self.jobs, self.notifications, self.cursors = before  # aborted: nothing of it stays
            raise
        finally:
            self._transaction = None

    def recipients_told(self) -> list[str]:
        return sorted(n["recipient"] for n in self.notifications.values())


def _matches(resident: dict, query: dict) -> bool:
    for field, wanted in query.items():
        if isinstance(wanted, dict):
            if not set(resident.get(field) or []) & set(wanted["$in"]):
                return False
        elif resident.get(field) != wanted:
            return False
    return True
