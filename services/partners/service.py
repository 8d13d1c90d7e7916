"""The partners service: partner departments (exit-entry administration, civil affairs, the culture
bureau, ...) and the feeds of the facts they are entitled to.

Partner departments are registered with the scopes they are entitled to and
subscribe within them; every platform message a subscription matches is
recorded in the partner's feed and delivered to its queue or webhook, or read
from ``GET /feeds/<partner>``. The rules are in ``feeds``, storage in
``feed_store``, sending in ``feed_delivery``.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import partial

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from nameko.dependency_providers import Config
from nameko.exceptions import RemoteError
from nameko.rpc import RpcProxy, rpc
from pymongo.errors import DuplicateKeyError

from services.common.auth import Forbidden, principal_from_header
from services.common.base import ServiceBase
from services.common.mongo import MongoDatabase
from services.common.sealing import OpenSealed
from services.common.timers import configured_timer
from services.common.web import ApiError, Conflict, NotFound, api, load
from services.partners import feed_delivery, feed_store, feeds, webhooks
from services.partners.broker_admin import BrokerAdminError, PartnerBroker
from services.partners.feed_recording import feed_recorder
from services.partners.migrations import FromNotifications

ADMIN_SCOPE = "partners:admin"
FEED_READ_SCOPE = "feeds:read"
PII_SCOPE = "residents:pii"


def _communities(value):
    if value == feeds.ALL_COMMUNITIES:
        return
    if not isinstance(value, list) or not value or not all(isinstance(c, str) and c for c in value):
        raise ValidationError('a list of community ids, or "*"')


class PartnerScopesRequest(Schema):
    types = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    communities = fields.Raw(required=True, validate=_communities)
    personal_fields = fields.List(fields.String(), load_default=list)
    personal_residence_types = fields.List(fields.String(), load_default=list)


class RegisterPartner(Schema):
    id = fields.String(required=True, validate=validate.Regexp(feeds.PARTNER_ID_PATTERN, error=(
        "lower-case letters, digits and hyphens, 2 to 48 characters")))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    scopes = fields.Nested(PartnerScopesRequest, required=True)


class Subscribe(Schema):
    types = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    communities = fields.Raw(required=True, validate=_communities)
    method = fields.String(required=True, validate=validate.OneOf(feeds.DELIVERY_METHODS))
    url = fields.Url(schemes={"http", "https"}, require_tld=False, load_default=None)


class Replay(Schema):
    since = fields.AwareDateTime(required=True, format="iso")


class FeedPage(Schema):
    """The query of ``GET /feeds/<id>`` (described in OpenAPI; ``feeds.parse_*`` read it)."""

    class Meta:
        unknown = EXCLUDE  # other parameters are ignored, as the handler ignores them

    after = fields.String(metadata={"description": "the `next` of the page before"})
    limit = fields.Integer(validate=validate.Range(min=1, max=1000))


class DeliveriesPage(Schema):
    """The query of ``GET /partners/<id>/deliveries`` (described in OpenAPI; ``feeds.parse_*`` read it)."""

    class Meta:
        unknown = EXCLUDE

    after = fields.String(metadata={"description": "the `next` of the page before"})
    limit = fields.Integer(validate=validate.Range(min=1, max=500))
    status = fields.String(validate=validate.OneOf(feeds.DELIVERY_STATUSES))


@contextmanager
def _feed_rules():
    """A refused feed rule as the HTTP/RPC error that names it."""
    try:
        yield
    except feeds.FeedRuleError as exc:
        error = ApiError(str(exc), exc.details, code=exc.code)
        error.status = exc.status
        raise error from None


def _subscription_view(subscription: dict) -> dict:
    keys = ("partner_id", "types", "communities", "method", "url", "status", "disabled_reason")
    return {"id": subscription["_id"], **{k: subscription.get(k) for k in keys}}


def _delivery_view(item: dict) -> dict:
    keys = ("subscription_id", "envelope_id", "method", "status", "attempts", "last_error", "replay",
            "next_attempt_at", "created_at", "updated_at")
    return {"id": item["_id"], **{k: item.get(k) for k in keys}}


def _require_may_grant(principal, scopes: feeds.PartnerScopes) -> None:
    """Who registers a partner must reach all its communities, and hold residents:pii to give it personal fields."""
    principal.require_communities(scopes.communities, "the partner's scopes")
    if scopes.personal_fields and PII_SCOPE not in principal.scopes:
        raise Forbidden(f"personal fields for a partner need the scope {PII_SCOPE!r}")


def _require_reach(principal, partner: dict) -> None:
    """The per-object check of every partner route: the token reaches every community of the partner's
    scopes (its subscriptions lie within them; a ``*`` partner needs a ``*`` token)."""
    principal.require_communities(partner["scopes"]["communities"], f"partner {partner['_id']!r}")


class PartnersService(ServiceBase):
    name = "partners"

    # Partner feeds kept by notifications before this service existed come over first (``migrations``).
    from_notifications = FromNotifications()
    db = MongoDatabase("partners", prepare=feed_store.ensure_indexes)
    feed_config = feed_delivery.FeedConfig()
    partner_broker = PartnerBroker()
    feed_residents = RpcProxy("residents")
    # Opens the personal fields the residents service sealed for this service (partner feeds).
    open_personal = OpenSealed()
    config = Config()

    # -- partners and subscriptions ------------------------------------------

    @api("POST", "/partners", scope=ADMIN_SCOPE, request_schema=RegisterPartner, body="the partner")
    def register_partner_over_http(self, request):
        return 201, self.register_partner_now(request.body, authorise=partial(_require_may_grant, request.principal))

    @rpc
    def register_partner(self, partner: dict) -> dict:
        """Register a partner department; the answer holds its broker password, given only this once."""
        return self.register_partner_now(load(RegisterPartner(), partner, "the partner"))

    def register_partner_now(self, command: dict, authorise=lambda scopes: None) -> dict:
        """``authorise(scopes)`` refuses what the caller may not grant (RPC callers are trusted)."""
        with _feed_rules():
            scopes = feeds.PartnerScopes.from_request(**command["scopes"])
        authorise(scopes)
        try:
            feed_store.insert_partner(self.db, {"_id": command["id"], "name": command["name"],
                                                "scopes": scopes.to_document()})
        except DuplicateKeyError:
            raise Conflict(f"partner {command['id']!r} is already registered", {"partner_id": command["id"]}) from None
        try:
            self.partner_broker.declare_queue(command["id"])
            credentials = self.partner_broker.create_reader(command["id"])
        except BrokerAdminError as exc:
            self.db[feed_store.PARTNERS].delete_one({"_id": command["id"]})
            raise ApiError(str(exc), code="broker_admin_failed") from None
        return {"id": command["id"], "name": command["name"], "scopes": scopes.to_document(),
                "broker": credentials.to_dict()}

    @api("GET", "/partners/<partner_id>", scope=ADMIN_SCOPE)
    def partner_over_http(self, request, partner_id):
        partner = self._partner(partner_id, request.principal)
        return {"id": partner["_id"], "name": partner["name"], "scopes": partner["scopes"],
                "subscriptions": [_subscription_view(s) for s in feed_store.subscriptions_of(self.db, partner_id)]}

    @api("POST", "/partners/<partner_id>/subscriptions", scope=ADMIN_SCOPE,
         request_schema=Subscribe, body="the subscription")
    def subscribe_over_http(self, request, partner_id):
        self._partner(partner_id, request.principal)
        return 201, self.subscribe_now(partner_id, request.body)

    @rpc
    def subscribe(self, partner_id: str, subscription: dict) -> dict:
        """Subscribe within the partner's scopes; a webhook's signing secret is answered only this once."""
        return self.subscribe_now(partner_id, load(Subscribe(), subscription, "the subscription"))

    def subscribe_now(self, partner_id: str, command: dict) -> dict:
        partner = self._partner(partner_id)
        with _feed_rules():
            scopes = feeds.PartnerScopes.from_document(partner["scopes"])
            types, communities = feeds.check_subscription(scopes, command["types"], command["communities"])
            if command["method"] == "webhook":
                if not command["url"]:
                    raise feeds.FeedRuleError("a webhook subscription needs a url", {"url": None})
                feeds.check_webhook_url(command["url"], self.feed_config.settings.webhook_allow_private)
        secret = webhooks.new_secret() if command["method"] == "webhook" else None
        subscription = feed_store.insert_subscription(self.db, {
            "partner_id": partner_id, "types": sorted(types), "communities": sorted(communities),
            "method": command["method"], "url": command["url"] if secret else None, "secret": secret})
        return {**_subscription_view(subscription), **({"secret": secret} if secret else {})}

    @api("POST", "/partners/<partner_id>/subscriptions/<subscription_id>/enable", scope=ADMIN_SCOPE)
    def enable_subscription_over_http(self, request, partner_id, subscription_id):
        """A subscription disabled (by its webhook's 410) active again; its held deliveries are sent."""
        self._partner(partner_id, request.principal)
        subscription, resumed = feed_store.enable_subscription(self.db, partner_id, subscription_id)
        if subscription is None:
            raise NotFound(f"partner {partner_id!r} has no subscription {subscription_id!r}")
        return {**_subscription_view(subscription), "resumed_deliveries": resumed}

    # -- the feed: recording, delivering, reading ----------------------------

    @feed_recorder(feeds.partner_feed_types())
    def record_feed_entries(self, envelopes, subscriptions):
        feed_store.record_messages(self.db, envelopes, subscriptions)

    @configured_timer("FEED_POLL_SECONDS", default=2)
    def relay_feed_deliveries(self):
        feed_delivery.relay_due(self.db, self.feed_config, self._personal_fields)

    def _personal_fields(self, resident_id: str, partner_id: str, wanted: list) -> dict | None:
        try:
            return self.open_personal(self.feed_residents.get_for_partner(resident_id, partner_id, wanted))
        except RemoteError as exc:
            if exc.exc_type == "NotFound":  # no such resident: nothing to attach
                return None
            raise

    @api("GET", "/feeds/<partner_id>", query_schema=FeedPage)
    def pull_feed(self, request, partner_id):
        principal = principal_from_header(self.feed_config.settings.jwt_secret, request.headers.get("Authorization"))
        if ADMIN_SCOPE in principal.scopes:
            partner = self._partner(partner_id, principal)
            if partner["scopes"].get("personal_fields") and PII_SCOPE not in principal.scopes:
                raise Forbidden(f"this feed carries personal fields: an admin reads it only with {PII_SCOPE!r}")
        else:
            principal.require_scope(FEED_READ_SCOPE)
            if feeds.partner_of(principal.subject) != partner_id:
                raise Forbidden("a partner token reads only its own partner's feed")
            partner = self._partner(partner_id)
        with _feed_rules():
            after = feeds.parse_cursor(request.args.get("after"))
            limit = feeds.parse_limit(request.args.get("limit"))
        entries = feed_store.pull_page(self.db, partner_id, after, limit)
        scopes = feeds.PartnerScopes.from_document(partner["scopes"])
        items = [feed_delivery.view_for_partner(scopes, partner_id, entry["envelope"], self._personal_fields)
                 for entry in entries]
        return {"items": items, "next": str(entries[-1]["sequence"] if entries else after)}

    # -- operating the feed --------------------------------------------------

    @api("POST", "/partners/<partner_id>/replay", scope=ADMIN_SCOPE, request_schema=Replay, body="the replay")
    def replay_over_http(self, request, partner_id):
        self._partner(partner_id, request.principal)
        since = request.body["since"]
        return 202, {"partner_id": partner_id, "since": since.isoformat(),
                     "deliveries": feed_store.replay(self.db, partner_id, since)}

    @api("GET", "/partners/<partner_id>/deliveries", scope=ADMIN_SCOPE, query_schema=DeliveriesPage)
    def deliveries_over_http(self, request, partner_id):
        """Newest first, ``limit`` (1-500, default 50) a page; ``next`` is the ``after`` of the next page."""
        self._partner(partner_id, request.principal)
        with _feed_rules():
            status = feeds.parse_delivery_status(request.args.get("status"))
            after = feeds.parse_delivery_cursor(request.args.get("after"))
            limit = feeds.parse_limit(request.args.get("limit"), default=50, maximum=500)
        items, next_cursor = feed_store.deliveries_page(self.db, partner_id, status, after, limit)
        return {"partner_id": partner_id, "items": [_delivery_view(item) for item in items], "next": next_cursor}

    @api("POST", "/partners/<partner_id>/deliveries/<delivery_id>/retry", scope=ADMIN_SCOPE)
    def retry_delivery_over_http(self, request, partner_id, delivery_id):
        self._partner(partner_id, request.principal)
        retried = feed_store.retry_delivery(self.db, partner_id, delivery_id)
        if retried is None:
            found = feed_store.find_delivery(self.db, partner_id, delivery_id)
            if found is None:
                raise NotFound(f"partner {partner_id!r} has no delivery {delivery_id!r}")
            raise Conflict(f"only a failed delivery can be retried; this one is {found['status']}",
                           {"status": found["status"]}, code="not_retryable")
        return 202, _delivery_view(retried)

    def _partner(self, partner_id: str, principal=None) -> dict:
        """The partner, or 404; with an admin's ``principal``, 403 unless the token reaches it."""
        partner = feed_store.find_partner(self.db, partner_id)
        if partner is None:
            raise NotFound(f"no partner {partner_id!r}")
        if principal is not None:
            _require_reach(principal, partner)
        return partner
