"""Delivering feed entries to partners' queues and webhooks.

``relay_due`` claims due deliveries a batch at a time (a lease, so two instances
never send one delivery at once; ``leases``), builds the partner's view of the envelope —
fetching personal fields from the residents service only now, only those the
partner is entitled to — and sends it. Nothing personal is logged or stored.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from nameko.amqp.publish import Publisher
from nameko.extensions import DependencyProvider
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

from services.common.metrics import scrape_time_metrics

from services.partners import feed_store, feeds, webhooks
from services.partners.broker_admin import FEEDS_EXCHANGE

log = logging.getLogger(__name__)
TRY_AGAIN_S = 5  # after trouble on our side (broker, residents service): not the partner's attempt

FEED_DELIVERIES = Counter(
    "linli_feed_deliveries_total",
    "Partner feed delivery attempts by partner, method (webhook | queue) and outcome "
    "(sent | retry | failed | disabled | postponed).",
    ["partner", "method", "outcome"],
)
FEED_OUTCOMES = ("sent", "retry", "failed", "disabled", "postponed")


def _count(delivery: dict, outcome: str) -> None:
    # A partner's series all start at 0 together, so its first failure shows in rate().
    for each in FEED_OUTCOMES:
        FEED_DELIVERIES.labels(delivery["partner_id"], delivery["method"], each)
    FEED_DELIVERIES.labels(delivery["partner_id"], delivery["method"], outcome).inc()


@dataclass(frozen=True)
class FeedSettings:
    retry_schedule_s: tuple[float, ...]
    webhook_timeout_s: float
    webhook_allow_private: bool
    lease_s: float
    batch: int
    jwt_secret: str


def _flag(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _schedule(value) -> tuple[float, ...]:
    if value is None or value == "":
        return feeds.DEFAULT_RETRY_SCHEDULE_S
    if isinstance(value, (int, float)):  # one number in YAML: a single attempt after that delay
        return (float(value),)
    items = value.split(",") if isinstance(value, str) else value
    return tuple(float(item) for item in items)


class FeedConfig(DependencyProvider):
    """The partner-feed settings, read from config once, and the publisher to partner queues."""

    def setup(self):
        config = self.container.config
        self.settings = FeedSettings(
            retry_schedule_s=_schedule(config.get("WEBHOOK_RETRY_SCHEDULE_SECONDS")),
            webhook_timeout_s=float(config.get("WEBHOOK_TIMEOUT_SECONDS") or 10),
            webhook_allow_private=_flag(config.get("WEBHOOK_ALLOW_PRIVATE", False)),
            lease_s=float(config.get("FEED_DELIVERY_LEASE_SECONDS") or 60),
            batch=int(config.get("FEED_RELAY_BATCH") or 100),
            jwt_secret=config.get("JWT_SECRET", ""),
        )
        self.publisher = Publisher(config["AMQP_URI"], declare=[FEEDS_EXCHANGE], mandatory=True)
        self.owner = uuid.uuid4().hex  # this instance, as the holder of delivery leases

    def get_dependency(self, worker_ctx):
        return self


@dataclass
class Batch:
    """What a batch of claimed deliveries needs, read in three round trips for all of them."""

    subscriptions: dict
    entries: dict
    partners: dict

    @classmethod
    def of(cls, db, claimed: list[dict]) -> "Batch":
        return cls(feed_store.subscriptions_by_id(db, [d["subscription_id"] for d in claimed]),
                   feed_store.entries_by_id(db, [d["entry_id"] for d in claimed]),
                   feed_store.partners_by_id(db, [d["partner_id"] for d in claimed]))


def relay_due(db, feed_config: FeedConfig, fetch_personal, max_batches: int = 10) -> int:
    """Send due deliveries, ``batch`` at a time (each claimed, looked up and recorded in a handful of
    round trips); ``fetch_personal(resident_id, partner_id, fields)``. Returns how many were taken."""
    settings, done = feed_config.settings, 0
    for _ in range(max_batches):
        claimed = feed_store.claim_due_deliveries(db, settings.lease_s, feed_config.owner, settings.batch)
        done += len(claimed)
        if claimed:
            feed_store.finish_many(db, _relay(db, feed_config, claimed, fetch_personal))
        if len(claimed) < settings.batch:
            break
    return done


def _relay(db, feed_config: FeedConfig, claimed: list[dict], fetch_personal) -> list[tuple[dict, dict]]:
    """Each delivery with the changes that record how it went. What is not tried by half-way through
    the lease is given back, long before another instance could take it while it is sent here."""
    batch, finished = Batch.of(db, claimed), []
    send_by = feed_store.now() + timedelta(seconds=feed_config.settings.lease_s / 2)
    for delivery in claimed:
        if feed_store.now() > send_by:
            finished.append((delivery, feed_store.given_back()))
            continue
        try:
            finished.append((delivery, _deliver(db, batch, feed_config, delivery, fetch_personal)))
        except Exception as exc:  # noqa: BLE001 - one delivery's trouble must not stop the others
            log.warning("feed delivery %s: %s", delivery["_id"], type(exc).__name__)
            finished.append((delivery, feed_store.postponed(f"{type(exc).__name__}: {exc}", TRY_AGAIN_S)))
            _count(delivery, "postponed")
    return finished


def _deliver(db, batch: Batch, feed_config: FeedConfig, delivery: dict, fetch_personal) -> dict:
    """Send one delivery; the changes that record how it went."""
    settings = feed_config.settings
    subscription = batch.subscriptions.get(delivery["subscription_id"])
    if subscription is None or subscription["status"] != "active":
        return _disable(db, batch, delivery, "the subscription is disabled")
    if delivery["method"] == "webhook":
        try:
            feeds.check_webhook_url(subscription["url"], settings.webhook_allow_private)
        except feeds.UnsafeUrl as exc:
            _count(delivery, "failed")
            return feed_store.failed_attempt(delivery, f"{exc.code}: {exc}", None)
    envelope = _partner_view(batch, delivery, fetch_personal)
    if delivery["method"] == "queue":
        return _publish_to_queue(feed_config, delivery, envelope)
    outcome = webhooks.send(subscription["url"], subscription["secret"], envelope, settings.webhook_timeout_s)
    if outcome.delivered:
        _count(delivery, "sent")
        return feed_store.sent(delivery)
    if outcome.gone:
        return _disable(db, batch, delivery, outcome.error)
    delay = feeds.next_retry_delay(delivery["attempts"] + 1, settings.retry_schedule_s, outcome.retry_after_s)
    _count(delivery, "failed" if delay is None else "retry")
    return feed_store.failed_attempt(delivery, outcome.error, delay)


def _disable(db, batch: Batch, delivery: dict, reason: str) -> dict:
    """The subscription disabled (its endpoint is gone), here and for the rest of the batch."""
    subscription_id = delivery["subscription_id"]
    feed_store.disable_subscription(db, subscription_id, reason)
    batch.subscriptions[subscription_id] = {**batch.subscriptions.get(subscription_id, {}), "status": "disabled"}
    _count(delivery, "disabled")
    return feed_store.disabled(delivery, reason)


def _partner_view(batch: Batch, delivery: dict, fetch_personal) -> dict:
    entry = batch.entries[delivery["entry_id"]]
    partner = batch.partners[delivery["partner_id"]]
    scopes = feeds.PartnerScopes.from_document(partner["scopes"])
    return view_for_partner(scopes, partner["_id"], entry["envelope"], fetch_personal)


def view_for_partner(scopes, partner_id: str, envelope_wire: dict, fetch_personal) -> dict:
    """The envelope with the personal fields ``scopes`` allow, fetched now (or none)."""
    wanted = feeds.personal_fields_wanted(scopes, envelope_wire["data"])
    personal = None
    if wanted:
        fetched = fetch_personal(envelope_wire["data"]["resident_id"], partner_id, wanted)
        personal = feeds.filter_personal(wanted, fetched)
    return feeds.partner_view(envelope_wire, personal)


def _publish_to_queue(feed_config: FeedConfig, delivery: dict, envelope: dict) -> dict:
    try:
        feed_config.publisher.publish(envelope, exchange=FEEDS_EXCHANGE, routing_key=delivery["partner_id"],
                                      message_id=envelope["id"])
    except Exception as exc:  # noqa: BLE001 - unroutable, nacked or unreachable: try again shortly
        _count(delivery, "postponed")
        return feed_store.postponed(f"{type(exc).__name__}: {exc}", TRY_AGAIN_S)
    _count(delivery, "sent")
    return feed_store.sent(delivery)


@scrape_time_metrics("partners")
def failing_deliveries(container) -> list:
    """Per partner and method: deliveries that failed at least once and are still pending, and how
    long the oldest has waited — an endpoint failing for an hour shows here, whatever the retry schedule."""
    import mongoengine

    failing = GaugeMetricFamily("linli_feed_failing_deliveries",
                                "Feed deliveries that failed at least once and are still pending.",
                                labels=["partner", "method"])
    oldest = GaugeMetricFamily("linli_feed_oldest_failing_delivery_age_seconds",
                               "Age of the oldest feed delivery that failed at least once and is still pending.",
                               labels=["partner", "method"])
    database = mongoengine.get_connection("partners")[container.config.get("MONGO_DB_PREFIX", "linli_") + "partners"]
    now = feed_store.now()
    for group in database[feed_store.DELIVERIES].aggregate([
        {"$match": {"status": "pending", "attempts": {"$gte": 1}}},
        {"$group": {"_id": {"partner": "$partner_id", "method": "$method"}, "count": {"$sum": 1},
                    "first": {"$min": "$created_at"}}},
    ]):
        labels = [group["_id"]["partner"], group["_id"]["method"]]
        first = group["first"] if group["first"].tzinfo else group["first"].replace(tzinfo=now.tzinfo)
        failing.add_metric(labels, group["count"])
        oldest.add_metric(labels, max(0.0, (now - first).total_seconds()))
    return [failing, oldest]
