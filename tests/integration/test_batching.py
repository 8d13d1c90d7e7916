"""A batch consumer runs one batch at a time, and its batches fill up to ``max_batch`` (its own
prefetch window, not ``max_workers``): batches that ran together would ``$inc`` the same counters
and abort each other's transactions (issue #15)."""
import eventlet
import pytest
from kombu import Connection, Exchange
from nameko.testing.services import entrypoint_hook

from contracts import RESIDENT_REGISTERED, build_envelope, parse_envelope
from services.common.messaging import message_handler
from services.common.mongo import MongoDatabase

from tests.integration.budgets import aborted, commands

pytestmark = pytest.mark.integration
RUNNING, BATCH_SIZES = [0, 0], []  # [running now, most running at once], the size of each batch


class SlowBatchCounter:
    name = "slow_batch_counter"
    db = MongoDatabase("slow_batch_counter")

    @message_handler(RESIDENT_REGISTERED, source="producer", batch=True, max_batch=100)
    def count(self, envelopes):
        RUNNING[0] += 1
        RUNNING[1] = max(RUNNING)
        BATCH_SIZES.append(len(envelopes))
        try:
            self.db["effects"].update_one({"_id": "tongzilin"}, {"$inc": {"n": len(envelopes)}}, upsert=True,
                                          session=self.db.session)
            eventlet.sleep(0.3)  # what arrives meanwhile accumulates
        finally:
            RUNNING[0] -= 1


def test_one_batch_at_a_time_each_filled_to_max_batch(container_factory, config, mongo_client):
    RUNNING[:], BATCH_SIZES[:] = [0, 0], []
    container = container_factory(SlowBatchCounter, config)  # max_workers: 10
    container.start()
    aborted_before = aborted("slow_batch_counter")
    with Connection(config["AMQP_URI"]) as connection:
        producer = connection.Producer(serializer="json")
        for n in range(500):
            wire = build_envelope("resident.registered", {**RESIDENT_REGISTERED.example, "resident_id": f"r{n}"},
                                  source="linli/producer").to_wire()
            producer.publish(wire, exchange=Exchange("producer.events", type="topic"), routing_key=wire["type"])
    effects = mongo_client[config["MONGO_DB_PREFIX"] + "slow_batch_counter"]["effects"]
    for _ in range(300):
        if (effects.find_one({"_id": "tongzilin"}) or {}).get("n") == 500:
            break
        eventlet.sleep(0.1)
    assert (effects.find_one({"_id": "tongzilin"}) or {}).get("n") == 500
    assert RUNNING[1] == 1, f"{RUNNING[1]} batches ran at once"
    assert max(BATCH_SIZES) == 100 and len(BATCH_SIZES) <= 8, BATCH_SIZES  # not the 10 of max_workers
    assert aborted("slow_batch_counter") == aborted_before


def test_exactly_once_costs_the_claims_the_effect_and_a_commit(container_factory, config, mongo_client):
    container = container_factory(SlowBatchCounter, config)
    container.start()
    envelopes = [parse_envelope(build_envelope("resident.registered", {
        **RESIDENT_REGISTERED.example, "resident_id": f"once{n}"}, source="linli/producer").to_wire()) for n in range(50)]

    def cost():
        before = commands("slow_batch_counter")
        with entrypoint_hook(container, "count") as count:
            count(envelopes)
        after = commands("slow_batch_counter")
        return {name: after[name] - before.get(name, 0) for name in after if after[name] > before.get(name, 0)}

    assert cost() == {"insert": 1, "update": 1, "commitTransaction": 1}  # however many envelopes
    # All of them again (a redelivery): the claims are found taken, and the effect is not repeated.
    assert cost() == {"insert": 1, "abortTransaction": 1, "find": 1, "commitTransaction": 1}
    effects = mongo_client[config["MONGO_DB_PREFIX"] + "slow_batch_counter"]["effects"]
    assert effects.find_one({"_id": "tongzilin"})["n"] == 50
