"""A transactional outbox: a fact stored is a fact published.

``outbox.stage(session, message_type, data, ...)`` validates the message
against its contract and writes the envelope into the service's ``outbox``
collection in the caller's transaction, beside the data it announces: both
commit or neither does. When the worker ends, the envelopes it staged are
published (with publisher confirms) and marked sent; a relay loop publishes
whatever a process that died in between left behind. A message may so be
published twice (died after publishing, before marking), never not at all;
consumers skip an envelope id they have handled.

``staging.transaction(work)`` runs ``work(session, publish)`` in one transaction and
publishes after the commit: the use case writes with ``session=session`` and calls
``publish(TYPE, data, ...)`` as it would the dispatcher. ``backlog(database)`` is what
operators watch: how many envelopes wait, and how long the oldest has.

``LINLI_FAILPOINT`` (tests only) makes the process die at ``outbox:after-commit``
or ``outbox:after-publish``, the two places where a crash could lose or repeat.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import eventlet
import mongoengine
from nameko.amqp.publish import Publisher
from nameko.events import get_event_exchange
from nameko.extensions import DependencyProvider

from contracts import MessageType, build_envelope
from services.common.messaging import CORRELATION_KEY
from services.common.metrics import MESSAGES_PUBLISHED

log = logging.getLogger(__name__)
OUTBOX = "outbox"  # stable: operators' gauges and the relay read it by this name
MARK_EVERY = 100  # envelopes published before they are marked sent in one write


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_age_seconds: float  # 0.0 when nothing is pending


def backlog(database, now: datetime | None = None) -> Backlog:
    """How many envelopes of a service's outbox are not yet published, and the age of the oldest.

    ``database``: the service's pymongo database. A number that keeps growing, or an age well
    past the relay's grace period, means the relay cannot reach the broker."""
    collection = database[OUTBOX]
    pending = collection.count_documents({"sent_at": None})
    oldest = next(iter(collection.find({"sent_at": None}, {"created_at": 1}).sort("created_at", 1).limit(1)), None)
    if oldest is None:
        return Backlog(pending, 0.0)
    created_at = oldest["created_at"]
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=timezone.utc)
    return Backlog(pending, max(0.0, ((now or datetime.now(timezone.utc)) - created_at).total_seconds()))


def save_changes(document, session) -> None:
    """A loaded mongoengine document's changed fields, written in ``session``'s transaction
    (mongoengine 0.29 knows no sessions; only what changed is set, as ``save()`` would). The
    changes stay marked, so a transaction retried after a conflict writes them again."""
    document.validate()
    update = document._get_update_doc()
    if update:
        type(document)._get_collection().update_one({"_id": document.pk}, update, session=session)


def insert_document(document, session) -> dict:
    """A new mongoengine document inserted in ``session``'s transaction; returns what was stored."""
    document.validate()
    stored = document.to_mongo().to_dict()
    type(document)._get_collection().insert_one(stored, session=session)
    return stored


def failpoint(name: str) -> None:
    if os.environ.get("LINLI_FAILPOINT") == name:
        log.warning("failpoint %s: dying on purpose (test)", name)
        os._exit(137)


class Outbox(DependencyProvider):
    """``alias``: the service's ``MongoDatabase`` name (its mongoengine alias)."""

    def __init__(self, alias: str, relay_every_s: float = 2.0, grace_s: float = 5.0):
        self.alias, self.relay_every_s, self.grace_s = alias, relay_every_s, grace_s
        self._staged: dict = {}
        self._flushing: set = set()  # ids a worker of this process is publishing: not the relay loop's

    def setup(self):
        config = self.container.config
        self.database_name = config.get("MONGO_DB_PREFIX", "linli_") + self.alias
        self.exchange = get_event_exchange(self.container.service_name, config)
        self.publisher = Publisher(config["AMQP_URI"], serializer="json", declare=[self.exchange])
        self._running, self._relay_thread = False, None

    def start(self):
        self._running = True
        try:
            self.collection().create_index([("sent_at", 1), ("created_at", 1)])
        except Exception as exc:  # noqa: BLE001 - an index is an optimisation; the relay works without it
            log.warning("outbox: no index on sent_at (%s)", type(exc).__name__)
        self._relay_thread = self.container.spawn_managed_thread(self._relay_forever)

    def stop(self):
        # Killed, not only told: a relay waking while the database provider disconnects would
        # connect mongoengine's alias again behind its back.
        self._running = False
        relay_thread, self._relay_thread = self._relay_thread, None
        if relay_thread is not None:
            relay_thread.kill()

    kill = stop

    def client(self):
        # A method, not a property: nameko inspects its extensions' attributes before the database is up.
        return mongoengine.get_connection(self.alias)

    def collection(self):
        return self.client()[self.database_name][OUTBOX]

    def get_dependency(self, worker_ctx):
        return self._staged.setdefault(worker_ctx, Staging(self, worker_ctx))

    def worker_teardown(self, worker_ctx):
        staging = self._staged.pop(worker_ctx, None)
        if staging is not None:
            staging.flush()

    def record(self, worker_ctx, message_type: MessageType, data: dict, *, subject=None, community=None,
               message_id=None) -> dict:
        """The outbox record of one message (validated against its contract), not yet written."""
        envelope = build_envelope(message_type.name, data, version=message_type.version,
                                  source=f"linli/{self.container.service_name}", subject=subject,
                                  community=community, message_id=message_id,
                                  correlationid=worker_ctx.context_data.get(CORRELATION_KEY) or worker_ctx.call_id)
        return {"_id": envelope.id, "wire": envelope.to_wire(), "type": envelope.type,
                "created_at": datetime.now(timezone.utc), "sent_at": None}

    def stage(self, session, worker_ctx, message_type: MessageType, data: dict, **kwargs) -> str:
        record = self.record(worker_ctx, message_type, data, **kwargs)
        # A fact id staged again (the same month assessed twice) is published again, as the dispatcher would.
        self.collection().replace_one({"_id": record["_id"]}, record, upsert=True, session=session)
        return record["_id"]

    def stage_fresh(self, session, records: list[dict]) -> list[str]:
        """Many records in one write; their ids must be new (derived from ids this transaction creates)."""
        if records:
            self.collection().insert_many(records, ordered=False, session=session)
        return [record["_id"] for record in records]

    def relay(self, query: dict, skip=frozenset()) -> int:
        """Publish the unsent envelopes matching ``query`` (but not those in ``skip``), oldest first,
        and mark them sent (every ``MARK_EVERY``: a crash in between publishes those again, under the same ids)."""
        sent, published = 0, []
        for record in self.collection().find({**query, "sent_at": None}).sort("created_at", 1).limit(1000):
            if record["_id"] in skip:
                continue
            self.publisher.publish(record["wire"], exchange=self.exchange, routing_key=record["type"])
            failpoint("outbox:after-publish")
            published.append(record)
            if len(published) >= MARK_EVERY:
                sent += self._mark_sent(published)
                published = []
        return sent + self._mark_sent(published)

    def _mark_sent(self, records: list[dict]) -> int:
        if records:
            self.collection().update_many({"_id": {"$in": [r["_id"] for r in records]}},
                                          {"$set": {"sent_at": datetime.now(timezone.utc)}})
        for record in records:
            MESSAGES_PUBLISHED.labels(self.container.service_name, record["type"]).inc()
        return len(records)

    def _relay_forever(self):
        """What a worker staged but did not get to publish (it died), after a grace period."""
        while self._running:
            eventlet.sleep(self.relay_every_s)
            if not self._running:
                break
            try:
                now = datetime.now(timezone.utc)
                left = self.relay({"created_at": {"$lt": now - timedelta(seconds=self.grace_s)}},
                                  skip=frozenset(self._flushing))
                if left:
                    log.warning("outbox: published %d message(s) left behind by an earlier process", left)
                self.collection().delete_many({"sent_at": {"$lt": now - timedelta(days=1)}})
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a broker or database hiccup
                log.warning("outbox relay: %s; trying again", type(exc).__name__)


class Staging:
    """What a worker sees: ``stage(session, message_type, data, ...)`` writes an envelope in the
    caller's transaction; ``stage.flush()`` publishes what this worker staged, right after the
    commit (else the end of the worker does, else the relay loop)."""

    def __init__(self, outbox: Outbox, worker_ctx):
        self.outbox, self.worker_ctx, self.staged = outbox, worker_ctx, []

    def __call__(self, session, message_type: MessageType, data: dict, **kwargs) -> str:
        message_id = self.outbox.stage(session, self.worker_ctx, message_type, data, **kwargs)
        self.staged.append(message_id)
        return message_id

    def publisher(self, session):
        """``publish(message_type, data, **kwargs)`` staging in ``session``'s transaction."""
        return lambda message_type, data, **kwargs: self(session, message_type, data, **kwargs)

    def stage_many(self, session, messages) -> None:
        """``messages``: ``(message_type, data, kwargs)`` whose ids are new; one write for all."""
        records = [self.outbox.record(self.worker_ctx, message_type, data, **kwargs)
                   for message_type, data, kwargs in messages]
        self.staged.extend(self.outbox.stage_fresh(session, records))

    def transaction(self, work):
        """``work(session, publish)`` in one transaction (retried whole on a transient conflict),
        then what it published is sent; returns what ``work`` returned."""
        with self.outbox.client().start_session() as session:
            result = session.with_transaction(lambda s: work(s, self.publisher(s)))
        self.flush()
        return result

    def flush(self) -> None:
        if not self.staged:
            return
        ids, self.staged = self.staged, []
        failpoint("outbox:after-commit")
        self.outbox._flushing.update(ids)
        try:
            self.outbox.relay({"_id": {"$in": ids}})
        except Exception as exc:  # noqa: BLE001 - committed and kept: the relay loop sends it later
            log.warning("outbox: publishing after the commit failed (%s); the relay will", type(exc).__name__)
        finally:
            self.outbox._flushing.difference_update(ids)
