"""A transactional outbox: a fact stored is a fact published.

``outbox.stage(session, message_type, data, ...)`` validates the message
against its contract and writes the envelope into the service's ``outbox``
collection in the caller's transaction, beside the data it announces: both
commit or neither does. After the commit (else when the worker ends) the envelopes
it staged are published (a batch at a time, the broker confirming the whole batch) and deleted, many transactions'
worth in one write by the relay thread, which a commit wakes; at a low rate the relay
also publishes whatever a process that died in between left behind. A message may so
be published twice (died after publishing, before deleting), never not at all;
consumers skip an envelope id they have handled. The outbox so holds only what waits.

``staging.transaction(work)`` runs ``work(session, publish)`` in one transaction and
publishes after the commit: the use case writes with ``session=session`` and calls
``publish(TYPE, data, ...)`` as it would the dispatcher; what it publishes is staged in
one write (and published from memory, not read back). ``staging.committing()`` does the same
around a transaction someone else runs: ``exactly_once`` runs every message handler in it, so
whatever a handler publishes through the outbox (``stage(self.db.session, ...)``, ``publisher``,
``stage_many``) costs its batch one write, whatever the number of messages, and no read-back.
``staging.batch(session)`` collects for one write without knowing whether the transaction commits
(read back after it). ``backlog(database)`` is what operators watch: how many envelopes wait, and
how long the oldest has.

``LINLI_FAILPOINT`` (tests only) makes the process die at ``outbox:after-commit``
or ``outbox:after-publish`` (a batch confirmed, none of it deleted), the two places where a
crash could lose or repeat.
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import eventlet
import mongoengine
from eventlet.queue import Empty, LightQueue
from nameko.events import get_event_exchange
from nameko.extensions import DependencyProvider
from prometheus_client.core import GaugeMetricFamily
from pymongo import ReplaceOne

from contracts import ContractError, MessageType, build_envelope
from services.common.confirms import BatchPublisher
from services.common.correlation import CORRELATION_KEY
from services.common.metrics import EVERY_SERVICE, MESSAGES_PUBLISHED, scrape_time_metrics

log = logging.getLogger(__name__)
OUTBOX = "outbox"  # stable: operators' gauges and the relay read it by this name
# Envelopes deleted (or read back) in one command. Small on purpose: SecantusDB matches each
# candidate against every value of an ``$in`` (a 1,000-id delete cost 1,000 × 1,000 comparisons,
# half of residents' database time during an import); chunks of 100 keep it linear.
MAX_IDS_PER_WRITE = 100
LINGER_S = 0.05  # how long the relay gathers sent ids of concurrent commits before one delete


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_age_seconds: float  # 0.0 when nothing is pending


def backlog(database, now: datetime | None = None) -> Backlog:
    """How many envelopes of a service's outbox are not yet published, and the age of the oldest.

    ``database``: the service's pymongo database. A number that keeps growing, or an age well
    past the relay's grace period, means the relay cannot reach the broker. Sent envelopes are
    deleted, so both look-ups read a collection no larger than what waits."""
    collection = database[OUTBOX]
    pending = collection.count_documents({"sent_at": None})
    oldest = next(iter(collection.find({"sent_at": None}, {"created_at": 1}).sort("created_at", 1).limit(1)), None)
    if oldest is None:
        return Backlog(pending, 0.0)
    created_at = oldest["created_at"]
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=timezone.utc)
    return Backlog(pending, max(0.0, ((now or datetime.now(timezone.utc)) - created_at).total_seconds()))


@scrape_time_metrics(EVERY_SERVICE)
def outbox_families(container) -> list:
    """``linli_outbox_pending`` and ``linli_outbox_oldest_age_seconds`` of the service's outbox (if it has one)."""
    service = container.service_name
    pending = GaugeMetricFamily("linli_outbox_pending", "Outbox records stored but not yet published.",
                                labels=["service"])
    oldest = GaugeMetricFamily("linli_outbox_oldest_age_seconds",
                               "Age of the oldest outbox record not yet published (0 when none).", labels=["service"])
    for outbox in (d for d in container.dependencies if isinstance(d, Outbox)):
        found = backlog(outbox.client()[outbox.database_name])
        pending.add_metric([service], found.pending)
        oldest.add_metric([service], found.oldest_age_seconds)
    return [pending, oldest]


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
    """``alias``: the service's ``MongoDatabase`` name (its mongoengine alias). ``poll_every_s``: how
    often the relay looks for what a dead process left (one indexed query); ``grace_s``: how old
    such an envelope must be, so the relay does not race a live worker of another process."""

    def __init__(self, alias: str, poll_every_s: float = 10.0, grace_s: float = 5.0):
        self.alias, self.poll_every_s, self.grace_s = alias, poll_every_s, grace_s
        self._staged: dict = {}
        self._owned: set = set()  # ids this process publishes or has published, not yet deleted: not the poll's

    def setup(self):
        config = self.container.config
        self.database_name = config.get("MONGO_DB_PREFIX", "linli_") + self.alias
        self.exchange = get_event_exchange(self.container.service_name, config)
        self.publisher = BatchPublisher(config["AMQP_URI"], self.exchange)
        self._running, self._relay_thread, self._sent = False, None, LightQueue()

    def start(self):
        self._running = True
        try:
            self.collection().create_index([("sent_at", 1), ("created_at", 1)])
            # Envelopes marked sent by an earlier version, which kept them a day: not kept any more.
            self.collection().delete_many({"sent_at": {"$gt": datetime(1970, 1, 1, tzinfo=timezone.utc)}})
        except Exception as exc:  # noqa: BLE001 - an index is an optimisation; the relay works without it
            log.warning("outbox: no index on sent_at (%s)", type(exc).__name__)
        self._relay_thread = self.container.spawn_managed_thread(self._relay_forever)

    def stop(self):
        # Killed, not only told: a relay waking while the database provider disconnects would
        # connect mongoengine's alias again behind its back. What was sent is deleted first if the
        # database is still there (else the next process publishes it again, under the same ids).
        relay_thread = self.kill()
        if relay_thread is not None:
            try:
                self._delete(self._gathered([]))
            except Exception as exc:  # noqa: BLE001 - stopping: the poll of the next process sends them again
                log.info("outbox: sent envelopes left to the next process (%s)", type(exc).__name__)

    def kill(self):
        self._running = False
        relay_thread, self._relay_thread = self._relay_thread, None
        if relay_thread is not None:
            relay_thread.kill()
        self.publisher.close()
        return relay_thread

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
        if not isinstance(message_type, MessageType):  # a bare name would skip the registry's versioning
            raise ContractError(f"publish() takes a contracts.MessageType, not {type(message_type).__name__}")
        envelope = build_envelope(message_type.name, data, version=message_type.version,
                                  source=f"linli/{self.container.service_name}", subject=subject,
                                  community=community, message_id=message_id,
                                  correlationid=worker_ctx.context_data.get(CORRELATION_KEY) or worker_ctx.call_id)
        return {"_id": envelope.id, "wire": envelope.to_wire(), "type": envelope.type,
                "created_at": datetime.now(timezone.utc), "sent_at": None}

    def write(self, session, records: list[dict], fresh: bool) -> None:
        """``records`` in ``session``'s transaction, in one command. ``fresh``: their ids are new (derived
        from ids this transaction creates, or random), so an insert; else a fact id staged again (the same
        month assessed twice) replaces what waits under it and is published again, as the dispatcher would."""
        if not records:
            return
        if fresh:
            self.collection().insert_many(records, ordered=False, session=session)
        else:
            self.collection().bulk_write([ReplaceOne({"_id": r["_id"]}, r, upsert=True) for r in records],
                                         session=session)

    def send(self, records: list[dict], unverified: list[str]) -> None:
        """Publish committed ``records``, and those of ``unverified`` ids that were committed (read back:
        written in a transaction this process did not see end); the relay deletes them after."""
        ids = {r["_id"] for r in records} | set(unverified)
        self._owned.update(ids)
        sent: list[str] = []
        try:
            for start in range(0, len(unverified), MAX_IDS_PER_WRITE):
                records = records + list(self.collection().find(
                    {"_id": {"$in": unverified[start:start + MAX_IDS_PER_WRITE]}, "sent_at": None}))
            sent = self._publish(records)
        except Exception as exc:  # noqa: BLE001 - committed and kept: the relay loop sends it later
            log.warning("outbox: publishing after the commit failed (%s); the relay will", type(exc).__name__)
        finally:
            if sent:
                self._sent.put(sent)  # wakes the relay, which deletes them
            self._owned.difference_update(ids - set(sent))

    def _publish(self, records: list[dict]) -> list[str]:
        """The ids of ``records`` the broker acked (the rest wait for the relay)."""
        latest = list({r["_id"]: r for r in records}.values())  # a fact staged twice is published once, as last
        acked = self.publisher.publish([(record["wire"], record["type"]) for record in latest])
        sent = [record for record, ack in zip(latest, acked) if ack]
        if sent:
            failpoint("outbox:after-publish")
        for message_type in {record["type"] for record in sent}:
            MESSAGES_PUBLISHED.labels(self.container.service_name, message_type).inc(
                sum(record["type"] == message_type for record in sent))
        return [record["_id"] for record in sent]

    def _relay_forever(self):
        """Delete what was sent, woken by commits; now and then publish what a dead process left."""
        next_poll = time.monotonic()
        while self._running:
            try:
                sent = self._sent.get(timeout=max(0.0, next_poll - time.monotonic()))
            except Empty:
                sent = None
            try:
                if sent is not None:
                    self._delete(self._gathered(sent))
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_every_s
                    self._relay_left_behind()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a broker or database hiccup
                log.warning("outbox relay: %s; trying again", type(exc).__name__)

    def _gathered(self, sent: list[str]) -> list[str]:
        eventlet.sleep(LINGER_S)  # commits a moment apart share one delete
        while True:
            try:
                sent = sent + self._sent.get_nowait()
            except Empty:
                return sent

    def _delete(self, ids: list[str]) -> None:
        try:
            for start in range(0, len(ids), MAX_IDS_PER_WRITE):
                self.collection().delete_many({"_id": {"$in": ids[start:start + MAX_IDS_PER_WRITE]}})
        finally:
            self._owned.difference_update(ids)  # one not deleted is the poll's: published again, same id

    def _relay_left_behind(self) -> None:
        """What a process staged but did not get to publish (it died), after a grace period: one
        indexed query on a collection that holds only what waits."""
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=self.grace_s)
        left = [r for r in self.collection().find({"sent_at": None, "created_at": {"$lt": cutoff}})
                .limit(MAX_IDS_PER_WRITE) if r["_id"] not in self._owned]
        if left:
            self._owned.update(r["_id"] for r in left)
            sent = []
            try:
                sent = self._publish(left)
            finally:
                self._delete(sent)
                self._owned.difference_update(r["_id"] for r in left)
            log.warning("outbox: published %d message(s) left behind by an earlier process", len(sent))


class Staging:
    """What a worker sees: ``stage(session, message_type, data, ...)`` writes an envelope in the
    caller's transaction; ``stage.flush()`` publishes what this worker staged, right after the
    commit (else the end of the worker does, else the relay loop)."""

    def __init__(self, outbox: Outbox, worker_ctx):
        self.outbox, self.worker_ctx = outbox, worker_ctx
        self.committed: list[dict] = []  # records of transactions ``committing`` saw commit
        self.unverified: list[str] = []  # ids written in a transaction not seen to end: sent if committed
        self._open = None  # (session, staged) while ``batch`` or ``committing`` collects for one write

    def __call__(self, session, message_type: MessageType, data: dict, **kwargs) -> str:
        record = self.outbox.record(self.worker_ctx, message_type, data, **kwargs)
        self._stage(session, [record], fresh=kwargs.get("message_id") is None)
        return record["_id"]

    def publisher(self, session):
        """``publish(message_type, data, **kwargs)`` staging in ``session``'s transaction."""
        return lambda message_type, data, **kwargs: self(session, message_type, data, **kwargs)

    def stage_many(self, session, messages) -> None:
        """``messages``: ``(message_type, data, kwargs)`` whose ids are new; one write for all."""
        self._stage(session, [self.outbox.record(self.worker_ctx, message_type, data, **kwargs)
                              for message_type, data, kwargs in messages], fresh=True)

    def _stage(self, session, records: list[dict], fresh: bool) -> None:
        if self._open is not None and self._open[0] is session:
            self._open[1].append((records, fresh))
            return
        self.outbox.write(session, records, fresh)
        self.unverified.extend(r["_id"] for r in records)

    @contextmanager
    def batch(self, session):
        """``with stage.batch(session) as publish:`` what is published inside is staged in one write
        (two if some ids are fact ids that may repeat) when the block ends, in ``session``'s transaction;
        inside a block already collecting for ``session`` (``committing``), in that block's write."""
        if self._open is not None and self._open[0] is session:
            yield self.publisher(session)
            return
        written: list[dict] = []
        with self._collecting(session, written) as publish:
            yield publish
        self.unverified.extend(r["_id"] for r in written)

    @contextmanager
    def committing(self):
        """``with stage.committing() as collect:`` around a transaction whose every attempt runs its body
        ``with collect(session):`` (``exactly_once``, ``transaction``): what the body stages in ``session``,
        by any of the calls above, is written in one command at its end (two if some ids are fact ids).
        When the block ends, the transaction committed: what its last attempt staged is published from
        memory. When it ends in an error, that attempt is read back at the flush and sent if committed."""
        last_attempt: list[dict] = []

        def collect(session):
            last_attempt.clear()  # an attempt aborted and run again: its envelopes are gone with it
            return self._collecting(session, last_attempt)

        try:
            yield collect
        except BaseException:
            self.unverified.extend(r["_id"] for r in last_attempt)
            raise
        self.committed.extend(last_attempt)
        self.flush()

    @contextmanager
    def _collecting(self, session, written: list):
        staged: list = []
        outer, self._open = self._open, (session, staged)
        try:
            yield self.publisher(session)
        finally:
            self._open = outer
        for fresh in (True, False):
            self.outbox.write(session, [r for records, f in staged if f is fresh for r in records], fresh)
        written.extend(r for records, _ in staged for r in records)

    def transaction(self, work, turn=None):
        """``work(session, publish)`` in one transaction (retried whole on a transient conflict),
        then what it published is sent; returns what ``work`` returned. ``turn``: a context held
        from before the transaction until its commit, not while publishing."""
        with self.committing() as collect:
            def attempt(session):
                with collect(session) as publish:
                    return work(session, publish)

            with turn or nullcontext(), self.outbox.client().start_session() as session:
                return session.with_transaction(attempt)

    def flush(self) -> None:
        if not (self.committed or self.unverified):
            return
        (records, self.committed), (unverified, self.unverified) = (self.committed, []), (self.unverified, [])
        failpoint("outbox:after-commit")
        self.outbox.send(records, unverified)
