"""The notifications service: residents told what concerns them, in their language, on their channels.

Message handlers keep the service's view of residents, events and
registrations, and apply the rules in ``rules`` in the same transaction as
the record that the message was processed. Timers send due email/SMS
deliveries, assemble digests and create the day-before reminders.
"""
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import jwt
from nameko.dependency_providers import Config
from nameko.rpc import RpcProxy, rpc
from nameko.timer import timer

from contracts import (
    EVENT_CANCELLED, EVENT_CHANGED, EVENT_COMPLETED, EVENT_SCHEDULED, NOTIFICATION_OUTCOMES, REGISTRATION_CANCELLED,
    REGISTRATION_CONFIRMED, REGISTRATION_PROMOTED, REGISTRATION_WAITLISTED, RESIDENT_DEPARTED, RESIDENT_ERASED,
    RESIDENT_MOVED, RESIDENT_PERMIT_EXPIRING, RESIDENT_REGISTERED, RESIDENT_UPDATED,
)
from services.common.auth import AuthError
from services.common.base import ServiceBase
from services.common.messaging import fact_id, message_handler
from services.common.mongo import MongoDatabase
from services.common.outbox import Outbox
from services.common.races import retried
from services.common.sealing import OpenSealed
from services.common.community_time import community_time_zone
from services.common.web import NotFound, api
from services.notifications import delivery, fan_outs, rules, store
from services.notifications.channels import Channels
from services.notifications.compose import quiet_hours_from
from services.notifications.event_view import EventDetails
from services.notifications.policy import Preferences
from services.notifications.schemas import InboxQuery, PreferencesSchema, UnsubscribeQuery

UNSUBSCRIBE_AUDIENCE = "linli:unsubscribe"
FAN_OUT_LEASE_S = 60.0  # renewed by every page; a page takes well under a second
ENDINGS = ("sent", "failed", "skipped")  # how a delivery can end (a retry is not an end)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _when(value: str | None) -> datetime:
    return datetime.fromisoformat(value) if value else _now()


class NotificationsService(ServiceBase):
    name = "notifications"

    db = MongoDatabase("notifications", prepare=store.ensure_indexes)
    channels = Channels()
    outbox = Outbox("notifications")
    residents = RpcProxy("residents")
    events = RpcProxy("events")
    # Opens the personal fields the residents service sealed for this service (contacts).
    open_personal = OpenSealed()
    config = Config()

    # -- the service's view of residents --------------------------------------------

    @message_handler(RESIDENT_REGISTERED, batch=True)
    def on_resident_registered(self, envelopes):
        store.upsert_residents(self.db, [envelope.data for envelope in envelopes], session=self.db.session)
        self._create(rules.welcome(self._context(), envelopes))

    @message_handler(RESIDENT_UPDATED)
    def on_resident_updated(self, envelope):
        store.upsert_resident(self.db, envelope.data, session=self.db.session)

    @message_handler(RESIDENT_MOVED)
    def on_resident_moved(self, envelope):
        store.upsert_resident(self.db, envelope.data, session=self.db.session)

    @message_handler(RESIDENT_DEPARTED)
    def on_resident_departed(self, envelope):
        store.set_resident_status(self.db, envelope.data["resident_id"], "departed", session=self.db.session)

    @message_handler(RESIDENT_ERASED)
    def on_resident_erased(self, envelope):
        store.set_resident_status(self.db, envelope.data["resident_id"], "erased", session=self.db.session)

    @message_handler(RESIDENT_PERMIT_EXPIRING)
    def on_permit_expiring(self, envelope):
        self._create(rules.permit_expiring(self._context(), envelope))

    # -- events and registrations ------------------------------------------------------

    @message_handler(EVENT_SCHEDULED)
    def on_event_scheduled(self, envelope):
        store.upsert_event(self.db, envelope.data, "scheduled", session=self.db.session)
        store.add_fan_out(self.db, rules.event_announced(self._context(), envelope), session=self.db.session)

    @message_handler(EVENT_CHANGED)
    def on_event_changed(self, envelope):
        store.upsert_event(self.db, envelope.data, "scheduled", session=self.db.session)
        context = self._context()
        context.event_details.refresh([envelope.data["event_id"]])  # the venue may be new; the message has none
        self._create(rules.to_registrants("event_changed")(context, envelope))

    @message_handler(EVENT_CANCELLED)
    def on_event_cancelled(self, envelope):
        store.upsert_event(self.db, envelope.data, "cancelled", session=self.db.session)
        # Registrations ended by the cancellation may be recorded before it arrives.
        rule = rules.to_registrants("event_cancelled", (*store.HOLDING_REGISTRATION, "cancelled_with_event"))
        self._create(rule(self._context(), envelope))

    @message_handler(EVENT_COMPLETED)
    def on_event_completed(self, envelope):
        store.upsert_event(self.db, envelope.data, "completed", session=self.db.session)

    @message_handler(REGISTRATION_CONFIRMED, batch=True)
    def on_registration_confirmed(self, envelopes):
        self._registrations(envelopes, "confirmed", rules.to_the_registrants("registration_confirmed"))

    @message_handler(REGISTRATION_WAITLISTED, batch=True)
    def on_registration_waitlisted(self, envelopes):
        rule = rules.to_the_registrants("registration_waitlisted", "waitlist_position")
        self._registrations(envelopes, "waitlisted", rule)

    @message_handler(REGISTRATION_PROMOTED, batch=True)
    def on_registration_promoted(self, envelopes):
        self._registrations(envelopes, "offered", rules.to_the_registrants("registration_promoted", "confirm_by"))

    @message_handler(REGISTRATION_CANCELLED, batch=True)
    def on_registration_cancelled(self, envelopes):
        store.set_registrations(self.db, [
            (e.data, "cancelled_with_event" if e.data["reason"] == "event_cancelled" else "cancelled")
            for e in envelopes], session=self.db.session)

    def _registrations(self, envelopes, status: str, rule) -> None:
        """A batch of one registration message type: the registrations, then the notifications."""
        store.set_registrations(self.db, [(e.data, status) for e in envelopes], session=self.db.session)
        self._create(rule(self._context(), envelopes))

    # -- HTTP ------------------------------------------------------------------------------

    @api("GET", "/residents/<resident_id>/inbox", scope="notifications:read", query_schema=InboxQuery, query="the listing")
    def inbox(self, request, resident_id):
        self._require_resident_community(request, resident_id)
        return {"resident_id": resident_id, **self._inbox_page(request, resident_id)}

    @api("POST", "/residents/<resident_id>/inbox/<notification_id>/read", scope="notifications:write")
    def mark_read(self, request, resident_id, notification_id):
        self._require_resident_community(request, resident_id)
        if not store.mark_read(self.db, resident_id, notification_id, _now()):
            raise NotFound(f"no notification {notification_id} for resident {resident_id}")
        return {"id": notification_id, "read": True}

    @api("GET", "/communities/<community_id>/inbox", scope="notifications:read", query_schema=InboxQuery, query="the listing")
    def centre_inbox(self, request, community_id):
        request.principal.require_community(community_id)
        return {"community_id": community_id, **self._inbox_page(request, f"centre:{community_id}")}

    @api("GET", "/residents/<resident_id>/preferences", scope="notifications:read")
    def get_preferences(self, request, resident_id):
        self._require_resident_community(request, resident_id)
        saved = store.preferences(self.db, resident_id) or {}
        return {"resident_id": resident_id, **{k: v for k, v in saved.items() if k != "_id"}}

    @api("PUT", "/residents/<resident_id>/preferences", scope="notifications:write",
         request_schema=PreferencesSchema, body="the preferences")
    def put_preferences(self, request, resident_id):
        prefs = request.body
        self._require_resident_community(request, resident_id)
        store.save_preferences(self.db, resident_id, prefs)
        return {"resident_id": resident_id, **prefs}

    @api("POST", "/unsubscribe", query_schema=UnsubscribeQuery, query="the query")
    def unsubscribe(self, request):
        """One-click unsubscribe (RFC 8058): the signed token from the email is the authority."""
        token = request.query["token"]
        try:
            claims = jwt.decode(token, self.config["JWT_SECRET"], algorithms=["HS256"], audience=UNSUBSCRIBE_AUDIENCE)
        except jwt.PyJWTError:
            raise AuthError("this unsubscribe link is not valid") from None
        store.opt_out(self.db, claims["sub"], claims["category"], claims["channel"])
        return {"unsubscribed": {"category": claims["category"], "channel": claims["channel"]}}

    # -- RPC and timers ------------------------------------------------------------------------

    @rpc
    def run_deliveries(self) -> dict:
        return delivery.deliver_due(self.db, self.channels, None, self._unsubscribe_url, _now,
                                    self._delivery_settings(), finish=self._finish_deliveries,
                                    addresses_for=self._addresses_for)

    @rpc
    def run_digests(self, now: str | None = None) -> int:
        """Digests of everything held until ``now`` (default: the present), sent at once."""
        return delivery.assemble_digests(self.db, self._create_atomically, _when(now), _now())

    @rpc
    def run_event_reminders(self, now: str | None = None) -> int:
        ctx = self._context(now=_when(now), session=None)
        return len(self._create_atomically(rules.reminders_due(ctx)))

    @rpc
    def run_fan_outs(self, page_size: int = 1000) -> int:
        """Work through announcements page by page, each page in its own transaction, each job held
        by one instance at a time (a lease every page renews); a page repeated after a crash (or by
        an instance that took over a job whose lease ran out) creates nothing twice."""
        defaults = self._context(session=None).defaults
        return fan_outs.run(store.FanOuts(self.db), self._create_atomically, _now, defaults, page_size, FAN_OUT_LEASE_S)

    @timer(interval=1)
    def fan_out_regularly(self):
        self.run_fan_outs()

    @timer(interval=1)
    def deliver_regularly(self):
        self.run_deliveries()

    @timer(interval=60)
    def digests_and_reminders_regularly(self):
        self.run_digests()
        self.run_event_reminders()

    # -- helpers ------------------------------------------------------------------------------------

    def _context(self, now=None, session="handler") -> rules.Context:
        session = self.db.session if session == "handler" else session
        return rules.Context(
            db=self.db, session=session, now=now or _now(),
            defaults=Preferences(time_zone=self._time_zone(),
                                 quiet_hours=quiet_hours_from(self.config.get("DEFAULT_QUIET_HOURS", "22:00-08:00"))),
            event_details=EventDetails(self.db, session, self.events.get),
            community_names=self.config.get("COMMUNITY_NAMES") or {},
            centre_emails=self.config.get("SERVICE_CENTRE_EMAILS") or {})

    def _create(self, records) -> list:
        return self._report_inbox(store.create(self.db, records, session=self.db.session), self.db.session)

    def _create_atomically(self, records, then=None) -> list:
        """``store.create`` (and ``then(session)``) with the outcomes it reports, in a transaction of its
        own, for timers outside a handler (reminders, fan-outs, digests). Two instances may race to create the same records: the
        loser's transaction fails on the unique ids, and its retry finds them made."""
        def work(session, publish):
            made = store.create(self.db, records, session=session)
            if then is not None:
                then(session)
            return self._report_inbox(made, session)

        return retried(lambda attempt: self.outbox.transaction(work))

    def _report_inbox(self, notifications: list[dict], session) -> list[dict]:
        """Tell reports how many notifications reached inboxes (counts per community and kind)."""
        self._publish_outcomes(session, [n for n in notifications if n["in_inbox"] and n["resident_id"]],
                               key=lambda n: (n["community_id"], n["kind"], "inapp", "sent"))
        return notifications

    def _finish_deliveries(self, attempts: list, now: datetime) -> list:
        """How a batch of deliveries went and the outcomes reports counts, in one transaction."""
        def record(session, publish):
            recorded = store.finish_batch(self.db, attempts, now, session=session)
            # A retry is not an end; a service centre's copy is not a resident's notification.
            ended = [a.claimed | {"outcome": a.outcome} for a in recorded
                     if a.outcome in ENDINGS and a.claimed["resident_id"]]
            self._publish_outcomes(session, ended, key=lambda d: (d["community_id"], d["kind"], d["channel"],
                                                                  d["outcome"]))
            return recorded

        return self.outbox.transaction(record)

    def _publish_outcomes(self, session, items: list[dict], key) -> None:
        """One ``notification.outcomes`` per ``key(item)`` = (community, kind, channel, outcome), staged
        in one write in ``session``'s transaction (the handler's, or the timer's own). Each id is derived
        from what it counts, whose ids are new: a transaction retried whole stages it afresh."""
        groups = {}
        for item in items:
            groups.setdefault(key(item), []).append(item)
        occurred_on = datetime.now(ZoneInfo(self._time_zone())).date()
        messages = [(NOTIFICATION_OUTCOMES, {
            "community_id": community_id, "kind": kind, "channel": channel, "outcome": outcome,
            "count": len(group), "in_own_language": sum(1 for i in group if i.get("own_language", True)),
            "occurred_on": occurred_on,
        }, {"community": community_id, "message_id": fact_id("notification.outcomes", channel, outcome,
                                                             *sorted(i["_id"] for i in group))})
            for (community_id, kind, channel, outcome), group in groups.items()]
        self.outbox.stage_many(session, messages)

    def _time_zone(self) -> str:
        return community_time_zone(self.config)

    def _addresses_for(self, claimed_batch: list[dict]):
        """The addresses of a batch of deliveries: one RPC for its residents' contacts (sealed for this service)."""
        def get_contacts(resident_ids):
            return [self.open_personal(sealed) for sealed in self.residents.get_contacts(resident_ids, "notify")]

        return delivery.address_book(claimed_batch, get_contacts, self.config.get("SERVICE_CENTRE_EMAILS") or {})

    def _unsubscribe_url(self, claimed: dict) -> str:
        token = jwt.encode({"sub": claimed["resident_id"], "category": claimed["category"], "channel": "email",
                            "aud": UNSUBSCRIBE_AUDIENCE}, self.config["JWT_SECRET"], algorithm="HS256")
        base = self.config.get("PUBLIC_URL") or f"http://{self.config.get('WEB_SERVER_ADDRESS', '127.0.0.1:8003')}"
        return f"{base.rstrip('/')}/unsubscribe?token={token}"

    def _delivery_settings(self) -> delivery.Settings:
        c = self.config
        return delivery.Settings(max_attempts=int(c.get("DELIVERY_MAX_ATTEMPTS") or 5),
                                 retry_base_s=float(c.get("DELIVERY_RETRY_BASE_SECONDS") or 30),
                                 retry_cap_s=float(c.get("DELIVERY_RETRY_CAP_SECONDS") or 3600))

    def _inbox_page(self, request, recipient: str) -> dict:
        items, after = store.inbox(self.db, recipient, request.query)
        return {"items": [_inbox_item(n, ds) for n, ds in items], "next": after}

    def _require_resident_community(self, request, resident_id):
        community_id = store.resident_community(self.db, resident_id)
        if community_id is None:
            raise NotFound(f"no resident {resident_id} known to notifications")
        request.principal.require_community(community_id)


def _inbox_item(notification: dict, deliveries: list[dict]) -> dict:
    return {
        "id": notification["_id"], "kind": notification["kind"], "category": notification["category"],
        "critical": notification["critical"], "language": notification["language"],
        "title": notification["title"], "body": notification["body"],
        "created_at": notification["created_at"].isoformat(), "read": notification["read_at"] is not None,
        "deliveries": [{"channel": d["channel"], "status": d["status"], "attempts": d["attempts"],
                        "last_error": d["last_error"], "due_at": d["due_at"].isoformat(),
                        "sent_at": d["sent_at"].isoformat() if d["sent_at"] else None} for d in deliveries],
    }
