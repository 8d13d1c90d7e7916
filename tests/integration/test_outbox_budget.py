"""The outbox in a constant number of database commands per batch (issue #15), whatever its size,
and bookkeeping that expires: old records go, recent ones stay."""
import math
import time
from datetime import datetime, timedelta, timezone

import pytest
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.services import entrypoint_hook

from contracts import RESIDENT_IMPORT_COMPLETED, RESIDENT_REGISTERED, build_envelope, parse_envelope
from services.common import bookkeeping
from services.common.messaging import fact_id, message_handler
from services.common.mongo import PROCESSED_COLLECTION, MongoDatabase
from services.common.outbox import MAX_IDS_PER_WRITE, OUTBOX, Outbox, backlog
from tests.integration.budgets import commands, spent
from tests.waiting import until

pytestmark = pytest.mark.integration


def completed(number: int) -> dict:
    return {"import_id": f"import-{number}", "community_id": "tongzilin", "rows_total": 1, "registered": 1,
            "already_registered": 0, "rejected": 0}


class Stager:
    name = "stager"
    db = MongoDatabase("stager")
    outbox = Outbox("stager", poll_every_s=3600)  # polls once at start: none falls in what a test counts

    @rpc
    def stage(self, count: int, fact_ids: bool) -> None:
        def work(session, publish):
            for number in range(count):
                publish(RESIDENT_IMPORT_COMPLETED, completed(number),
                        message_id=fact_id("budget", number) if fact_ids else None)

        self.outbox.transaction(work)


@pytest.fixture
def stager(container_factory, config, bus_tap, mongo_client):
    tap = bus_tap("stager")
    container_factory(Stager, config).start()
    database = mongo_client[config["MONGO_DB_PREFIX"] + "stager"]
    time.sleep(0.5)  # the start's own commands (indexes, the first idle poll, the first prune) are not counted

    def stage(count, fact_ids=False):
        before = commands("stager")
        with ServiceRpcProxy("stager", config) as proxy:
            proxy.stage(count, fact_ids)
        until(lambda: database[OUTBOX].count_documents({}) == 0, "the sent envelopes deleted", timeout_s=30)
        time.sleep(0.3)
        return spent(before, commands("stager"))

    stage.tap, stage.database = tap, database
    return stage


def without_deletes(counts: dict) -> dict:
    return {command: n for command, n in counts.items() if command != "delete"}


@pytest.mark.parametrize("fact_ids", [False, True])
def test_staging_and_relaying_a_batch_costs_the_same_few_commands_whatever_its_size(stager, fact_ids):
    few, many = stager(5, fact_ids), stager(500, fact_ids)
    print(f"\n5 envelopes: {few}\n500 envelopes: {many}")
    # One write and one commit whatever the size; deleted a chunk of MAX_IDS_PER_WRITE at a time.
    assert few["delete"] == 1 and many["delete"] == math.ceil(500 / MAX_IDS_PER_WRITE), many
    assert without_deletes(many) == without_deletes(few), "a batch of 500 writes what a batch of 5 does"
    assert sum(few.values()) <= 4, few  # write, commit, delete (and an idle poll, if one fell in between)
    assert len([m for m in stager.tap.messages() if m["type"] == "resident.import_completed"]) == 505


class Relayer:
    """A consumer that publishes, per message it handles, in the three ways a handler may: one envelope
    (``publisher``), a list (``stage_many``), and inside a ``batch`` block of its own."""
    name = "relayer"
    db = MongoDatabase("relayer")
    outbox = Outbox("relayer", poll_every_s=3600)

    @message_handler(RESIDENT_REGISTERED, source="producer", batch=True)
    def relay(self, envelopes):
        self.db["effects"].insert_many([{"_id": e.data["resident_id"]} for e in envelopes], session=self.db.session)
        publish = self.outbox.publisher(self.db.session)
        for envelope in envelopes:
            number = envelope.data["resident_id"]
            publish(RESIDENT_IMPORT_COMPLETED, completed(f"{number}-a"))
            self.outbox.stage_many(self.db.session, [(RESIDENT_IMPORT_COMPLETED, completed(f"{number}-b"), {})])
            with self.outbox.batch(self.db.session) as publish_in_block:
                publish_in_block(RESIDENT_IMPORT_COMPLETED, completed(f"{number}-c"),
                                 message_id=fact_id("relayed", number))
        if any(envelope.data["resident_id"] == "fail" for envelope in envelopes):
            raise RuntimeError("the handler fails after publishing")


def registered(resident_id: str):
    return parse_envelope(build_envelope("resident.registered", {**RESIDENT_REGISTERED.example,
                                                                 "resident_id": resident_id},
                                         source="linli/producer").to_wire())


@pytest.fixture
def relayer(container_factory, config, bus_tap, mongo_client):
    tap = bus_tap("relayer")
    container = container_factory(Relayer, config)
    container.start()
    database = mongo_client[config["MONGO_DB_PREFIX"] + "relayer"]
    time.sleep(0.5)  # the start's own commands are not counted

    def handle(envelopes):
        before = commands("relayer")
        try:
            with entrypoint_hook(container, "relay") as relay:
                relay(envelopes)
        finally:
            until(lambda: database[OUTBOX].count_documents({}) == 0, "the sent envelopes deleted", timeout_s=30)
            time.sleep(0.3)
        return spent(before, commands("relayer"))

    handle.tap, handle.database = tap, database
    return handle


def test_a_handler_batch_stages_what_it_publishes_in_one_write_whatever_its_size(relayer):
    """Claims, effects and envelopes commit together. The envelopes (new ids, and fact ids that may
    repeat: one write of each kind) cost the batch two writes, not three per message; they are
    published from memory after the commit (no read-back), then deleted in one command."""
    few = relayer([registered(f"few{n}") for n in range(2)])
    many = relayer([registered(f"many{n}") for n in range(100)])
    print(f"\n2 messages handled: {few}\n100 messages handled: {many}")
    assert without_deletes(few) == without_deletes(many) == {"insert": 3, "update": 1, "commitTransaction": 1}, many
    assert few["delete"] == 1 and many["delete"] == math.ceil(3 * 100 / MAX_IDS_PER_WRITE), many
    relayed = [m for m in relayer.tap.messages() if m["type"] == "resident.import_completed"]
    assert len(relayed) == len({m["id"] for m in relayed}) == 3 * 102


def test_a_handler_that_fails_publishes_nothing_and_a_redelivery_nothing_again(relayer):
    batch = [registered(f"once{n}") for n in range(5)]
    relayer(batch)
    assert len(relayer.tap.messages()) == 15
    assert relayer(batch) == {"insert": 1, "abortTransaction": 1, "find": 1, "commitTransaction": 1}
    with pytest.raises(RuntimeError):
        relayer([registered("fail"), registered("with-it")])
    assert relayer.tap.messages() == [], "what a failed handler staged is gone with its transaction"
    assert relayer.database["effects"].count_documents({"_id": {"$in": ["fail", "with-it"]}}) == 0


def test_what_a_dead_process_left_is_published_by_one_indexed_poll(container_factory, config, bus_tap, mongo_client):
    database = mongo_client[config["MONGO_DB_PREFIX"] + "stager"]
    old = datetime.now(timezone.utc) - timedelta(minutes=5)
    wire = {"specversion": "1.0", "id": "left-1", "source": "linli/stager", "type": "resident.import_completed",
            "time": old.isoformat(), "dataschema": "urn:linli:contracts:resident.import_completed:v1",
            "datacontenttype": "application/json", "data": completed(1), "subject": None, "community": None,
            "correlationid": None}
    database[OUTBOX].insert_many([{"_id": f"left-{n}", "wire": {**wire, "id": f"left-{n}"},
                                   "type": wire["type"], "created_at": old, "sent_at": None} for n in range(50)])
    database[OUTBOX].insert_one({"_id": "sent-long-ago", "wire": wire, "type": wire["type"], "created_at": old,
                                 "sent_at": old})  # marked sent by an earlier version: deleted, not sent again
    assert backlog(database).pending == 50
    tap = bus_tap("stager")
    container_factory(Stager, config).start()
    until(lambda: database[OUTBOX].count_documents({}) == 0, "the relay", timeout_s=30)
    assert sorted(m["id"] for m in tap.messages()) == sorted(f"left-{n}" for n in range(50))
    assert backlog(database).pending == 0 and backlog(database).oldest_age_seconds == 0.0


def test_bookkeeping_older_than_the_retention_goes_and_recent_stays(mongo_client, db_prefix):
    database = mongo_client[db_prefix + "bookkeeping"]
    bookkeeping.prepare(database)
    now = datetime.now(timezone.utc)
    ages = {"ancient": timedelta(days=30), "old": timedelta(days=8), "recent": timedelta(days=6),
            "new": timedelta(0)}
    for name, age in ages.items():
        database[PROCESSED_COLLECTION].insert_one({"_id": f"consumer:{name}", "processed_at": now - age})
        database["ingest_records"].insert_one({"_id": f"source|{name}", "type": "t", "result": {}, "at": now - age})
    assert bookkeeping.prune(database, timedelta(days=7), now) == 4
    assert sorted(d["_id"] for d in database[PROCESSED_COLLECTION].find()) == ["consumer:new", "consumer:recent"]
    assert sorted(d["_id"] for d in database["ingest_records"].find()) == ["source|new", "source|recent"]
    assert bookkeeping.prune(database, timedelta(days=7), now) == 0


def test_a_service_prunes_its_bookkeeping_when_it_starts(container_factory, config, mongo_client):
    database = mongo_client[config["MONGO_DB_PREFIX"] + "stager"]
    now = datetime.now(timezone.utc)
    database[PROCESSED_COLLECTION].insert_many([{"_id": "c:old", "processed_at": now - timedelta(hours=3)},
                                                {"_id": "c:recent", "processed_at": now}])
    container_factory(Stager, {**config, "BOOKKEEPING_RETENTION_HOURS": 2}).start()
    until(lambda: database[PROCESSED_COLLECTION].count_documents({}) == 1, "the old claim pruned", timeout_s=30)
    assert database[PROCESSED_COLLECTION].find_one()["_id"] == "c:recent"
