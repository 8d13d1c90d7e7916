"""Reports' database budget (issue #15): a batch costs a handful of commands however many
messages it holds, and batches arriving together abort no transaction. Command counts are
deterministic (timings are not), so these fail when batching breaks."""
import time

import pytest
from kombu import Connection, Exchange
from nameko.testing.services import entrypoint_hook

from contracts import build_envelope, parse_envelope_or_unknown
from services.reports.service import ReportsService

from tests.integration.budgets import IN_TRANSACTIONS, aborted, commands, spent

pytestmark = pytest.mark.integration


def registration(n: int, community: str = "tongzilin") -> dict:
    return build_envelope("resident.registered", {
        "resident_id": f"{community}-r{n}", "community_id": community, "residence_type": "registered",
        "nationality": "CN", "preferred_language": "zh-CN", "birth_year": 1950 + n % 60,
        "tags": ["volunteer"] if n % 3 else []}, source="linli/residents").to_wire()


def received(wire: dict):
    envelope = parse_envelope_or_unknown(wire)[0]
    object.__setattr__(envelope, "received", wire)
    return envelope


@pytest.fixture
def reports(container_factory, config):
    container = container_factory(ReportsService, {**config, "max_workers": 50})
    container.start()
    return container


def batch_cost(container, wires) -> dict:
    """The commands one batch costs: the handler's transaction, nothing in the background."""
    IN_TRANSACTIONS.seen.clear()
    IN_TRANSACTIONS.recording = True
    try:
        with entrypoint_hook(container, "on_message") as on_message:
            on_message([received(wire) for wire in wires])
    finally:
        IN_TRANSACTIONS.recording = False
    return dict(IN_TRANSACTIONS.seen)


def test_a_batch_of_registrations_costs_the_same_few_commands_whatever_its_size(reports, mongo_client, config):
    small = batch_cost(reports, [registration(n) for n in range(20)])
    large = batch_cost(reports, [registration(n) for n in range(20, 220)])
    assert large == small, (small, large)  # independent of the batch's size
    assert sum(large.values()) <= 7, large
    assert large.get("commitTransaction") == 1 and "abortTransaction" not in large, large
    database = mongo_client[config["MONGO_DB_PREFIX"] + "reports"]
    assert database["profile_communities"].find_one({"_id": "tongzilin"})["residents_total"] == 220


def test_a_mixed_batch_writes_each_counter_collection_once(reports):
    wires = [registration(n, community) for n in range(50) for community in ("tongzilin", "yulin", "jinjiang")]
    wires += [build_envelope("feedback.submitted", {
        "event_id": f"e{n % 4}", "resident_id": f"tongzilin-r{n}", "community_id": ("tongzilin", "yulin")[n % 2],
        "category": "food", "rating": 1 + n % 10, "has_comment": False}, source="linli/events").to_wire()
        for n in range(40)]
    cost = batch_cost(reports, wires)
    # claims, state, history, residents read + write, one bulk write per counter collection, commit
    assert sum(cost.values()) <= 8, cost


def publish_registrations(amqp_uri, count, communities):
    with Connection(amqp_uri) as connection:
        producer = connection.Producer(serializer="json")
        for n in range(count):
            wire = registration(n, communities[n % len(communities)])
            producer.publish(wire, exchange=Exchange("residents.events", type="topic", durable=True),
                             routing_key=wire["type"])


def test_many_registrations_at_once_abort_nothing_and_cost_little_per_message(reports, config, mongo_client):
    database = mongo_client[config["MONGO_DB_PREFIX"] + "reports"]
    communities, count = ("tongzilin", "yulin"), 2000
    before, aborted_before = commands("reports"), aborted("reports")
    publish_registrations(config["AMQP_URI"], count, communities)
    deadline = time.monotonic() + 120
    while sum(doc.get("residents_total", 0) for doc in database["profile_communities"].find()) < count:
        assert time.monotonic() < deadline, "reports did not count every registration"
        time.sleep(0.2)
    cost = spent(before, commands("reports"))
    said = f"{sum(cost.values()):.0f} commands: {sorted(cost.items())}"
    assert aborted("reports") == aborted_before, said
    assert sum(cost.values()) / count <= 0.5, said  # batches, not one message at a time


def test_an_assessment_stages_its_messages_in_one_write_whatever_the_number_of_communities(reports, bus_tap):
    """``community.assessed`` for every community: one write of the outbox records (fact ids: the same
    month assessed again replaces them) and the commit, inside the transaction, whatever their number;
    published from memory after the commit."""
    tap = bus_tap("reports")

    def assessment_cost(communities):
        batch_cost(reports, [registration(n, community) for community in communities for n in range(2)])
        IN_TRANSACTIONS.seen.clear()
        IN_TRANSACTIONS.recording = True
        before = commands("reports")
        try:
            with entrypoint_hook(reports, "assess") as assess:
                assessed = assess("2026-11")
        finally:
            IN_TRANSACTIONS.recording = False
        return assessed, dict(IN_TRANSACTIONS.seen), spent(before, commands("reports"))

    few = assessment_cost([f"few-{n}" for n in range(3)])
    many = assessment_cost([f"many-{n}" for n in range(30)])
    print(f"\n3 communities: {few}\n33 communities: {many}")
    assert (few[0], many[0]) == (3, 33)
    assert few[1] == many[1] == {"update": 1, "commitTransaction": 1}, (few, many)
    assert "find" not in many[1] and "insert" not in many[1]
    # Reading what it ranks: the communities (two distinct), their profiles and months (a find each; the
    # other finds and the aggregate are the gauges ``commands()`` collects), however many they are.
    assert few[2] == many[2] and many[2]["find"] <= 5 and "getMore" not in many[2], (few, many)
    published, deadline = set(), time.monotonic() + 30
    while len(published) < 33:
        assert time.monotonic() < deadline, "every community's assessment published"
        published |= {m["data"]["community_id"] for m in tap.messages() if m["type"] == "community.assessed"}
