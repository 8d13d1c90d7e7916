"""One-off rewrites of stored residents, run by the service when it starts (``MongoDatabase(prepare=...)``),
before its first request. Each marks itself done in the ``migrations`` collection, so a start after
that costs one lookup; each is idempotent, so two instances starting at once write the same values."""
from __future__ import annotations

from pymongo import UpdateOne

from services.residents.domain import search_text

NAME_SEARCH_FOLDED = "name_search_folded"
BATCH = 500


def run_all(database) -> None:
    fold_name_search(database["residents"], database["migrations"])


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
