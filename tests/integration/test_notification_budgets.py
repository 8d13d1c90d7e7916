"""Database commands per unit of notifications' work (issue #15): an announcement per inbox,
sending due deliveries per batch, never an ``$or`` in a claim. Counts, not timings: they do not
depend on the machine's load, and they fail when batching breaks."""
import itertools
import math
from datetime import datetime, timedelta, timezone

import eventlet
import pymongo
import pytest
from kombu import Connection, Exchange, Producer
from pymongo import monitoring

from contracts import RESIDENT_REGISTERED, build_envelope, parse_envelope
from services.common.mongo import Database
from services.notifications import delivery, policy, store
from services.partners import feed_delivery, feed_store
from services.partners.feed_delivery import FeedSettings
from services.notifications.compose import Composer, Recipient
from tests.integration.test_notifications import platform, sms, smtp  # noqa: F401
from tests.integration.budgets import commands
from tests.waiting import until

pytestmark = pytest.mark.integration
AUDIENCE = 1200  # two pages of the fan-out
CLAIM_FILTER_COMMANDS = ("find", "update", "findAndModify")


def commands_of(service: str) -> float:
    return sum(commands(service).values())


def publish_registrations(amqp_uri: str, count: int) -> None:
    with Connection(amqp_uri) as connection:
        producer = Producer(connection.default_channel)
        exchange = Exchange("residents.events", type="topic", durable=True)
        for n in range(count):
            envelope = build_envelope("resident.registered", {
                "resident_id": f"budget-{n:05d}", "community_id": "tongzilin", "residence_type": "registered",
                "nationality": "CN", "preferred_language": ("zh-CN", "en")[n % 2], "birth_year": 1950 + n % 50,
                "tags": []}, source="linli/residents", community="tongzilin")
            producer.publish(envelope.to_wire(), exchange=exchange, routing_key=envelope.type, serializer="json")


def test_an_announcement_costs_at_most_three_tenths_of_a_command_per_inbox(platform, config, mongo_client):
    notifications = mongo_client[config["MONGO_DB_PREFIX"] + "notifications"]["notifications"]
    welcomed_from = commands("notifications")
    publish_registrations(config["AMQP_URI"], AUDIENCE)
    until(lambda: notifications.count_documents({"kind": "welcome"}) >= AUDIENCE, timeout_s=120,
          what="every welcome")
    eventlet.sleep(1)
    welcomes = {name: n - welcomed_from.get(name, 0) for name, n in commands("notifications").items()}
    print(f"{AUDIENCE} welcomes (and partner-feed records): {sum(welcomes.values()):.0f} commands, "
          f"{sum(welcomes.values()) / AUDIENCE:.3f} per resident; {welcomes}")
    before = commands_of("notifications")
    platform.event()
    until(lambda: notifications.count_documents({"kind": "event_announced"}) >= AUDIENCE, timeout_s=120,
          what="every announcement")
    eventlet.sleep(0.5)  # the page's outbox flush
    spent = commands_of("notifications") - before
    print(f"announcement to {AUDIENCE} inboxes: {spent:.0f} commands, {spent / AUDIENCE:.3f} per inbox")
    # The constant: the event.scheduled handler, and the timers' idle polls meanwhile.
    assert spent <= 0.3 * AUDIENCE + 60, spent


# -- sending due deliveries, straight against the database -------------------------------------------


class Recorder(monitoring.CommandListener):
    def __init__(self):
        self.commands = []

    def started(self, event):
        self.commands.append((event.command_name, event.command))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


class FakeChannel:
    def __init__(self):
        self.sent = []

    def send(self, address, outgoing):
        self.sent.append(outgoing.delivery_id)
        eventlet.sleep(0)  # another instance may run meanwhile


def has_or(value) -> bool:
    if isinstance(value, dict):
        return "$or" in value or any(has_or(v) for v in value.values())
    if isinstance(value, list):
        return any(has_or(v) for v in value)
    return False


def claim_filters(recorder: Recorder) -> list:
    found = []
    for name, command in recorder.commands:
        if name == "find" or name == "findAndModify":
            found.append(command.get("filter") or command.get("query") or {})
        elif name == "update":
            found.extend(u.get("q", {}) for u in command.get("updates", []))
    return found


@pytest.fixture
def recorded_db(mongo_uri, db_prefix):
    recorder = Recorder()
    client = pymongo.MongoClient(mongo_uri, tz_aware=True, event_listeners=[recorder])
    db = client[db_prefix + "notifications"]
    store.ensure_indexes(db)
    yield db, recorder
    client.close()


def make_due(db, count: int, now: datetime) -> None:
    composer = Composer("welcome", "budget", {"community": {"en": "Tongzilin", "zh-CN": "桐梓林"}}, now)
    records = []
    for n in range(count):
        recipient = Recipient(f"r{n:05d}", "tongzilin", "en", consent={"inapp": True, "email": True},
                              prefs=policy.Preferences(quiet_hours=None))
        records.append(composer.records(recipient))
    store.create(db, records)


def send_due(db, channel: FakeChannel, now_fn, settings=delivery.Settings()):
    return delivery.deliver_due(db, {"email": channel, "sms": channel}, lambda claimed: "someone@example.test",
                                lambda claimed: "http://unsubscribe.test", now_fn, settings)


def test_sending_due_deliveries_costs_commands_per_batch_and_no_claim_has_an_or(recorded_db):
    db, recorder = recorded_db
    now = datetime.now(timezone.utc)
    make_due(db, 300, now)
    recorder.commands.clear()
    channel = FakeChannel()
    outcomes = send_due(db, channel, lambda: now + timedelta(seconds=1))
    assert outcomes == {"sent": 300} and len(set(channel.sent)) == 300
    spent = len(recorder.commands)
    batches = math.ceil(300 / delivery.Settings().batch)
    print(f"sending 300 due deliveries: {spent} commands, {spent / 300:.3f} per delivery")
    assert spent <= 4 * batches + 4, [name for name, _ in recorder.commands]
    assert not any(has_or(f) for f in claim_filters(recorder))
    # Closed at both ends: done deliveries (None) sort before every date, and an open range walks them all.
    due_queries = [f["claimable_at"] for f in claim_filters(recorder) if "_id" not in f and "claimable_at" in f]
    assert due_queries and all(set(q) == {"$gte", "$lte"} for q in due_queries)
    assert db[store.DELIVERIES].count_documents({"status": "sent"}) == 300

    recorder.commands.clear()
    assert send_due(db, channel, lambda: now + timedelta(seconds=2)) == {}
    assert len(recorder.commands) <= 1  # idle: one indexed range that finds nothing


def test_two_senders_never_send_one_delivery_twice_and_a_dead_senders_lease_runs_out(recorded_db):
    db, _ = recorded_db
    now = datetime.now(timezone.utc)
    make_due(db, 120, now)
    channel = FakeChannel()
    settings = delivery.Settings(batch=10)
    pool = eventlet.GreenPool(2)
    results = list(pool.imap(lambda _: send_due(db, channel, lambda: now + timedelta(seconds=1), settings), range(2)))
    assert sum(r.get("sent", 0) for r in results) == 120
    assert sorted(channel.sent) == sorted(set(channel.sent)) and len(channel.sent) == 120

    make_due_ids = list(itertools.islice(db[store.DELIVERIES].find({"status": "sent"}, {"_id": 1}), 1))
    assert make_due_ids  # sent ones are never claimed again
    composer = Composer("welcome", "crashed", {"community": {"en": "T", "zh-CN": "T"}}, now)
    store.create(db, [composer.records(Recipient("late", "tongzilin", "en", consent={"inapp": True, "email": True},
                                                 prefs=policy.Preferences(quiet_hours=None)))])
    [claimed] = store.claim_due(db, now + timedelta(seconds=1), lease_s=60, owner="crashed", limit=10)
    assert store.claim_due(db, now + timedelta(seconds=30), lease_s=60, owner="other", limit=10) == []
    [again] = store.claim_due(db, now + timedelta(seconds=62), lease_s=60, owner="other", limit=10)
    assert again["_id"] == claimed["_id"] and again["attempts"] == 2


# -- partner feeds ---------------------------------------------------------------------------------------


def subscribe(db, partner_id: str, method: str, communities=("tongzilin",)) -> None:
    db[feed_store.PARTNERS].insert_one({"_id": partner_id, "name": partner_id, "scopes": {
        "types": ["resident.registered"], "communities": list(communities)}})
    feed_store.insert_subscription(db, {"partner_id": partner_id, "types": ["resident.registered"],
                                        "communities": list(communities), "method": method, "url": None,
                                        "secret": None})


def registrations(count: int) -> list:
    return [parse_envelope(build_envelope("resident.registered", {
        **RESIDENT_REGISTERED.example, "community_id": "tongzilin"}, source="linli/residents",
        community="tongzilin").to_wire()) for _ in range(count)]


def test_recording_a_batch_in_partner_feeds_costs_a_few_commands_whatever_its_size(recorded_db):
    db, recorder = recorded_db
    feed_store.ensure_indexes(db)
    subscribe(db, "civil-affairs", "queue")
    subscribe(db, "grid-centre", "pull")
    subscribe(db, "elsewhere", "queue", communities=("yulin",))
    handler_db = Database(db.client, db.name)
    envelopes = registrations(200)
    recorder.commands.clear()

    def in_transaction(session):
        handler_db.session = session
        try:
            return feed_store.record_messages(handler_db, envelopes)
        finally:
            handler_db.session = None

    with db.client.start_session() as session:
        assert session.with_transaction(in_transaction) == 400
    names = [name for name, _ in recorder.commands]
    print(f"recording 200 messages for 2 partners: {len(names)} commands: {names}")
    # subscriptions, a sequence per partner, entries, deliveries, commit
    assert len(names) <= 6, names
    for partner_id in ("civil-affairs", "grid-centre"):
        sequences = [e["sequence"] for e in db[feed_store.ENTRIES].find({"partner_id": partner_id})]
        assert sorted(sequences) == list(range(1, 201))
    assert db[feed_store.DELIVERIES].count_documents({"partner_id": "civil-affairs", "status": "pending"}) == 200


class FakeFeedConfig:
    def __init__(self, batch):
        self.settings = FeedSettings(retry_schedule_s=(0, 5), webhook_timeout_s=1, webhook_allow_private=True,
                                     lease_s=60, batch=batch, jwt_secret="")
        self.owner = "instance"
        self.published = []
        self.publisher = self

    def publish(self, envelope, **kwargs):
        self.published.append(envelope["id"])


def test_relaying_feed_deliveries_costs_commands_per_batch_and_no_claim_has_an_or(recorded_db):
    db, recorder = recorded_db
    feed_store.ensure_indexes(db)
    subscribe(db, "civil-affairs", "queue")
    handler_db = Database(db.client, db.name)
    feed_store.record_messages(handler_db, registrations(250))
    recorder.commands.clear()
    config = FakeFeedConfig(batch=100)
    assert feed_delivery.relay_due(db, config, lambda *args: None) == 250
    names = [name for name, _ in recorder.commands]
    print(f"relaying 250 feed deliveries: {len(names)} commands, {len(names) / 250:.3f} per delivery")
    # a batch: claim (3), subscriptions, entries, partners, outcomes (1)
    assert len(names) <= 7 * 3 + 1, names
    assert not any(has_or(f) for f in claim_filters(recorder))
    assert len(set(config.published)) == 250
    assert db[feed_store.DELIVERIES].count_documents({"status": "sent"}) == 250

    recorder.commands.clear()
    assert feed_delivery.relay_due(db, config, lambda *args: None) == 0
    assert len(recorder.commands) <= 1  # idle: one indexed range that finds nothing


# -- fan-outs ------------------------------------------------------------------------------------------------


def test_a_fan_out_walks_its_audience_in_id_pages_with_one_query(recorded_db):
    db, recorder = recorded_db
    db[store.AUDIENCE].insert_many(
        [{"_id": f"r{n}", "community_id": "tongzilin", "status": "active"} for n in range(7)]
        + [{"_id": "r50", "community_id": "yulin", "status": "active"},
           {"_id": "r99", "community_id": "tongzilin", "status": "departed"}])
    recorder.commands.clear()
    pages = list(store.audience_pages(db, {"community_id": "tongzilin"}, "r1", 2, policy.Preferences()))
    assert [([r.id for r in page], last) for page, last in pages] == [
        (["r2", "r3"], False), (["r4", "r5"], False), (["r6"], True)]
    audience_queries = [c for name, c in recorder.commands if name == "find" and c["find"] == store.AUDIENCE]
    assert len(audience_queries) == 1 and "skip" not in audience_queries[0]


def test_a_fan_out_job_is_held_by_one_instance_and_taken_over_when_its_lease_runs_out(recorded_db):
    db, _ = recorded_db
    now = datetime.now(timezone.utc)
    store.add_fan_out(db, {"_id": "job", "status": "pending", "after": "", "created_at": now, "claimable_at": now})
    held = store.claim_fan_out(db, now, 60)
    assert held is not None and store.claim_fan_out(db, now + timedelta(seconds=30), 60) is None
    store.advance_fan_out(db, held, "r3", now + timedelta(seconds=30), 60)  # a page renews the lease
    assert store.claim_fan_out(db, now + timedelta(seconds=80), 60) is None
    taken_over = store.claim_fan_out(db, now + timedelta(seconds=91), 60)
    assert taken_over["after"] == "r3"
    with pytest.raises(store.LeaseLost):
        store.advance_fan_out(db, held, "r5", now + timedelta(seconds=91), 60)
    store.advance_fan_out(db, taken_over, None, now + timedelta(seconds=92), 60)
    assert store.claim_fan_out(db, now + timedelta(days=1), 60) is None  # done: never taken again
