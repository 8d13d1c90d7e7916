"""One-off rewrites of stored residents, run by the service when it starts (``MongoDatabase(prepare=...)``),
before its first request. Each marks itself done in the ``migrations`` collection, so a start after
that costs one lookup; each is idempotent, so two instances starting at once write the same values."""
from __future__ import annotations

from pymongo import UpdateOne

from services.residents.documents import former_key
from services.residents.domain import IDENTITY_RULES, search_text

NAME_SEARCH_FOLDED = "name_search_folded"
DEPARTED_IDENTITY = "departed_identity"
BATCH = 500


def run_all(database) -> None:
    fold_name_search(database["residents"], database["migrations"])
    move_departed_identity(database["residents"], database["migrations"])


def move_departed_identity(residents, migrations) -> None:
    """Departed residents recorded before departures moved their identity keys aside still hold them,
    which would refuse their return: move them to ``former_identity`` (``identity.retire`` does it now)."""
    if migrations.find_one({"_id": DEPARTED_IDENTITY}) is not None:
        return
    for found in residents.find({"status": "departed"}, dict.fromkeys(IDENTITY_RULES, 1)):
        held = [k for k in IDENTITY_RULES if found.get(k)]
        if held:
            residents.update_one({"_id": found["_id"]}, {
                "$addToSet": {"former_identity": {"$each": [former_key(k, found[k]) for k in held]}},
                "$unset": dict.fromkeys(held, "")})
    migrations.update_one({"_id": DEPARTED_IDENTITY}, {"$set": {"done": True}}, upsert=True)


def fold_name_search(residents, migrations) -> int:
    """Recompute ``name_search`` (accents folded since issue #14) of every stored resident, in
    ``_id`` order and batches. Returns how many documents it rewrote."""
    if migrations.find_one({"_id": NAME_SEARCH_FOLDED}):
        return 0
    rewritten, after = 0, None
    while True:
        query = {"name": {"$type": "string"}}  # erased residents have no name
        if after is not None:
            query["_id"] = {"$gt": after}
        batch = list(residents.find(query, {"name": 1, "name_search": 1}).sort("_id", 1).limit(BATCH))
        if not batch:
            break
        updates = [UpdateOne({"_id": doc["_id"]}, {"$set": {"name_search": search_text(doc["name"])}})
                   for doc in batch if doc.get("name_search") != search_text(doc["name"])]
        if updates:
            residents.bulk_write(updates, ordered=False)
        rewritten += len(updates)
        after = batch[-1]["_id"]
    migrations.update_one({"_id": NAME_SEARCH_FOLDED}, {"$set": {"done": True}}, upsert=True)
    return rewritten
