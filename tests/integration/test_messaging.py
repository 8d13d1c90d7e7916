"""Publishing through the outbox (contract-checked, as every service publishes) and the exactly-once,
dead-lettering handler, against the real RabbitMQ and SecantusDB."""
import collections
import json

import eventlet

import pytest
from kombu import Connection, Exchange, Queue
from nameko.rpc import rpc
from nameko.testing.services import entrypoint_hook, entrypoint_waiter

from contracts import RESIDENT_REGISTERED, ContractError, InvalidPayload, UnknownMessageType, build_envelope, registry
from services.common.messaging import message_handler
from services.common.mongo import PROCESSED_COLLECTION, MongoDatabase
from services.common.outbox import Outbox

pytestmark = pytest.mark.integration


class Producer:
    """Publishes as every service does: through its outbox, in a transaction (here with no other write)."""
    name = "producer"
    db = MongoDatabase("producer")
    outbox = Outbox("producer")

    @rpc
    def emit(self, message_type, data):
        return self.outbox.transaction(lambda session, publish: publish(
            message_type, data, subject=data.get("resident_id"), community="tongzilin"))


class Counter:
    name = "counter"
    fixed = False  # a test "deploys the fix" for exploding residents before replaying them
    db = MongoDatabase("counter")

    @message_handler(RESIDENT_REGISTERED, source="producer")
    def count(self, envelope):
        self.db["effects"].update_one(
            {"_id": envelope.data["community_id"]},
            {"$inc": {"n": 1}, "$set": {"last": {"id": envelope.id, "source": envelope.source,
                                                  "correlationid": envelope.correlationid}}},
            upsert=True, session=self.db.session,
        )
        if "explode" in envelope.data["tags"] and not Counter.fixed:
            raise ValueError("refusing an exploding resident (test)")
        if "flaky" in envelope.data["tags"] and ATTEMPTS[envelope.id] < 2:
            ATTEMPTS[envelope.id] += 1
            raise ConnectionError("the database is restarting (test)")


ATTEMPTS = collections.Counter()


def facts(**overrides):
    return {**RESIDENT_REGISTERED.example, **overrides}


def queue_of(container, method_name):
    return next(ep for ep in container.entrypoints if ep.method_name == method_name).queue


def drain(amqp_uri, queue_name):
    """Every message now in ``queue_name``, acked."""
    messages = []
    with Connection(amqp_uri) as connection:
        queue = Queue(queue_name, channel=connection.default_channel, no_declare=True)
        while (message := queue.get(no_ack=True)) is not None:
            messages.append(message)
    return messages


def publish_raw(amqp_uri, body, routing_key="resident.registered"):
    with Connection(amqp_uri) as connection:
        producer = connection.Producer(serializer="json")
        producer.publish(body, exchange=Exchange("producer.events", type="topic"), routing_key=routing_key)


@pytest.fixture
def effects(mongo_client, config):
    """The consumer's effect collection and its "processed" records."""
    db = mongo_client[config["MONGO_DB_PREFIX"] + "counter"]
    return db["effects"], db[PROCESSED_COLLECTION]


@pytest.fixture
def counter(container_factory, config):
    container = container_factory(Counter, config)
    container.start()
    return container


@pytest.fixture
def producer(container_factory, config):
    container = container_factory(Producer, config)
    container.start()
    return container


def test_a_published_message_is_an_envelope_handled_once(producer, counter, config, effects):
    with entrypoint_waiter(counter, "count", timeout=15):
        with entrypoint_hook(producer, "emit") as emit:
            envelope_id = emit(RESIDENT_REGISTERED, facts())
    effect_docs, processed = effects
    effect = effect_docs.find_one({"_id": "tongzilin"})
    assert effect["n"] == 1 and processed.count_documents({}) == 1
    assert effect["last"]["id"] == envelope_id and effect["last"]["source"] == "linli/producer"
    assert effect["last"]["correlationid"]


def test_a_redelivered_envelope_changes_nothing(counter, config, effects):
    envelope = build_envelope("resident.registered", facts(), source="linli/producer", community="tongzilin")
    for _ in range(2):
        with entrypoint_waiter(counter, "count", timeout=15):
            publish_raw(config["AMQP_URI"], envelope.to_wire())
    effect_docs, processed = effects
    assert effect_docs.find_one({"_id": "tongzilin"})["n"] == 1
    assert processed.count_documents({}) == 1
    assert drain(config["AMQP_URI"], queue_of(counter, "count").name + ".dead-letter") == []


@pytest.mark.parametrize(
    "message_type, data, error",
    [
        (registry.get("resident.updated"), {"resident_id": "r1"}, InvalidPayload),
        (RESIDENT_REGISTERED, facts(nationality="France"), InvalidPayload),
        (RESIDENT_REGISTERED, facts(name="Marie Dubois"), InvalidPayload),
        ("resident.registered", facts(), ContractError),
    ],
)
def test_an_invalid_publish_raises_and_sends_nothing(producer, counter, config, message_type, data, error, effects,
                                                     mongo_client):
    with entrypoint_hook(producer, "emit") as emit:
        with pytest.raises(error):
            emit(message_type, data)
    assert mongo_client[config["MONGO_DB_PREFIX"] + "producer"]["outbox"].count_documents({}) == 0
    # Nothing reached the consumer's queue: a valid message published now is the first one there.
    with entrypoint_waiter(counter, "count", timeout=15):
        with entrypoint_hook(producer, "emit") as emit:
            emit(RESIDENT_REGISTERED, facts())
    effect_docs, processed = effects
    assert processed.count_documents({}) == 1


def test_an_unknown_type_cannot_be_built():
    with pytest.raises(UnknownMessageType):
        build_envelope("resident.levitated", {}, source="linli/producer")


def parked_in(amqp_uri, queue_name, timeout_s=15):
    deadline = eventlet.hubs.get_hub().clock() + timeout_s
    while not (parked := drain(amqp_uri, queue_name + ".dead-letter")):
        assert eventlet.hubs.get_hub().clock() < deadline, "nothing was parked"
        eventlet.sleep(0.1)
    return parked


def test_a_failing_handler_is_retried_then_parked_with_its_error_and_keeps_no_effect(counter, config, effects):
    envelope = build_envelope("resident.registered", facts(tags=["explode"]), source="linli/producer")
    publish_raw(config["AMQP_URI"], envelope.to_wire())
    parked = parked_in(config["AMQP_URI"], queue_of(counter, "count").name)
    assert len(parked) == 1
    headers = parked[0].headers
    assert headers["x-linli-attempts"] == 3  # the first try and the two retries of the test config
    assert headers["x-linli-error"] == "ValueError: refusing an exploding resident (test)"
    assert headers["x-linli-consumer"] == "counter.count"
    assert headers["x-linli-original-routing-key"] == "resident.registered"
    assert json.loads(parked[0].body)["id"] == envelope.id
    # The transaction was rolled back: no effect and no "processed" record,
    # so a replay from the dead-letter queue would be handled.
    effect_docs, processed = effects
    assert effect_docs.count_documents({}) == 0
    assert processed.count_documents({}) == 0
    # The source queue is empty: the message was not requeued in a loop.
    assert drain(config["AMQP_URI"], queue_of(counter, "count").name) == []


def test_a_transient_failure_is_retried_and_then_handled_once(counter, config, effects):
    envelope = build_envelope("resident.registered", facts(tags=["flaky"]), source="linli/producer")
    publish_raw(config["AMQP_URI"], envelope.to_wire())
    effect_docs, processed = effects
    deadline = eventlet.hubs.get_hub().clock() + 15
    while processed.count_documents({}) == 0:
        assert eventlet.hubs.get_hub().clock() < deadline, "never handled"
        eventlet.sleep(0.1)
    eventlet.sleep(0.5)
    assert ATTEMPTS[envelope.id] == 2 and effect_docs.find_one()["n"] == 1
    assert drain(config["AMQP_URI"], queue_of(counter, "count").name + ".dead-letter") == []


@pytest.mark.parametrize(
    "body, reason",
    [
        ({"type": "resident.registered", "data": {}}, "EnvelopeError"),
        ("not even an object", "EnvelopeError"),
    ],
)
def test_a_malformed_envelope_is_parked_with_the_reason(counter, config, body, reason):
    publish_raw(config["AMQP_URI"], body)
    dead_letter = queue_of(counter, "count").name + ".dead-letter"
    parked = []
    for _ in range(50):
        parked = drain(config["AMQP_URI"], dead_letter)
        if parked:
            break
        eventlet.sleep(0.1)
    assert len(parked) == 1
    assert parked[0].headers["x-linli-error-type"] == reason


def test_a_payload_breaking_the_contract_is_parked_not_handled(counter, config, effects):
    wire = build_envelope("resident.registered", facts(), source="linli/producer").to_wire()
    wire["data"]["residence_type"] = "tourist"
    publish_raw(config["AMQP_URI"], wire)
    dead_letter = queue_of(counter, "count").name + ".dead-letter"
    for _ in range(50):
        parked = drain(config["AMQP_URI"], dead_letter)
        if parked:
            break
        eventlet.sleep(0.1)
    assert "residence_type" in parked[0].headers["x-linli-error"]
    effect_docs, _ = effects
    assert effect_docs.count_documents({}) == 0


class BatchCounter:
    name = "batch_counter"
    db = MongoDatabase("batch_counter")

    @message_handler(RESIDENT_REGISTERED, source="producer", batch=True, max_batch=50, max_wait_s=0.2)
    def count(self, envelopes):
        if any("explode" in e.data["tags"] for e in envelopes):
            raise ValueError("refusing an exploding resident (test)")
        self.db["effects"].update_one(
            {"_id": "tongzilin"}, {"$inc": {"n": len(envelopes), "batches": 1}}, upsert=True, session=self.db.session
        )


def test_a_batch_with_one_poison_message_parks_only_that_one(container_factory, config, mongo_client):
    container = container_factory(BatchCounter, {**config, "max_workers": 50})
    container.start()
    database = mongo_client[config["MONGO_DB_PREFIX"] + "batch_counter"]
    dead_letter = queue_of(container, "count").name + ".dead-letter"

    def effect_when(done):
        for _ in range(100):
            effect = database["effects"].find_one({"_id": "tongzilin"}) or {}
            if done(effect):
                return effect
            eventlet.sleep(0.1)
        return effect

    good = [build_envelope("resident.registered", facts(resident_id=f"r{i}"), source="linli/producer")
            for i in range(20)]
    for envelope in good + [good[3]]:  # and one redelivery
        publish_raw(config["AMQP_URI"], envelope.to_wire())
    effect = effect_when(lambda e: e.get("n", 0) >= 20)
    assert effect["n"] == 20  # each once, the redelivered one included
    assert effect["batches"] < 20  # applied in batches, not one by one

    mixed = [build_envelope("resident.registered", facts(resident_id=f"m{i}", tags=["explode"] if i == 2 else []),
                            source="linli/producer") for i in range(5)]
    for envelope in mixed:
        publish_raw(config["AMQP_URI"], envelope.to_wire())
    effect = effect_when(lambda e: e.get("n", 0) >= 24)
    parked = []
    for _ in range(100):  # the poison message is retried twice before it is parked
        parked += drain(config["AMQP_URI"], dead_letter)
        if parked:
            break
        eventlet.sleep(0.1)
    eventlet.sleep(0.3)  # and nothing else follows it
    parked += drain(config["AMQP_URI"], dead_letter)
    assert [json.loads(m.body)["id"] for m in parked] == [mixed[2].id]
    assert effect["n"] == 24
    assert database[PROCESSED_COLLECTION].count_documents({}) == 24


def test_an_operator_lists_inspects_and_replays_parked_messages(counter, config, effects, capsys, monkeypatch):
    from platform_tools import cli, dlq

    queue = queue_of(counter, "count").name
    envelope = build_envelope("resident.registered", facts(tags=["explode"]), source="linli/producer")
    publish_raw(config["AMQP_URI"], envelope.to_wire())
    parked_in(config["AMQP_URI"], queue)  # drains it: publish again and wait for it to be parked
    publish_raw(config["AMQP_URI"], envelope.to_wire())
    deadline = eventlet.hubs.get_hub().clock() + 15
    while dlq.depths(config["AMQP_URI"], [queue + ".dead-letter"]).get(queue + ".dead-letter") != 1:
        assert eventlet.hubs.get_hub().clock() < deadline
        eventlet.sleep(0.1)
    [seen] = dlq.peek(config["AMQP_URI"], queue + ".dead-letter")
    assert (seen.message_id, seen.attempts, seen.consumer) == (envelope.id, 3, "counter.count")
    assert "exploding resident" in seen.error
    assert dlq.depths(config["AMQP_URI"], [queue + ".dead-letter", "no-such.dead-letter"]) == {
        queue + ".dead-letter": 1}  # peeking left it there; a queue that does not exist is not created

    monkeypatch.setenv("LINLI_AMQP_URI", config["AMQP_URI"])
    Counter.fixed = True
    try:
        assert cli.main(["dlq", "replay", queue + ".dead-letter", "--id", envelope.id]) == 0
        assert "replayed 1 message(s)" in capsys.readouterr().out
        effect_docs, processed = effects
        while processed.count_documents({}) == 0:
            assert eventlet.hubs.get_hub().clock() < deadline + 15, "the replayed message was not handled"
            eventlet.sleep(0.1)
    finally:
        Counter.fixed = False
    assert dlq.depths(config["AMQP_URI"], [queue + ".dead-letter"])[queue + ".dead-letter"] == 0
