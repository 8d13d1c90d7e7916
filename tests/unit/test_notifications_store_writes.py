"""How many write statements the notifications store sends for a batch (a fake collection records
them): on the store a statement costs far more than a document, so a batch's like endings share one."""
from datetime import datetime, timezone

from pymongo import UpdateMany, UpdateOne

from services.common import leases
from services.notifications import store
from services.notifications.delivery import Attempt

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=timezone.utc)


class Result:
    def __init__(self, matched_count):
        self.matched_count = matched_count


class FakeCollection:
    def __init__(self, existing=()):
        self.existing = set(existing)
        self.writes, self.inserted = [], []

    def bulk_write(self, writes, ordered=True, session=None):
        self.writes.extend(writes)
        return Result(sum(len(w._filter["_id"]["$in"]) if isinstance(w, UpdateMany) else 1 for w in writes))

    def insert_many(self, documents, ordered=True, session=None):
        self.inserted.extend(documents)

    def find(self, query, projection=None, session=None):
        ids = query["_id"]["$in"]
        return FakeCursor([{"_id": i} for i in ids if i in self.existing])


class FakeCursor(list):
    def batch_size(self, size):
        return self


def claimed(number, owner="claim-1"):
    return {"_id": f"delivery-{number}", leases.OWNER: owner, "attempts": 1, "channel": "sms"}


def test_a_batchs_sent_deliveries_are_one_statement_and_each_distinct_ending_one_more():
    deliveries = FakeCollection()
    ended = ([Attempt(claimed(n), "sent") for n in range(60)]
             + [Attempt(claimed(n), "failed", "SMS gateway answered 400") for n in range(60, 90)]
             + [Attempt(claimed(90), "failed", "the resident has not consented to sms")])
    recorded = store.finish_batch({store.DELIVERIES: deliveries}, ended, NOW)
    assert len(recorded) == 91
    assert len(deliveries.writes) == 3 and all(isinstance(w, UpdateMany) for w in deliveries.writes)
    by_size = sorted(deliveries.writes, key=lambda w: len(w._filter["_id"]["$in"]))
    assert [len(w._filter["_id"]["$in"]) for w in by_size] == [1, 30, 60]
    sent = by_size[2]
    assert sent._filter[leases.OWNER] == "claim-1"  # only where this instance still holds the lease
    assert sent._doc["$set"]["status"] == "sent" and sent._doc["$set"]["sent_at"] == NOW


def test_endings_under_different_leases_are_not_merged():
    deliveries = FakeCollection()
    store.finish_batch({store.DELIVERIES: deliveries},
                       [Attempt(claimed(1, "claim-1"), "sent"), Attempt(claimed(2, "claim-2"), "sent")], NOW)
    assert sorted(w._filter[leases.OWNER] for w in deliveries.writes) == ["claim-1", "claim-2"]


def test_new_residents_are_inserted_in_one_write_and_known_ones_updated():
    audience = FakeCollection(existing={"r-known"})
    facts = [{"resident_id": f"r-{n}", "community_id": "tongzilin", "preferred_language": "en", "consent": None}
             for n in range(50)]
    facts.append({"resident_id": "r-known", "community_id": "yulin", "preferred_language": "zh-CN"})
    store.upsert_residents({store.AUDIENCE: audience}, facts)
    assert len(audience.inserted) == 50
    assert audience.inserted[0] == {"_id": "r-0", "community_id": "tongzilin", "preferred_language": "en",
                                    "status": "active"}  # no consent given: none stored
    [update] = audience.writes
    assert isinstance(update, UpdateOne) and update._filter == {"_id": "r-known"}
    assert update._doc == {"$set": {"community_id": "yulin", "preferred_language": "zh-CN"}}
