"""Linli's shared language: message types, their schemas and the envelope.

Every message on the bus is a CloudEvents 1.0 envelope (see ``envelope``) whose
``data`` is validated against the marshmallow schema registered for its
``type`` and version (see ``registry``). Services refer to message types
through the constants below, never through string literals.
"""
from contracts.envelope import Envelope, EnvelopeError, build_envelope, parse_envelope, parse_envelope_or_unknown
from contracts.registry import (
    ContractError,
    InvalidPayload,
    MessageType,
    UnknownMessageType,
    registry,
)
from contracts import residents as _residents  # noqa: F401  (registers types)
from contracts.cases import (  # noqa: E402
    CASE_ACCEPTED,
    CASE_ACKNOWLEDGED,
    CASE_CALLED_BACK,
    CASE_CLOSED,
    CASE_DISPATCHED,
    CASE_REJECTED,
    CASE_REOPENED,
    CASE_RESOLVED,
    CASE_SUBMITTED,
)
from contracts.events import (  # noqa: E402
    ATTENDANCE_RECORDED,
    EVENT_CANCELLED,
    EVENT_CHANGED,
    EVENT_COMPLETED,
    EVENT_SCHEDULED,
    FEEDBACK_SUBMITTED,
    REGISTRATION_CANCELLED,
    REGISTRATION_CONFIRMED,
    REGISTRATION_PROMOTED,
    REGISTRATION_WAITLISTED,
)
from contracts.ingest import EVENT_PROPOSED, INGEST_ACCEPTED, INGEST_TYPES, RESIDENT_FORM_SUBMITTED  # noqa: E402
from contracts.notifications import NOTIFICATION_OUTCOMES  # noqa: E402
from contracts.reports import COMMUNITY_ASSESSED  # noqa: E402

RESIDENT_REGISTERED = _residents.RESIDENT_REGISTERED
RESIDENT_UPDATED = _residents.RESIDENT_UPDATED
RESIDENT_MOVED = _residents.RESIDENT_MOVED
RESIDENT_DEPARTED = _residents.RESIDENT_DEPARTED
RESIDENT_PERMIT_EXPIRING = _residents.RESIDENT_PERMIT_EXPIRING
RESIDENT_ERASED = _residents.RESIDENT_ERASED
RESIDENT_IMPORT_COMPLETED = _residents.RESIDENT_IMPORT_COMPLETED

__all__ = [
    "ATTENDANCE_RECORDED",
    "CASE_ACCEPTED",
    "CASE_ACKNOWLEDGED",
    "CASE_CALLED_BACK",
    "CASE_CLOSED",
    "CASE_DISPATCHED",
    "CASE_REJECTED",
    "CASE_REOPENED",
    "CASE_RESOLVED",
    "CASE_SUBMITTED",
    "COMMUNITY_ASSESSED",
    "EVENT_CANCELLED",
    "EVENT_CHANGED",
    "EVENT_COMPLETED",
    "EVENT_PROPOSED",
    "EVENT_SCHEDULED",
    "FEEDBACK_SUBMITTED",
    "REGISTRATION_CANCELLED",
    "REGISTRATION_CONFIRMED",
    "REGISTRATION_PROMOTED",
    "REGISTRATION_WAITLISTED",
    "ContractError",
    "Envelope",
    "EnvelopeError",
    "INGEST_ACCEPTED",
    "INGEST_TYPES",
    "InvalidPayload",
    "NOTIFICATION_OUTCOMES",
    "MessageType",
    "RESIDENT_DEPARTED",
    "RESIDENT_ERASED",
    "RESIDENT_FORM_SUBMITTED",
    "RESIDENT_IMPORT_COMPLETED",
    "RESIDENT_MOVED",
    "RESIDENT_PERMIT_EXPIRING",
    "RESIDENT_REGISTERED",
    "RESIDENT_UPDATED",
    "UnknownMessageType",
    "build_envelope",
    "parse_envelope",
    "parse_envelope_or_unknown",
    "registry",
]
