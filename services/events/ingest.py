"""``event.proposed``: a community organisation's proposal, sent by an internal system, becomes a draft event.

The proposal is loaded through the same ``CreateEvent`` rules as ``POST /events``
(one event, no series); the draft and the record that this message was ingested
are written in one transaction, so a redelivery finds the same draft.
"""
from __future__ import annotations

from datetime import datetime, timezone

from marshmallow import ValidationError

from services.common.ingest import IngestRejected, error, once, rejected_from_validation
from services.events import domain
from services.events.documents import Event

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


def propose(database, envelope) -> dict:
    """Create the proposal's draft once per message; returns the ``ingest.accepted`` outcome."""
    command = proposal_command(envelope.data, datetime.now(timezone.utc))
    draft = Event(**command, places_left=command["capacity"])
    draft.validate()
    document = draft.to_mongo().to_dict()

    def create(session):
        Event._get_collection().insert_one(document, session=session)
        return {"outcome": "draft_created", "event_id": str(document["_id"])}

    result, _ = once(database, envelope, create)
    return result
