"""MongoDB access for a service: one client per container, one database per service.

``MongoDatabase`` is a nameko dependency provider. It connects in ``setup()``
(nameko may construct a provider more than once), closes in ``stop()``, and
hands each worker a ``Database``: the pymongo database, plus the session of
the transaction the worker runs in when it handles a message exactly once.
mongoengine documents of the service use ``meta = {"db_alias": <name>}``.
Two containers of one service in one process (competing consumers in a test)
share that alias's client until the last of them stops.
"""
from __future__ import annotations

import threading
from contextlib import nullcontext
from datetime import datetime, timezone
from functools import partial

import mongoengine
from nameko.extensions import DependencyProvider
from prometheus_client import Counter
from pymongo import monitoring

from services.common import bookkeeping
from services.common.bookkeeping import PROCESSED_COLLECTION
from services.common.races import retried

DB_COMMANDS = Counter(
    "linli_db_commands_total",
    "Database commands the service sent (each a round trip), by command name.",
    ["service", "command"],
)
DB_TRANSACTIONS_ABORTED = Counter(
    "linli_db_transactions_aborted_total",
    "Transactions that did not commit (a write conflict, a lost race, an error): each is work done again.",
    ["service"],
)
# Command names are pymongo's own small vocabulary; anything else is counted as ``other``.
_KNOWN_COMMANDS = frozenset({
    "find", "getMore", "insert", "update", "delete", "findAndModify", "aggregate", "count", "distinct",
    "commitTransaction", "abortTransaction", "createIndexes", "listIndexes", "dropIndexes", "listCollections",
    "create", "drop", "dropDatabase", "killCursors", "endSessions", "hello", "isMaster", "ismaster", "ping",
    "buildInfo", "collMod", "renameCollection", "listDatabases",
})


class CommandCounter(monitoring.CommandListener):
    """Counts every command one service's client sends: the budget of ``make bench`` (commands per
    unit of work do not depend on the machine's load) and, on /metrics, the operators' view.
    Monitoring handshakes run on their own sockets and are not commands, so they are not counted."""

    def __init__(self, service: str):
        self.service = service

    def started(self, event):
        name = event.command_name if event.command_name in _KNOWN_COMMANDS else "other"
        DB_COMMANDS.labels(self.service, name).inc()
        if name == "abortTransaction":
            DB_TRANSACTIONS_ABORTED.labels(self.service).inc()

    def succeeded(self, event):
        pass

    def failed(self, event):
        # A commit that fails (a write conflict found at commit) aborts without an abortTransaction.
        if event.command_name == "commitTransaction":
            DB_TRANSACTIONS_ABORTED.labels(self.service).inc()


_aliases_lock = threading.Lock()
_alias_users: dict[str, int] = {}


class Database:
    """What a worker sees: the service's database and, inside ``exactly_once``, a session."""

    def __init__(self, client, name: str):
        self.client = client
        self.db = client[name]
        self.session = None

    def __getitem__(self, collection_name: str):
        return self.db[collection_name]

    def exactly_once(self, consumer: str, envelopes: list, effect, outbox=None) -> list:
        """Run ``effect(fresh)`` in a transaction that also records each envelope id as processed.

        ``fresh`` is ``envelopes`` less those this consumer has already
        processed; their records are inserted in the same transaction as the
        effect, under a unique ``_id``, so effect and record commit or vanish
        together. Returns ``fresh``.

        The records are inserted first, without looking (a batch then costs the
        insert, the effect's writes and the commit): a record that exists (a
        redelivery, or a concurrent instance that won the race) fails the insert,
        which aborts the transaction, and it runs again reading which ids are
        taken. A transaction that conflicts with a concurrent one is retried by
        pymongo's ``with_transaction``.

        ``outbox``: the worker's outbox staging (``outbox.Staging``), if the
        service has one: what the effect stages through it in this session is
        written in one command at the effect's end, commits with the claims, and
        is published after the commit (``Staging.committing``).
        """
        claims = self.db[PROCESSED_COLLECTION]
        ids = {f"{consumer}:{envelope.id}": envelope for envelope in envelopes}

        def in_transaction(session, look_first: bool, collect):
            with collect(session):
                return claim_and_apply(session, look_first)

        def claim_and_apply(session, look_first: bool):
            taken = set()
            if look_first:
                taken = {doc["_id"] for doc in claims.find({"_id": {"$in": list(ids)}}, {"_id": 1}, session=session)
                         .batch_size(len(ids) + 1)}  # one round trip: no getMore to learn the end
            fresh_ids = [claim_id for claim_id in ids if claim_id not in taken]
            if not fresh_ids:
                return []
            now = datetime.now(timezone.utc)
            claims.insert_many([{"_id": claim_id, "processed_at": now} for claim_id in fresh_ids], session=session)
            fresh = [ids[claim_id] for claim_id in fresh_ids]
            self.session = session
            try:
                effect(fresh)
            finally:
                self.session = None
            return fresh

        def run(attempt: int):
            with self.client.start_session() as session:
                return session.with_transaction(partial(in_transaction, look_first=attempt > 0, collect=collect))

        with outbox.committing() if outbox is not None else nullcontext(_collect_nothing) as collect:
            return retried(run)


def _collect_nothing(session):
    return nullcontext()


class MongoDatabase(DependencyProvider):
    """Provides the service's database, named ``<MONGO_DB_PREFIX><name>``.

    ``documents``: the service's mongoengine classes, whose indexes are built
    in ``setup()`` — before the first request, not lazily by the first write,
    which would let concurrent writes slip past a unique index still missing.
    ``prepare(database)``: the same for collections used through pymongo directly.
    """

    def __init__(self, name: str, documents=(), prepare=None):
        self.name = name
        self.documents = tuple(documents)
        self.prepare = prepare
        self.client = None

    def setup(self):
        config = self.container.config
        self.database_name = config.get("MONGO_DB_PREFIX", "linli_") + self.name
        with _aliases_lock:
            if _alias_users.get(self.name, 0) == 0:
                mongoengine.connect(
                    db=self.database_name,
                    alias=self.name,
                    host=config["MONGO_URI"],
                    tz_aware=True,
                    uuidRepresentation="standard",
                    serverSelectionTimeoutMS=int(config.get("MONGO_TIMEOUT_MS", 5000)),
                    # Names the client in the server's logs, and keeps
                    # mongoengine from sharing one client between services
                    # whose settings would otherwise be equal.
                    appname=f"linli-{self.name}",
                    event_listeners=[CommandCounter(self.name)],
                )
            _alias_users[self.name] = _alias_users.get(self.name, 0) + 1
        self.client = mongoengine.get_connection(self.name)
        for document in self.documents:
            document.ensure_indexes()
        if self.prepare is not None:
            self.prepare(self.client[self.database_name])
        bookkeeping.prepare(self.client[self.database_name])

    # -- bookkeeping that expires (services.common.bookkeeping): processed_messages, ingest records --

    def start(self):
        self._pruner = self.container.spawn_managed_thread(partial(
            bookkeeping.prune_forever, self.client[self.database_name], bookkeeping.retention(self.container.config)))

    def stop(self):
        pruner, self._pruner = getattr(self, "_pruner", None), None
        if pruner is not None:
            pruner.kill()
        if self.client is None:
            return
        with _aliases_lock:
            _alias_users[self.name] -= 1
            if _alias_users[self.name] == 0:
                mongoengine.disconnect(alias=self.name)
        self.client = None

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return Database(self.client, self.database_name)
