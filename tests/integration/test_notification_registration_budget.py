"""Notifications' database budget for events' registration messages (issue #15): a batch costs the
same few commands whatever its size, the events service is asked about an event only when the
view does not know it yet, the partner-feed consumer (of the partners service, beside it) spends no
transaction on what no partner subscribed to, and a batch of deliveries asks residents for its contacts once. Counts, not timings."""
import time
from datetime import datetime, timedelta, timezone

import pytest
from kombu import Connection, Exchange
from nameko.rpc import rpc
from nameko.testing.services import entrypoint_hook
from prometheus_client import REGISTRY

from contracts import build_envelope, parse_envelope
from services.notifications import delivery, store
from services.notifications.event_view import DETAIL_FIELDS
from services.notifications.service import NotificationsService
from services.partners import feed_store
from services.partners.service import PartnersService

from tests.integration.budgets import IN_TRANSACTIONS, commands, spent
from tests.waiting import until

pytestmark = pytest.mark.integration
EVENTS = ("ev-food", "ev-lecture")




class FakeEvents:
    """The events service's ``get``, counting who asks about which event."""

    name = "events"
    asked = []

    @rpc
    def get(self, event_id):
        FakeEvents.asked.append(event_id)
        return {"id": event_id, "community_id": "tongzilin", "category": "food", "organiser": "centre",
                "title": {"zh-CN": "国际美食节", "en": "International Food Festival"}, "description": {},
                "venue": "桐梓林社区广场", "time_zone": "Asia/Shanghai", "capacity": 100, "places_left": 3,
                "status": "scheduled", "starts_at": "2026-12-12T10:00:00+08:00",
                "ends_at": "2026-12-12T14:00:00+08:00"}


@pytest.fixture
def notifications(container_factory, config, mongo_client):
    FakeEvents.asked = []
    container_factory(FakeEvents, config).start()
    container = container_factory(NotificationsService, {**config, "DEFAULT_QUIET_HOURS": "off"})
    container.start()
    container_factory(PartnersService, config).start()  # the partner-feed consumer of the same messages
    database = mongo_client[config["MONGO_DB_PREFIX"] + "notifications"]
    # The audience, as resident.registered left it: in-app only (no delivery to send meanwhile).
    database[store.AUDIENCE].insert_many([
        {"_id": f"r{n:04d}", "community_id": "tongzilin", "preferred_language": ("zh-CN", "en")[n % 2],
         "tags": [], "consent": {"inapp": True}, "status": "active"} for n in range(400)])
    database[store.PREFERENCES].insert_many([{"_id": f"r{n:04d}", "digest": False} for n in range(0, 400, 7)])
    return container, database


def confirmed(n: int, event_id: str | None = None) -> dict:
    return build_envelope("registration.confirmed", {
        "registration_id": f"reg-{n}", "event_id": event_id or EVENTS[n % 2], "resident_id": f"r{n:04d}",
        "community_id": "tongzilin"}, source="linli/events", community="tongzilin").to_wire()


def waitlisted(n: int) -> dict:
    return build_envelope("registration.waitlisted", {
        "registration_id": f"reg-{n}", "event_id": EVENTS[0], "resident_id": f"r{n:04d}",
        "community_id": "tongzilin", "waitlist_position": n + 1}, source="linli/events",
        community="tongzilin").to_wire()


def batch_cost(container, entrypoint: str, wires) -> dict:
    """The commands of one batch's transaction (after it, the outbox sends its outcomes: 2 more)."""
    IN_TRANSACTIONS.seen.clear()
    IN_TRANSACTIONS.recording = True
    try:
        with entrypoint_hook(container, entrypoint) as handle:
            handle([parse_envelope(wire) for wire in wires])
    finally:
        IN_TRANSACTIONS.recording = False
    return dict(IN_TRANSACTIONS.seen)


def test_a_batch_of_registrations_costs_the_same_few_commands_whatever_its_size(notifications):
    container, database = notifications
    first = batch_cost(container, "on_registration_confirmed", [confirmed(n) for n in range(2)])
    assert sorted(FakeEvents.asked) == sorted(EVENTS)  # unknown to the view: asked once each, and kept
    assert all(set(database[store.EVENTS].find_one({"_id": e})["details"]) == set(DETAIL_FIELDS) for e in EVENTS)
    small = batch_cost(container, "on_registration_confirmed", [confirmed(n) for n in range(2, 22)])
    large = batch_cost(container, "on_registration_confirmed", [confirmed(n) for n in range(22, 222)])
    assert sorted(FakeEvents.asked) == sorted(EVENTS), "the view answers once it knows the events"
    print(f"a batch of registrations: first (events unknown) {first}; of 20 {small}; of 200 {large}")
    assert large == small, (small, large)  # independent of the batch's size
    # claims, registrations, the events' details, residents, preferences, notifications (look + insert),
    # the outcomes for reports, commit
    assert sum(large.values()) <= 9, large
    assert sum(first.values()) <= sum(large.values()) + 1, first  # + storing what events answered
    assert large.get("commitTransaction") == 1 and "abortTransaction" not in large, large
    assert database[store.NOTIFICATIONS].count_documents({"kind": "registration_confirmed"}) == 222
    assert database[store.REGISTRATIONS].count_documents({"status": "confirmed"}) == 222
    english = database[store.NOTIFICATIONS].find_one({"_id": {"$regex": ":r0001$"}, "kind": "registration_confirmed"})
    assert english["title"] == "You have a place: International Food Festival"

    waitlist = batch_cost(container, "on_registration_waitlisted", [waitlisted(n) for n in range(300, 350)])
    assert sum(waitlist.values()) <= 9, waitlist
    assert sorted(FakeEvents.asked) == sorted(EVENTS)
    bodies = {n["resident_id"]: n["body"] for n in database[store.NOTIFICATIONS].find({"kind": "registration_waitlisted"})}
    assert "number 302 on the waitlist" in bodies["r0301"] and "第301位" in bodies["r0300"]


def test_the_view_learns_an_event_from_its_scheduling_and_a_change_reads_it_again(notifications):
    container, database = notifications
    scheduled = build_envelope("event.scheduled", {
        "event_id": "ev-new", "community_id": "tongzilin", "category": "food",
        "starts_at": "2026-12-12T10:00:00+08:00", "ends_at": "2026-12-12T14:00:00+08:00", "capacity": 100,
        "audience": "tagged", "audience_tags": ["nobody"]}, source="linli/events", community="tongzilin").to_wire()
    with entrypoint_hook(container, "on_event_scheduled") as handle:
        handle([parse_envelope(scheduled)])
    assert FakeEvents.asked == ["ev-new"]
    batch_cost(container, "on_registration_confirmed", [confirmed(n, "ev-new") for n in range(10)])
    assert FakeEvents.asked == ["ev-new"]  # the registrations read the view
    changed = build_envelope("event.changed", {**parse_envelope(scheduled).data, "starts_at": "2026-12-13T10:00:00+08:00",
                                               "ends_at": "2026-12-13T14:00:00+08:00", "changed_fields": ["starts_at"]},
                             source="linli/events", community="tongzilin").to_wire()
    with entrypoint_hook(container, "on_event_changed") as handle:
        handle([parse_envelope(changed)])
    assert FakeEvents.asked == ["ev-new", "ev-new"]  # a change may move the venue: read again
    assert database[store.NOTIFICATIONS].count_documents({"kind": "event_changed"}) == 10


def publish(amqp_uri: str, wires) -> None:
    with Connection(amqp_uri) as connection:
        producer = connection.Producer(serializer="json")
        for wire in wires:
            producer.publish(wire, exchange=Exchange("events.events", type="topic", durable=True),
                             routing_key=wire["type"])


def test_registrations_over_the_broker_cost_little_per_message_and_partner_feeds_nothing_unsubscribed(
        notifications, config):
    container, database = notifications
    count = 400
    before, transactions_before = commands("notifications"), IN_TRANSACTIONS.seen["commitTransaction"]
    IN_TRANSACTIONS.recording = True
    try:
        publish(config["AMQP_URI"], [confirmed(n) for n in range(count)])
        deadline = time.monotonic() + 120
        while database[store.NOTIFICATIONS].count_documents({"kind": "registration_confirmed"}) < count:
            assert time.monotonic() < deadline, "not every registration was told"
            time.sleep(0.2)
        time.sleep(1)  # the last batch's outbox flush
    finally:
        IN_TRANSACTIONS.recording = False
    cost = spent(before, commands("notifications"))
    total = sum(cost.values())
    print(f"{count} registrations over the broker: {total:.0f} commands, {total / count:.3f} per message; "
          f"{sorted(cost.items())}")
    # Batches, not a message at a time (15 commands a message before), with the timers' idle polls meanwhile.
    assert total / count <= 1.5, cost
    assert sorted(FakeEvents.asked) == sorted(EVENTS)
    # No partner subscribed: the feed consumer read the subscriptions and committed nothing.
    consumed = {"service": "partners", "type": "registration.confirmed", "outcome": "processed"}
    until(lambda: (REGISTRY.get_sample_value("linli_messages_consumed_total", consumed) or 0) >= count,
          "partners to compare every registration with its subscriptions")
    partners = database.client[config["MONGO_DB_PREFIX"] + "partners"]
    assert partners[feed_store.ENTRIES].count_documents({}) == 0
    assert partners["processed_messages"].count_documents({}) == 0
    assert IN_TRANSACTIONS.seen["commitTransaction"] - transactions_before <= count / 4


class Residents:
    """``get_contacts`` as the residents service answers it (opened), counting the calls."""

    def __init__(self):
        self.calls = []

    def get_contacts(self, resident_ids):
        self.calls.append(list(resident_ids))
        return [{"resident_id": i, "reachable": True, "consent": {"email": True}, "email": f"{i}@example.test"}
                for i in resident_ids if i != "unknown"]


def test_a_batch_of_deliveries_asks_residents_for_its_contacts_once(mongo_client, db_prefix):
    database = mongo_client[db_prefix + "deliveries_alone"]  # no service's timer sends these meanwhile
    store.ensure_indexes(database)
    now = datetime.now(timezone.utc)
    due = [{"_id": f"d{n}", "recipient": rid, "resident_id": rid, "community_id": "tongzilin", "channel": "email",
            "title": "t", "body": "b", "language": "en", "status": "pending", "due_at": now, "attempts": 0,
            "claimable_at": now, "lease_until": None}
           for n, rid in enumerate(["r0001", "r0002", "r0001", "unknown"])]
    due.append({**due[0], "_id": "centre", "recipient": "centre:tongzilin", "resident_id": None})
    database[store.DELIVERIES].insert_many(due)
    residents, sent = Residents(), []

    class Channel:
        def send(self, address, outgoing):
            sent.append(address)

    outcomes = delivery.deliver_due(
        database, {"email": Channel()}, None, lambda claimed: None, lambda: now + timedelta(seconds=1),
        delivery.Settings(), addresses_for=lambda batch: delivery.address_book(
            batch, residents.get_contacts, {"tongzilin": "centre@tongzilin.test"}))
    assert residents.calls == [["r0001", "r0002", "unknown"]]
    assert sorted(sent) == ["centre@tongzilin.test", "r0001@example.test", "r0001@example.test", "r0002@example.test"]
    assert outcomes == {"sent": 4, "retry": 1}
    assert "no such resident" in database[store.DELIVERIES].find_one({"_id": "d3"})["last_error"]
