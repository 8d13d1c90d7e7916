"""Partner feeds kept by the notifications service, before partners became a service of their own, moved here.

At start-up (``FromNotifications.setup``, before any entrypoint runs) the collections partner feeds
used in notifications' database — partners, subscriptions, sequence counters, feed entries and
deliveries — are copied into this service's database, then dropped from notifications'. A document
already here is never overwritten (``$setOnInsert``), so the copy is idempotent: a start after a crash
between the copy and the drop, or two instances starting at once, copies each document at most once,
and nothing this service changed since is undone (an instance whose copy finds the collection dropped
under it by another one stops there: the other moved everything). Once the collections are gone, a
start costs one ``listCollections``.

Config: ``NOTIFICATIONS_MONGO_URI`` (default ``MONGO_URI``; under ``make run`` notifications has a
SecantusDB of its own) and ``NOTIFICATIONS_DATABASE`` (default ``notifications``, after
``MONGO_DB_PREFIX``; empty: no migration).
"""
from __future__ import annotations

import logging

import pymongo
from nameko.extensions import DependencyProvider
from pymongo import UpdateOne
from pymongo.errors import OperationFailure

from services.partners import feed_store

log = logging.getLogger(__name__)
OWNED = (feed_store.PARTNERS, feed_store.SUBSCRIPTIONS, feed_store.COUNTERS, feed_store.ENTRIES,
         feed_store.DELIVERIES)
# Notifications' records of one-off rewrites of feed deliveries: done there, meaningless once they are gone.
NOTIFICATIONS_MARKERS = ("delivery_list_key", "feed_claimable_at")
BATCH = 1000


class MigrationError(Exception):
    pass


def move_partner_feeds(source, target) -> dict[str, int]:
    """Copy the collections of ``OWNED`` that exist in ``source`` (notifications' database) into
    ``target``, then drop them from ``source``; the documents inserted, per collection."""
    present = set(source.list_collection_names())
    moving = [name for name in OWNED if name in present]
    inserted = {}
    for name in moving:
        try:
            inserted[name] = _copy(source[name], target[name])
        except OperationFailure:
            if name in source.list_collection_names():
                raise
            return inserted  # another instance, starting at the same time, finished the move and dropped it
    for name in moving:  # only once every collection is here
        source.drop_collection(name)
    if moving:
        source[feed_store.MIGRATIONS].delete_many({"_id": {"$in": list(NOTIFICATIONS_MARKERS)}})
    return inserted


def _copy(source, target) -> int:
    inserted, batch = 0, []
    for document in source.find().sort("_id", pymongo.ASCENDING):
        batch.append(document)
        if len(batch) == BATCH:
            inserted += _insert_absent(target, batch)
            batch = []
    return inserted + (_insert_absent(target, batch) if batch else 0)


def _insert_absent(target, documents: list[dict]) -> int:
    result = target.bulk_write([
        UpdateOne({"_id": d["_id"]}, {"$setOnInsert": {k: v for k, v in d.items() if k != "_id"}}, upsert=True)
        for d in documents], ordered=False)
    if result.matched_count + result.upserted_count != len(documents):
        raise MigrationError(f"{target.name}: {len(documents)} documents to copy, "
                             f"{result.matched_count + result.upserted_count} found or inserted")
    return result.upserted_count


class FromNotifications(DependencyProvider):
    """Runs ``move_partner_feeds`` from notifications' database into this service's when the container is set up."""

    def setup(self):
        config = self.container.config
        source_name = config.get("NOTIFICATIONS_DATABASE", "notifications")
        if not source_name:
            return
        prefix = config.get("MONGO_DB_PREFIX", "linli_")
        source_client = pymongo.MongoClient(config.get("NOTIFICATIONS_MONGO_URI") or config["MONGO_URI"],
                                            tz_aware=True, appname="linli-partners-migration")
        target_client = pymongo.MongoClient(config["MONGO_URI"], tz_aware=True, appname="linli-partners-migration")
        try:
            inserted = move_partner_feeds(source_client[prefix + source_name], target_client[prefix + "partners"])
        finally:
            source_client.close()
            target_client.close()
        if inserted:
            log.info("partner feeds moved from %s%s: %s documents inserted", prefix, source_name, inserted)
