"""RabbitMQ restarts in the middle of a stream (issue #8): publishers retry with confirms,
consumers reconnect, nothing is lost and nothing counts twice.

The broker is a node of the test's own (``broker_node.BrokerNode``), never the
machine's. An internal system publishes ``resident.form_submitted`` messages
through ``contracts.client.Publisher`` (confirms, same envelope id on a retry)
from a process of its own; residents ingests them (its ingest consumer) and
announces each registration (its dispatcher) to reports (a ``MessageHandler``),
which counts them. The node goes down while messages are still being sent, and
comes back a few seconds later on the same data. At the end: sent, registered,
counted = N, duplicated = 0, lost = 0.

Run as a script (``python -m tests.chaos.test_broker_restart AMQP_URI N``) this
file is that publisher: it prints how many messages the broker has confirmed.
"""
import subprocess
import sys
import time
from pathlib import Path

import pymongo
import pytest

from tests.chaos.broker_node import BrokerNode

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.chaos
N = 1_000  # through ingest, the outbox and reports on one SecantusDB: about two minutes a run
COMMUNITY = "tongzilin"
SOURCE = "grid-system/chaos"


def row(number):
    return {"name": f"Resident {number:05d}", "residence_type": "registered", "nationality": "CN",
            "preferred_language": "zh-CN", "grid": "tongzilin-03"}


def publish_stream(amqp_uri: str, count: int, pause_s: float = 0.005) -> None:
    """A steady stream (at most 1/``pause_s`` a second), so the restart falls in its middle."""
    from contracts.client import Publisher

    with Publisher(amqp_uri, SOURCE) as publisher:
        for number in range(count):
            time.sleep(pause_s)
            publisher.publish("resident.form_submitted", {"community_id": COMMUNITY, "row": row(number),
                                                          "form_reference": f"chaos:{number}"})
            if (number + 1) % 50 == 0 or number + 1 == count:
                print(f"confirmed {number + 1}", flush=True)


@pytest.fixture
def broker():
    node = BrokerNode()
    try:
        node.start()
        yield node
    finally:
        node.remove()


@pytest.fixture
def amqp_uri(broker):
    """The services of this test talk to its own node, not to a vhost of the machine's broker."""
    return broker.amqp_uri


class Stream:
    """The publishing process and what it has had confirmed so far."""

    def __init__(self, amqp_uri, count, log_path):
        self.log_path = log_path
        self.process = subprocess.Popen([sys.executable, "-m", __name__, amqp_uri, str(count)], cwd=ROOT,
                                        stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)

    def confirmed(self) -> int:
        lines = [line for line in self.log_path.read_text().splitlines() if line.startswith("confirmed ")]
        return int(lines[-1].split()[1]) if lines else 0

    def finished(self, timeout_s) -> int:
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        assert code == 0, f"the publisher gave up (exit {code}):\n{self.log_path.read_text()[-3000:]}"
        return self.confirmed()


def wait_until(check, timeout_s, what, progress=lambda: ""):
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; {progress()}"
        time.sleep(0.5)


def counts(residents_db, reports, reports_db):
    """(registered, ingested once, counted by reports, reports' history)."""
    summary = reports.get(f"/communities/{COMMUNITY}/summary")
    counted = summary.json()["residents_total"] if summary.status_code == 200 else 0
    return (residents_db["residents"].count_documents({"community_id": COMMUNITY}),
            residents_db["ingest_records"].count_documents({"_id": {"$regex": f"^{SOURCE}\\|"}}),
            counted,
            reports_db["history"].count_documents({"wire.data.community_id": COMMUNITY}))


@pytest.mark.timeout(1500)  # above the waits below: a timeout would skip the node's clean-up
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_broker_restart_mid_stream_loses_and_doubles_nothing(how, broker, services, mongo, db_prefix, tmp_path):
    from tests.conftest import TEST_DATA_KEY

    reports = services("reports", "ReportsService")
    residents = services("residents", "ResidentsService")
    residents.env = {**residents.env, "LINLI_RESIDENTS_DATA_KEY": TEST_DATA_KEY}
    reports.start()
    residents.start()
    stream = Stream(broker.amqp_uri, N, tmp_path / "publisher.log")
    client = pymongo.MongoClient(mongo.uri)
    residents_db, reports_db = client[f"{db_prefix}residents"], client[f"{db_prefix}reports"]
    try:
        wait_until(lambda: stream.confirmed() >= N // 5, 120, "a fifth of the stream to be confirmed")
        getattr(broker, how)()
        down_at = stream.confirmed()
        time.sleep(4)  # publishers and consumers find nobody there for a while
        broker.start()
        assert down_at < N, "the restart came too late to prove anything"

        sent = stream.finished(300)
        assert sent == N
        assert "retrying" in stream.log_path.read_text(), "the publisher never met the outage"
        wait_until(lambda: counts(residents_db, reports, reports_db)[2] >= N, 900, f"{N} registrations counted",
                   lambda: f"(registered, ingested, counted, history) = {counts(residents_db, reports, reports_db)}")
        time.sleep(3)  # anything that was going to be doubled has been by now
        registered, ingested, counted, history = counts(residents_db, reports, reports_db)
        duplicated, lost = max(0, counted - sent), max(0, sent - counted)
        print(f"broker {how} after {down_at} confirmed: sent {sent}, registered {registered}, "
              f"counted {counted}, duplicated {duplicated}, lost {lost}")
        assert (sent, registered, ingested, counted, history, duplicated, lost) == (N, N, N, N, N, 0, 0)
        lines = [line.split("\t") for line in broker.ctl("list_queues", "name", "messages").splitlines()]
        parked = {q: d for q, d in lines if d not in ("0", "messages") and ("dead-letter" in q or "rejected" in q)}
        assert parked == {}, f"messages parked: {parked}"
        assert residents_db["outbox"].count_documents({"sent_at": None}) == 0, "the outbox relay left some unsent"
        for service in (residents, reports):
            assert service.process.poll() is None, f"{service.name} did not survive the restart"
    finally:
        client.close()
        if stream.process.poll() is None:
            stream.process.kill()


def test_an_ack_on_a_connection_the_broker_reset_does_not_kill_the_consumer():
    """Seen when the node was killed: nameko's ack forgives only amqp's ConnectionError, and a
    ConnectionResetError out of ``handle_result`` killed the whole reports container."""
    from unittest.mock import Mock

    from contracts import RESIDENT_REGISTERED
    from services.common.messaging import Delivery, MessageHandler

    handler = MessageHandler("residents", RESIDENT_REGISTERED)
    handler.container = Mock(service_name="reports")
    handler.queue_consumer = Mock(ack_message=Mock(side_effect=ConnectionResetError(104, "reset by peer")))
    batch = [Delivery(envelope=None, body={}, message=Mock()) for _ in range(3)]
    assert handler.handle_processed(batch, worker_ctx=None, result="done") == ("done", None)
    assert handler.queue_consumer.ack_message.call_count == 1  # the rest come back with the connection


if __name__ == "__main__":
    publish_stream(sys.argv[1], int(sys.argv[2]))
