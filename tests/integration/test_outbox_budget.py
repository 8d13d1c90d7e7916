"""The outbox in a constant number of database commands per batch (issue #15), whatever its size,
and bookkeeping that expires: old records go, recent ones stay."""
import time
from datetime import datetime, timedelta, timezone

import pytest
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy

from contracts import RESIDENT_IMPORT_COMPLETED
from services.common import bookkeeping
from services.common.messaging import fact_id
from services.common.mongo import PROCESSED_COLLECTION, MongoDatabase
from services.common.outbox import OUTBOX, Outbox, backlog
from tests.integration.test_residents_budget import commands, spent, until

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
        until(lambda: database[OUTBOX].count_documents({}) == 0, 30, "the sent envelopes deleted")
        time.sleep(0.3)
        return spent(before, commands("stager"))

    stage.tap, stage.database = tap, database
    return stage


@pytest.mark.parametrize("fact_ids", [False, True])
def test_staging_and_relaying_a_batch_costs_the_same_few_commands_whatever_its_size(stager, fact_ids):
    few, many = stager(5, fact_ids), stager(500, fact_ids)
    print(f"\n5 envelopes: {few}\n500 envelopes: {many}")
    assert many == few, "a batch of 500 costs what a batch of 5 does"
    assert sum(many.values()) <= 4, many  # write, commit, delete (and an idle poll, if one fell in between)
    assert len([m for m in stager.tap.messages() if m["type"] == "resident.import_completed"]) == 505


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
    until(lambda: database[OUTBOX].count_documents({}) == 0, 30, "the relay")
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
    until(lambda: database[PROCESSED_COLLECTION].count_documents({}) == 1, 30, "the old claim pruned")
    assert database[PROCESSED_COLLECTION].find_one()["_id"] == "c:recent"
