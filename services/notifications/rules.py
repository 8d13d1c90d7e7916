"""The rules that turn domain messages into notifications: who is told, of what.

Each rule takes the message and a ``Context`` (the database in the handler's
transaction, the clock, settings, and how to look an event up) and returns
the records to create; the handler stores them together with the record
that the message was processed.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.notifications import store
from services.notifications.compose import Composer, centre_of
from services.notifications.event_view import EventDetails
from services.notifications.policy import Preferences


@dataclass
class Context:
    db: object
    session: object
    now: datetime
    defaults: Preferences  # the community's time zone and quiet hours
    event_details: EventDetails  # event id -> title, venue, start, capacity (the view, else events)
    community_names: dict
    centre_emails: dict

    def community(self, community_id: str) -> dict:
        return self.community_names.get(community_id) or {"en": community_id, "zh-CN": community_id}

    def recipients(self, query: dict):
        return store.recipients(self.db, query, self.defaults, session=self.session)

    @property
    def time_zone(self) -> str:
        return self.defaults.time_zone


def _records(composer: Composer, recipients) -> list:
    return [r for r in (composer.records(recipient) for recipient in recipients) if r is not None]


def welcome(ctx: Context, envelopes) -> list:
    """One welcome per newly registered resident: one query for all of them, each text rendered
    once per community and language."""
    recipients = {r.id: r for r in ctx.recipients({"_id": {"$in": [e.data["resident_id"] for e in envelopes]}})}
    rendered, records = {}, []
    for envelope in envelopes:
        recipient = recipients.get(envelope.data["resident_id"])
        if recipient is None:
            continue
        community = envelope.data["community_id"]
        composer = Composer("welcome", envelope.id, {"community": ctx.community(community)}, ctx.now,
                            rendered=rendered.setdefault(community, {}))
        records += _records(composer, [recipient])
    return records


def audience_query(facts: dict) -> dict:
    """Residents an event is announced to: its community's, or those with one of its tags."""
    query = {"community_id": facts["community_id"]}
    if facts["audience"] == "tagged":
        query["tags"] = {"$in": facts.get("audience_tags") or []}
    return query


def event_announced(ctx: Context, envelope) -> dict:
    """A fan-out job rather than records: a community can have 100,000 residents, more than
    one transaction should hold. ``fan_out`` works through it in pages."""
    facts = envelope.data
    return {"_id": f"event_announced:{envelope.id}", "kind": "event_announced", "fact_id": envelope.id,
            "category": facts["category"], "variables": {"event": ctx.event_details(facts["event_id"])},
            "query": audience_query(facts), "after": "", "status": "pending", "created_at": ctx.now,
            "claimable_at": ctx.now}


def fan_out(jobs, job: dict, page_size: int, now: datetime, defaults: Preferences):
    """The records of each page of a fan-out job's audience after ``job["after"]``, and where the page
    ended (None after the last page): ``(records, after)``, one page at a time. ``jobs``: the fan-out
    jobs' store (``store.FanOuts``)."""
    composer = Composer(job["kind"], job["fact_id"], job["variables"], now, category=job["category"])
    pages = jobs.audience_pages(job["query"], job["after"], page_size, defaults)
    for page, last in pages:
        yield _records(composer, page), None if last else page[-1].id


def to_registrants(kind: str, statuses=store.HOLDING_REGISTRATION):
    """event.changed / event.cancelled: everyone holding or waiting for a place."""

    def rule(ctx: Context, envelope) -> list:
        event_id = envelope.data["event_id"]
        registrants = store.registrant_ids(ctx.db, event_id, statuses, session=ctx.session)
        if not registrants:
            return []
        composer = Composer(kind, envelope.id, {"event": ctx.event_details(event_id)}, ctx.now)
        return _records(composer, ctx.recipients({"_id": {"$in": registrants}}))

    return rule


def to_the_registrants(kind: str, *extra_fields: str):
    """registration.confirmed / waitlisted / promoted, a batch of them: each the resident it is about.
    One read of the events' details, one of residents and one of preferences, however many."""

    def rule(ctx: Context, envelopes) -> list:
        events = ctx.event_details.many(e.data["event_id"] for e in envelopes)
        resident_ids = sorted({e.data["resident_id"] for e in envelopes})
        recipients = {r.id: r for r in ctx.recipients({"_id": {"$in": resident_ids}})}
        rendered, records = {}, []
        for envelope in envelopes:
            facts = envelope.data
            recipient = recipients.get(facts["resident_id"])
            if recipient is None:
                continue
            extra = {f: facts[f] for f in extra_fields}
            same_text = (facts["event_id"], *(str(value) for value in extra.values()))
            composer = Composer(kind, envelope.id, {"event": events[facts["event_id"]], **extra}, ctx.now,
                                rendered=rendered.setdefault(same_text, {}))
            records += _records(composer, [recipient])
        return records

    return rule


PERMIT_LABELS = {
    "residence_permit_work": {"en": "residence permit (work)", "zh-CN": "工作类居留许可"},
    "residence_permit_study": {"en": "residence permit (study)", "zh-CN": "学习类居留许可"},
    "residence_permit_family": {"en": "residence permit (family)", "zh-CN": "团聚类居留许可"},
    "residence_permit_other": {"en": "residence permit", "zh-CN": "居留许可"},
    "visa_business": {"en": "business visa", "zh-CN": "商务签证"},
    "visa_tourist": {"en": "tourist visa", "zh-CN": "旅游签证"},
    "visa_other": {"en": "visa", "zh-CN": "签证"},
}


def permit_expiring(ctx: Context, envelope) -> list:
    """The resident, and the community's foreign-resident service centre (critical: no opt-out)."""
    facts = envelope.data
    variables = {"permit_label": PERMIT_LABELS.get(facts["permit_type"], PERMIT_LABELS["residence_permit_other"]),
                 "expires_on": facts["expires_on"], "days_left": facts["days_left"],
                 "resident_id": facts["resident_id"]}
    records = _records(Composer("permit_expiring", envelope.id, variables, ctx.now),
                       ctx.recipients({"_id": facts["resident_id"]}))
    centre = centre_of(facts["community_id"], ctx.centre_emails.get(facts["community_id"]), ctx.time_zone)
    return records + _records(Composer("permit_expiring_centre", envelope.id, variables, ctx.now), [centre])


def reminders_due(ctx: Context) -> list:
    """Reminders for events starting tomorrow (community time), one per registrant per event start."""
    zone = ZoneInfo(ctx.time_zone)
    tomorrow = ctx.now.astimezone(zone).date() + timedelta(days=1)
    start = datetime.combine(tomorrow, datetime.min.time(), tzinfo=zone)
    records = []
    starting = store.events_starting(ctx.db, start, start + timedelta(days=1))
    details = ctx.event_details.many(event["_id"] for event in starting)
    for event in starting:
        registrants = store.registrant_ids(ctx.db, event["_id"])
        if not registrants:
            continue
        fact = f"{event['_id']}@{event['starts_at'].isoformat()}"  # a moved event is reminded again
        composer = Composer("event_reminder", fact, {"event": details[event["_id"]]}, ctx.now)
        records += _records(composer, ctx.recipients({"_id": {"$in": registrants}}))
    return records
