"""Partner feeds stored by notifications before partners became a service move into the partners database
when the partners service starts (services/partners/migrations.py), from the data the old code wrote
(tests/data/notifications_partner_data_v1.json): the partner, its subscriptions, its feed and its deliveries
are there, a pending delivery is delivered, the feed's sequence goes on, and a second start doubles nothing."""
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from bson import json_util
from kombu import Connection, Exchange, Producer

from contracts import EVENT_SCHEDULED, build_envelope
from services.common.auth import issue_token
from services.partners import feed_store
from services.partners.broker_admin import partner_queue
from services.partners.service import PartnersService
from tests.conftest import TEST_SECRET
from tests.waiting import until

pytestmark = pytest.mark.integration
FIXTURE = Path(__file__).parents[1] / "data" / "notifications_partner_data_v1.json"
PARTNER = "culture-bureau"
ADMIN = {"Authorization": "Bearer " + issue_token(TEST_SECRET, subject="test", scopes=["partners:admin"],
                                                  communities=["*"])}


def stored_by_notifications() -> dict:
    return json_util.loads(FIXTURE.read_text(encoding="utf-8"))["collections"]


def load_into_notifications(database) -> None:
    for name, documents in stored_by_notifications().items():
        database[name].insert_many(documents)
    # notifications' records that it had rewritten its deliveries (they go with the deliveries)
    database["migrations"].insert_many([{"_id": "delivery_list_key", "done": True},
                                        {"_id": "feed_claimable_at", "done": True},
                                        {"_id": "claimable_at", "done": True}])


def consume_all(amqp_uri: str, expected: int) -> list[dict]:
    received = []
    with Connection(amqp_uri) as connection:
        queue = partner_queue(PARTNER)(connection.default_channel)

        def take():
            message = queue.get(no_ack=True)
            if message is not None:
                received.append(message.payload)
            return len(received) >= expected

        until(take, f"{expected} messages in the partner's queue", timeout_s=30)
    return received


def test_partner_feeds_move_from_notifications_and_a_second_start_doubles_nothing(
        container_factory, config, mongo_client, amqp_uri, free_port):
    prefix = config["MONGO_DB_PREFIX"]
    notifications, partners = mongo_client[prefix + "notifications"], mongo_client[prefix + "partners"]
    load_into_notifications(notifications)
    old = stored_by_notifications()
    with Connection(amqp_uri) as connection:  # the partner's queue, as the old registration left it on the broker
        partner_queue(PARTNER)(connection.default_channel).declare()
    feeds_config = {**config, "FEED_POLL_SECONDS": 0.1}

    def start():
        address = f"127.0.0.1:{free_port()}"
        container = container_factory(PartnersService, {**feeds_config, "WEB_SERVER_ADDRESS": address})
        container.start()
        return container, f"http://{address}"

    container, url = start()
    # The partner and its subscriptions, served by partners now.
    partner = requests.get(f"{url}/partners/{PARTNER}", headers=ADMIN).json()
    assert sorted(s["id"] for s in partner["subscriptions"]) == sorted(s["_id"] for s in old["feed_subscriptions"])
    assert partner["scopes"] == old["partners"][0]["scopes"]
    # The pending queue deliveries are delivered, with the envelopes notifications recorded.
    queued = {d["envelope_id"] for d in old["feed_deliveries"] if d["method"] == "queue"}
    assert {m["id"] for m in consume_all(amqp_uri, len(queued))} == queued
    until(lambda: {d["envelope_id"] for d in requests.get(f"{url}/partners/{PARTNER}/deliveries", headers=ADMIN,
                                                          params={"status": "sent"}).json()["items"]} == queued,
          "the queue deliveries marked sent")
    failed = requests.get(f"{url}/partners/{PARTNER}/deliveries", headers=ADMIN, params={"status": "failed"}).json()
    assert {d["id"] for d in failed["items"]} == {d["_id"] for d in old["feed_deliveries"] if d["method"] == "webhook"}
    # The pull feed reads what was recorded, and its sequence goes on from notifications' counter.
    pulled = requests.get(f"{url}/feeds/{PARTNER}", headers=ADMIN).json()
    assert [i["id"] for i in pulled["items"]] == [e["envelope"]["id"] for e in sorted(
        (e for e in old["feed_entries"] if e["method"] == "pull"), key=lambda e: e["sequence"])]
    new = build_envelope(EVENT_SCHEDULED.name, {**EVENT_SCHEDULED.example, "event_id": "evt-after-the-move"},
                         source="linli/events", community="tongzilin")
    with Connection(amqp_uri) as connection:
        Producer(connection.default_channel).publish(
            new.to_wire(), exchange=Exchange("events.events", type="topic", durable=True),
            routing_key=new.type, serializer="json")
    after = until(lambda: requests.get(f"{url}/feeds/{PARTNER}", headers=ADMIN,
                                       params={"after": pulled["next"]}).json()["items"], "the new message's entry")
    assert [i["id"] for i in after] == [new.id]
    # One entry per subscription (queue, webhook, pull), numbered after the 9 notifications gave out.
    assert sorted(e["sequence"] for e in partners[feed_store.ENTRIES].find({"envelope.id": new.id})) == [10, 11, 12]
    until(lambda: partners[feed_store.DELIVERIES].find_one({"envelope_id": new.id, "method": "queue",
                                                            "status": "sent"}), "the new queue delivery sent")
    # notifications keeps none of it (nor its records of rewriting feed deliveries; its own one stays).
    assert not set(notifications.list_collection_names()) & set(old)
    assert [m["_id"] for m in notifications["migrations"].find()] == ["claimable_at"]

    # A second start — and the same data found in notifications again, as after a crash before the drop.
    container.kill()
    notifications["migrations"].delete_one({"_id": "claimable_at"})
    load_into_notifications(notifications)
    counts = {name: partners[name].count_documents({}) for name in old}
    moved = {"_id": {"$in": [d["_id"] for d in old["feed_deliveries"]]}}
    states = {d["_id"]: d["status"] for d in partners[feed_store.DELIVERIES].find(moved)}
    container, url = start()
    assert {name: partners[name].count_documents({}) for name in old} == counts
    assert {d["_id"]: d["status"] for d in partners[feed_store.DELIVERIES].find(moved)} == states  # sent stays sent
    assert set(states.values()) == {"sent", "failed"}
    assert partners[feed_store.COUNTERS].find_one({"_id": PARTNER})["sequence"] == 12
    assert not set(notifications.list_collection_names()) & set(old)
    assert requests.get(f"{url}/partners/{PARTNER}", headers=ADMIN).status_code == 200


def test_a_start_with_nothing_to_move_moves_nothing(container_factory, config, mongo_client, free_port):
    prefix = config["MONGO_DB_PREFIX"]
    mongo_client[prefix + "notifications"]["notifications"].insert_one({"_id": "n1", "at": datetime.now(timezone.utc)})
    container_factory(PartnersService, {**config, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"}).start()
    assert mongo_client[prefix + "partners"][feed_store.PARTNERS].count_documents({}) == 0
    assert mongo_client[prefix + "notifications"]["notifications"].count_documents({}) == 1  # not its to touch
