"""The events service: community events, registration, waitlist, check-in and feedback.

Entrypoints translate: load the request through a schema, check the token's
community, ask residents (over RPC) who a resident is, call one use case.
"""
import io
from datetime import timedelta

import qrcode
from qrcode.image.pure import PyPNGImage

from marshmallow import Schema, ValidationError, fields, validate
from nameko.dependency_providers import Config
from nameko.exceptions import RemoteError
from nameko.rpc import RpcProxy, rpc
from nameko.timer import timer
from werkzeug.wrappers import Response

from contracts import EVENT_PROPOSED
from services.common.base import ServiceBase
from services.common.ingest_entrypoints import ingest_handler
from services.common.mongo import MongoDatabase
from services.common.outbox import Outbox
from services.common.web import ApiError, NotFound, ValidationFailed, api
from services.events import calendar, domain, ingest, registrations
from services.events.documents import ALL_DOCUMENTS
from services.events.store import EventsStore


def checkin_qr_png(event_id: str, code: str) -> bytes:
    """What the door scanner reads: the event and the registration's code."""
    image = qrcode.make(f"linli:checkin:{event_id}:{code}", image_factory=PyPNGImage)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue()


class RegistrationRequest(Schema):
    resident_id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class CheckIn(Schema):
    resident_id = fields.String(validate=validate.Length(min=1, max=64))
    code = fields.String(validate=validate.Length(min=1, max=64))


class Rating(Schema):
    resident_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    rating = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=10))
    comment = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))



class RuleError(ApiError):
    """A domain rule, as an HTTP answer naming it."""

    def __init__(self, broken: domain.RuleBroken):
        super().__init__(broken.message, {"rule": broken.code}, code=broken.code)
        self.status = broken.status


def _rules(call):
    try:
        return call()
    except domain.RuleBroken as broken:
        raise RuleError(broken) from None
    except ValidationError as exc:
        raise ValidationFailed("the change is not valid", {"fields": exc.normalized_messages()}) from None


class EventsService(ServiceBase):
    name = "events"

    db = MongoDatabase("events", documents=ALL_DOCUMENTS)
    outbox = Outbox("events")
    store = EventsStore()  # the use cases' repository, handed to each (a fake one in unit tests)
    residents = RpcProxy("residents")
    config = Config()

    # -- events ---------------------------------------------------------------

    @api("POST", "/events", scope="events:write", request_schema=domain.CreateEvent, body="the event")
    def create_over_http(self, request):
        command = request.body
        request.principal.require_community(command["community_id"])
        return 201, {"ids": calendar.create(self.store, command)}

    @api("GET", "/events/<event_id>", scope="events:read", query_schema=domain.EventQuery)
    def get_over_http(self, request, event_id):
        event = self._visible(request, event_id)
        return {**calendar.view(event, request.args.get("lang", "zh-CN")),
                "feedback": registrations.feedback_summary(self.store, event)}

    @api("GET", "/events", scope="events:read", query_schema=calendar.ListEvents, query="the listing")
    def list_over_http(self, request):
        query = request.query
        request.principal.require_community(query["community_id"])
        return calendar.listing(self.store, query)

    @api("PATCH", "/events/<event_id>", scope="events:write",
         request_schema=domain.ChangeEvent, body="the change")
    def change_over_http(self, request, event_id):
        changes = request.body
        event = self._visible(request, event_id)
        changed = _rules(lambda: self._stored(self._change, event.id, changes))
        return {"id": event_id, "changed_fields": changed}

    @api("POST", "/events/<event_id>/<action>", scope="events:write")
    def lifecycle_over_http(self, request, event_id, action):
        self._require_visible(request, event_id)
        actions = {"schedule": self.schedule, "cancel": self.cancel, "complete": self.complete}
        if action not in actions:
            raise NotFound(f"no action {action!r}; try schedule, cancel or complete")
        _rules(lambda: actions[action](event_id))
        return {"id": event_id, "status": calendar.find(self.store, event_id).status}

    # -- registrations --------------------------------------------------------

    @api("POST", "/events/<event_id>/registrations", scope="events:write",
         request_schema=RegistrationRequest, body="the registration")
    def register_over_http(self, request, event_id):
        body = request.body
        self._require_visible(request, event_id)
        return 201, _rules(lambda: self._register(event_id, self._resident(body["resident_id"])))

    @api("DELETE", "/events/<event_id>/registrations/<resident_id>", scope="events:write")
    def cancel_over_http(self, request, event_id, resident_id):
        self._require_visible(request, event_id)
        registration = self._registration(event_id, resident_id)
        _rules(lambda: self._stored_in_turn(event_id, self._end_registration, registration, "by_resident"))
        return {"id": str(registration.id), "status": "cancelled"}

    @api("POST", "/events/<event_id>/registrations/<resident_id>/confirm", scope="events:write")
    def confirm_over_http(self, request, event_id, resident_id):
        self._require_visible(request, event_id)
        registration = self._registration(event_id, resident_id)
        _rules(lambda: self._stored(registrations.confirm_offer, registration))
        return {"id": str(registration.id), "status": "confirmed"}

    @api("GET", "/events/<event_id>/registrations/<resident_id>", scope="events:read")
    def registration_over_http(self, request, event_id, resident_id):
        self._require_visible(request, event_id)
        return registrations.view(self.store, self._registration(event_id, resident_id))

    @api("GET", "/events/<event_id>/registrations/<resident_id>/qr.png", scope="events:read")
    def qr_over_http(self, request, event_id, resident_id):
        self._require_visible(request, event_id)
        registration = self._registration(event_id, resident_id)
        return Response(checkin_qr_png(event_id, registration.code), mimetype="image/png")

    @api("POST", "/events/<event_id>/check-ins", scope="events:write",
         request_schema=CheckIn, body="the check-in")
    def check_in_over_http(self, request, event_id):
        body = request.body
        if ("resident_id" in body) == ("code" in body):
            raise ValidationFailed("check in by resident_id or by code, one of them",
                                   {"fields": {"resident_id": ["give this or code"]}})
        event = self._visible(request, event_id)
        resident = self._resident(body["resident_id"]) if "resident_id" in body else None
        registration = _rules(lambda: self._stored_in_turn(event_id, registrations.check_in, event,
                                                           resident=resident, code=body.get("code")))
        return registrations.view(self.store, registration)

    @api("POST", "/events/<event_id>/feedback", scope="events:write",
         request_schema=Rating, body="the feedback")
    def rate_over_http(self, request, event_id):
        body = request.body
        event = self._visible(request, event_id)
        _rules(lambda: self._stored(registrations.rate, event, body["resident_id"], body["rating"], body["comment"]))
        return 201, registrations.feedback_summary(self.store, event)

    # -- the ingest door, for internal systems of the city --------------------

    @ingest_handler(EVENT_PROPOSED, batch=True)
    def ingest_proposal(self, envelopes):
        return ingest.propose_all(self.store, self.db, envelopes)

    # -- RPC and timers -------------------------------------------------------

    @rpc
    def register(self, event_id: str, resident_id: str) -> dict:
        return self._register(event_id, self._resident(resident_id))

    @rpc
    def get(self, event_id: str) -> dict:
        return calendar.view(calendar.find(self.store, event_id))

    @rpc
    def create(self, event: dict) -> list:
        return calendar.create(self.store, domain.CreateEvent().load(event))

    @rpc
    def schedule(self, event_id: str) -> None:
        self._stored(calendar.schedule, event_id)

    @rpc
    def cancel(self, event_id: str) -> None:
        self._stored(calendar.cancel, self._end_registration, event_id)

    @rpc
    def complete(self, event_id: str) -> None:
        self._stored(calendar.complete, event_id)

    @rpc
    def cancel_registration(self, event_id: str, resident_id: str) -> None:
        registration = self._registration(event_id, resident_id)
        self._stored_in_turn(event_id, self._end_registration, registration, "by_resident")

    @rpc
    def check_in(self, event_id: str, resident_id: str | None = None, code: str | None = None) -> dict:
        resident = self._resident(resident_id) if resident_id else None
        event = calendar.find(self.store, event_id)
        return registrations.view(self.store, self._stored_in_turn(event_id, registrations.check_in, event,
                                                                   resident=resident, code=code))

    @rpc
    def rate(self, event_id: str, resident_id: str, rating: int, comment: str | None = None) -> dict:
        body = Rating().load({"resident_id": resident_id, "rating": rating, "comment": comment})
        event = calendar.find(self.store, event_id)
        self._stored(registrations.rate, event, body["resident_id"], body["rating"], body["comment"])
        return registrations.feedback_summary(self.store, event)

    @rpc
    def expire_offers(self) -> int:
        return registrations.expire_offers(self.store, self.outbox, self._promotion_window())

    @timer(interval=30)
    def expire_offers_regularly(self):
        registrations.expire_offers(self.store, self.outbox, self._promotion_window())

    # -- helpers --------------------------------------------------------------

    def _promotion_window(self) -> timedelta:
        return timedelta(minutes=float(self.config.get("PROMOTION_CONFIRM_MINUTES", 24 * 60)))

    def _stored(self, use_case, *args, turn=None, **kwargs):
        """``use_case(store, session, publish, *args, **kwargs)``, whose writes and messages commit together
        (the outbox's unit of work). ``turn``: as ``Staging.transaction``'s."""
        return self.outbox.transaction(
            lambda session, publish: use_case(self.store, session, publish, *args, **kwargs), turn=turn)

    def _stored_in_turn(self, event_id: str, use_case, *args, **kwargs):
        """``_stored`` for a use case that writes the event's places: one such transaction of an event at a
        time in this process (``registrations.one_at_a_time``) until its commit; then it is published."""
        return self._stored(use_case, *args, turn=registrations.one_at_a_time(event_id), **kwargs)

    def _register(self, event_id: str, resident: dict) -> dict:
        registration, position = self._stored_in_turn(event_id, registrations.register, event_id, resident)
        return registrations.view(self.store, registration, position)

    def _change(self, store, session, publish, event_id, changes) -> list:
        changed = calendar.change(store, session, publish, calendar.find(store, str(event_id), session), changes)
        if "capacity" in changed:
            registrations.fill_from_waitlist(store, session, publish, self._promotion_window(), event_id)
        return changed

    def _end_registration(self, store, session, publish, registration, reason):
        registrations.cancel(store, session, publish, self._promotion_window(), registration, reason)

    def _visible(self, request, event_id):
        event = calendar.find(self.store, event_id)
        request.principal.require_community(event.community_id)
        return event

    def _require_visible(self, request, event_id) -> None:
        """As ``_visible``, for a route that reads the event in its transaction, if at all."""
        request.principal.require_community(calendar.community_of(self.store, event_id))

    def _registration(self, event_id, resident_id):
        registration = self.store.registration_of(event_id, resident_id)
        if registration is None:
            raise NotFound(f"resident {resident_id} has no registration for event {event_id}")
        return registration

    def _resident(self, resident_id: str) -> dict:
        try:
            return self.residents.membership(resident_id)
        except RemoteError as exc:
            if exc.exc_type == "NotFound":
                raise ApiError(f"no resident with id {resident_id}", {"rule": "unknown_resident"},
                               code="unknown_resident") from None
            raise
