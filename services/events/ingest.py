"""``event.proposed``: a community organisation's proposal, sent by an internal system, becomes a draft event.

The proposal is loaded through the same ``CreateEvent`` rules as ``POST /events``
(one event, no series); a batch of proposals' drafts and the records that the
messages were ingested are written in one transaction, so a redelivery finds the
same draft: a batch costs a look-up of the records, the drafts' insert, the
records' insert and the commit, whatever its size.
"""
from __future__ import annotations

from datetime import datetime, timezone

from marshmallow import ValidationError

from services.common.ingest import IngestRejected, error, once_each, rejected_from_validation
from services.events import domain

_NOT_EVENT_FIELDS = ("proposal_reference",)


def proposal_command(data: dict, now: datetime) -> dict:
    """The ``CreateEvent`` command of a proposal, or ``IngestRejected`` naming every broken rule. Pure."""
    given = {k: v for k, v in data.items() if v is not None and k not in _NOT_EVENT_FIELDS}
    try:
        command = domain.CreateEvent().load(given)
    except ValidationError as exc:
        raise rejected_from_validation(exc) from None
    if command["starts_at"] <= now:
        raise IngestRejected([error("event_in_the_past", "data.starts_at", "a proposed event starts in the future")])
    command.pop("recurrence", None)
    return command


def propose_all(store, database, envelopes) -> list:
    """Create each proposal's draft once per message, a batch in one transaction with the records that
    the messages were ingested; returns, for each envelope, its ``ingest.accepted`` outcome or the
    ``IngestRejected`` that parks it (a rejected one is not recorded: sent again, it is judged again)."""
    def create(session, fresh):
        outcomes = [_draft_of(store, envelope.data, datetime.now(timezone.utc))  # anew each attempt
                    for envelope in fresh]
        drafts = [outcome for outcome in outcomes if isinstance(outcome, dict)]
        if drafts:
            store.add_events(drafts, session)
        return [outcome if isinstance(outcome, IngestRejected) else
                {"outcome": "draft_created", "event_id": str(outcome["_id"])} for outcome in outcomes]

    return once_each(database, envelopes, create)


def _draft_of(store, data: dict, now: datetime):
    """The draft event to store (its ``_id`` given by the insert), or the ``IngestRejected`` naming every broken rule."""
    try:
        command = proposal_command(data, now)
    except IngestRejected as rejected:
        return rejected
    return store.draft({**command, "places_left": command["capacity"]})
