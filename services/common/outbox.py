"""A transactional outbox: a fact stored is a fact published.

``outbox.stage(session, message_type, data, ...)`` validates the message
against its contract and writes the envelope into the service's ``outbox``
collection in the caller's transaction, beside the data it announces: both
commit or neither does. When the worker ends, the envelopes it staged are
published (with publisher confirms) and marked sent; a relay loop publishes
whatever a process that died in between left behind. A message may so be
published twice (died after publishing, before marking), never not at all;
consumers skip an envelope id they have handled.

``LINLI_FAILPOINT`` (tests only) makes the process die at ``outbox:after-commit``
or ``outbox:after-publish``, the two places where a crash could lose or repeat.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone

import eventlet
import mongoengine
from nameko.amqp.publish import Publisher
from nameko.events import get_event_exchange
from nameko.extensions import DependencyProvider

from contracts import MessageType, build_envelope
from services.common.metrics import MESSAGES_PUBLISHED

log = logging.getLogger(__name__)
OUTBOX = "outbox"


def failpoint(name: str) -> None:
    if os.environ.get("LINLI_FAILPOINT") == name:
        log.warning("failpoint %s: dying on purpose (test)", name)
        os._exit(137)


class Outbox(DependencyProvider):
    """``alias``: the service's ``MongoDatabase`` name (its mongoengine alias)."""

    def __init__(self, alias: str, relay_every_s: float = 2.0, grace_s: float = 5.0):
        self.alias, self.relay_every_s, self.grace_s = alias, relay_every_s, grace_s
        self._staged: dict = {}

    def setup(self):
        config = self.container.config
        self.database_name = config.get("MONGO_DB_PREFIX", "linli_") + self.alias
        self.exchange = get_event_exchange(self.container.service_name, config)
        self.publisher = Publisher(config["AMQP_URI"], serializer="json", declare=[self.exchange])
        self._running = False

    def start(self):
        self._running = True
        self.container.spawn_managed_thread(self._relay_forever)

    def stop(self):
        self._running = False

    kill = stop

    def collection(self):
        # A method, not a property: nameko inspects its extensions' attributes before the database is up.
        return mongoengine.get_connection(self.alias)[self.database_name][OUTBOX]

    def get_dependency(self, worker_ctx):
        return self._staged.setdefault(worker_ctx, Staging(self, worker_ctx))

    def worker_teardown(self, worker_ctx):
        staging = self._staged.pop(worker_ctx, None)
        if staging is not None:
            staging.flush()

    def stage(self, session, worker_ctx, message_type: MessageType, data: dict, *, subject=None, community=None,
              message_id=None):
        envelope = build_envelope(message_type.name, data, version=message_type.version,
                                  source=f"linli/{self.container.service_name}", subject=subject,
                                  community=community, correlationid=worker_ctx.call_id, message_id=message_id)
        self.collection().insert_one({"_id": envelope.id, "wire": envelope.to_wire(), "type": envelope.type,
                                      "created_at": datetime.now(timezone.utc), "sent_at": None}, session=session)
        return envelope

    def relay(self, query: dict) -> int:
        """Publish the unsent envelopes matching ``query``, oldest first, and mark each sent."""
        sent = 0
        for record in self.collection().find({**query, "sent_at": None}).sort("created_at", 1).limit(1000):
            self.publisher.publish(record["wire"], exchange=self.exchange, routing_key=record["type"])
            failpoint("outbox:after-publish")
            self.collection().update_one({"_id": record["_id"]}, {"$set": {"sent_at": datetime.now(timezone.utc)}})
            MESSAGES_PUBLISHED.labels(self.container.service_name, record["type"]).inc()
            sent += 1
        return sent

    def _relay_forever(self):
        """What a worker staged but did not get to publish (it died), after a grace period."""
        while self._running:
            eventlet.sleep(self.relay_every_s)
            try:
                now = datetime.now(timezone.utc)
                left = self.relay({"created_at": {"$lt": now - timedelta(seconds=self.grace_s)}})
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

    def __call__(self, session, message_type: MessageType, data: dict, **kwargs):
        envelope = self.outbox.stage(session, self.worker_ctx, message_type, data, **kwargs)
        self.staged.append(envelope.id)
        return envelope

    def flush(self) -> None:
        if not self.staged:
            return
        ids, self.staged = self.staged, []
        failpoint("outbox:after-commit")
        try:
            self.outbox.relay({"_id": {"$in": ids}})
        except Exception as exc:  # noqa: BLE001 - committed and kept: the relay loop sends it later
            log.warning("outbox: publishing after the commit failed (%s); the relay will", type(exc).__name__)
