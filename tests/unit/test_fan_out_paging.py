"""Announcements worked through in pages (``fan_outs``) against an in-memory fan-out store: who is
told, how the cursor moves, what a crash or a lost lease leaves. No broker, no database."""
from datetime import datetime, timedelta, timezone

import pytest

from services.common import leases
from services.notifications import fan_outs, rules
from services.notifications.policy import Preferences
from services.notifications.store import LeaseLost
from tests.unit.fakes.fan_outs import FakeFanOuts

LEASE_S = 60.0
START = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
EVENT = {"title": {"zh-CN": "国际美食节", "en": "International Food Festival"}, "venue": "桐梓林社区广场",
         "starts_at": "2026-12-12T10:00:00+08:00", "capacity": 1200}
DEFAULTS = Preferences(time_zone="Asia/Shanghai")


class Clock:
    def __init__(self):
        self.now = START

    def __call__(self):
        return self.now


def resident(number, community="tongzilin", status="active", tags=()):
    return {"_id": f"r{number:02}", "community_id": community, "status": status, "tags": list(tags),
            "preferred_language": "en", "consent": {"inapp": True}}


def announcement(jobs, audience="community", tags=()):
    facts = {"community_id": "tongzilin", "category": "culture", "audience": audience, "audience_tags": list(tags)}
    job = {"_id": "event_announced:fact-1", "kind": "event_announced", "fact_id": "fact-1", "category": "culture",
           "variables": {"event": EVENT}, "query": rules.audience_query(facts), "after": "", "status": "pending",
           "created_at": START, "claimable_at": START}
    jobs.add(job)
    return job["_id"]


def run(jobs, clock, page_size=3):
    return fan_outs.run(jobs, jobs.create, clock, DEFAULTS, page_size, LEASE_S)


def test_every_resident_of_the_audience_is_told_once_across_pages_and_the_cursor_advances():
    audience = [resident(n) for n in range(1, 8)]
    audience += [resident(8, community="yulin"), resident(9, status="departed")]
    jobs = FakeFanOuts(audience)
    job_id = announcement(jobs)
    assert run(jobs, Clock()) == 7
    assert jobs.recipients_told() == [f"r{n:02}" for n in range(1, 8)]
    assert jobs.pages_read == [["r01", "r02", "r03"], ["r04", "r05", "r06"], ["r07"]]
    assert jobs.cursors == ["r03", "r06", None]  # each page moves the cursor; the last one ends the job
    assert jobs.jobs[job_id]["status"] == "done" and jobs.jobs[job_id][leases.CLAIMABLE] is None
    assert run(jobs, Clock()) == 0 and jobs.pages_read[3:] == []  # a done job is never taken again


def test_a_tagged_announcement_tells_only_residents_with_one_of_its_tags():
    jobs = FakeFanOuts([resident(1, tags=["elderly"]), resident(2), resident(3, tags=["families", "elderly"])])
    announcement(jobs, audience="tagged", tags=["elderly"])
    assert run(jobs, Clock(), page_size=1) == 2
    assert jobs.recipients_told() == ["r01", "r03"]


def test_a_crash_in_a_page_loses_it_whole_and_the_next_run_resumes_at_the_cursor():
    jobs = FakeFanOuts([resident(n) for n in range(1, 8)])
    job_id = announcement(jobs)
    clock = Clock()

    def die_in_the_second_page(records):
        if records and records[0][0]["recipient"] == "r04":
            raise SystemExit("the process died")

    jobs.crash_before_commit = die_in_the_second_page
    with pytest.raises(SystemExit):
        run(jobs, clock)
    assert jobs.recipients_told() == ["r01", "r02", "r03"] and jobs.jobs[job_id]["after"] == "r03"
    jobs.crash_before_commit = None
    clock.now += timedelta(seconds=30)
    assert run(jobs, clock) == 0  # its lease has not run out: nobody else takes the job yet
    clock.now += timedelta(seconds=LEASE_S)
    assert run(jobs, clock) == 4
    assert jobs.pages_read[-2:] == [["r04", "r05", "r06"], ["r07"]]  # page 1 is not read again
    assert jobs.recipients_told() == [f"r{n:02}" for n in range(1, 8)]


def test_a_page_done_twice_creates_nothing_twice():
    jobs = FakeFanOuts([resident(n) for n in range(1, 6)])
    job_id = announcement(jobs)
    assert run(jobs, Clock()) == 5
    made = dict(jobs.notifications)
    # The same job worked through again from its start (a cursor written before the crash was lost):
    jobs.jobs[job_id].update({"after": "", "status": "pending", leases.CLAIMABLE: START})
    assert run(jobs, Clock()) == 0
    assert jobs.notifications == made and len(jobs.pages_read) == 4


def test_an_empty_audience_finishes_the_job():
    jobs = FakeFanOuts([resident(1, community="yulin")])
    job_id = announcement(jobs)
    assert run(jobs, Clock()) == 0
    assert jobs.notifications == {} and jobs.cursors == [None]
    assert jobs.jobs[job_id]["status"] == "done" and jobs.jobs[job_id][leases.CLAIMABLE] is None


def test_a_lost_lease_stops_the_instance_at_its_next_page_and_the_new_holder_finishes():
    jobs = FakeFanOuts([resident(n) for n in range(1, 8)])
    announcement(jobs)
    clock = Clock()
    taken_over = []
    create = jobs.create

    def slow_create(records, then=None):
        made = create(records, then)
        if not taken_over:  # after the first page, this instance stalls past its lease: another takes the job
            clock.now += timedelta(seconds=LEASE_S + 1)
            taken_over.append(jobs.claim(clock.now, LEASE_S))
        return made

    fan_outs.run(jobs, slow_create, clock, DEFAULTS, 3, LEASE_S)  # the first page, then ``LeaseLost`` stops it
    assert jobs.recipients_told() == ["r01", "r02", "r03"]  # the second page's transaction wrote nothing
    assert len(jobs.pages_read) == 2 and jobs.cursors == ["r03"]
    new_holder = taken_over[0]
    assert new_holder is not None and new_holder["after"] == "r03"
    assert fan_outs.work_through(jobs, new_holder, jobs.create, clock, DEFAULTS, 3, LEASE_S) == 4
    assert jobs.recipients_told() == [f"r{n:02}" for n in range(1, 8)]
    with pytest.raises(LeaseLost):  # the first holder's claim is worth nothing now
        jobs.create([], then=lambda session: jobs.advance({**new_holder, leases.OWNER: "first"}, None, clock(),
                                                          LEASE_S, session))
