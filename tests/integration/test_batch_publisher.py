"""A batch published with confirms for the whole batch (``services.common.confirms``), against the
real RabbitMQ: what the broker acked is reported sent, what it nacked is not, a connection lost
between batches is opened again, and two greenthreads share the channel one at a time."""
import json
import time

import eventlet
import pytest
from kombu import Connection
from nameko.events import get_event_exchange

from services.common.confirms import BatchPublisher
from tests.conftest import rabbitmqctl

pytestmark = pytest.mark.integration


@pytest.fixture
def bus(amqp_uri):
    """``(publisher, queue_named(name, **arguments), drain(queue))`` on the exchange ``confirming.events``."""
    exchange = get_event_exchange("confirming", {})
    publisher = BatchPublisher(amqp_uri, exchange)
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        exchange(channel).declare()

        def queue_named(name, **arguments):
            channel.queue_declare(name, durable=True, auto_delete=False, arguments=arguments)
            channel.queue_bind(name, "confirming.events", "#")
            return name

        def drain(queue):
            messages = []
            while (message := channel.basic_get(queue, no_ack=True)) is not None:
                messages.append(message)
            return messages

        yield publisher, queue_named, drain
    publisher.close()


def messages(count, start=0):
    return [({"id": f"m-{number}"}, "resident.registered") for number in range(start, start + count)]


def test_a_batch_is_acked_whole_and_arrives_in_order_as_nameko_would_send_it(bus):
    publisher, queue_named, drain = bus
    queue = queue_named("tally")
    assert publisher.publish(messages(500)) == [True] * 500
    assert publisher.publish(messages(3, start=500)) == [True] * 3  # the same channel, later tags
    arrived = drain(queue)
    assert [json.loads(m.body)["id"] for m in arrived] == [f"m-{n}" for n in range(503)]
    assert arrived[0].properties == {"content_type": "application/json", "content_encoding": "utf-8",
                                     "application_headers": {}, "delivery_mode": 2, "priority": 0}
    assert arrived[0].delivery_info["routing_key"] == "resident.registered"


def test_what_the_broker_nacks_is_not_reported_sent(bus):
    publisher, queue_named, drain = bus
    queue_named("full", **{"x-max-length": 10, "x-overflow": "reject-publish"})
    assert publisher.publish(messages(25)) == [True] * 10 + [False] * 15


def test_a_connection_lost_between_batches_is_opened_again(bus, vhost):
    publisher, queue_named, drain = bus
    queue = queue_named("tally")
    assert publisher.publish(messages(5)) == [True] * 5
    port, closed = publisher._connection.connection.sock.getsockname()[1], 0  # the publisher's, not the test's
    for line in rabbitmqctl("list_connections", "pid", "peer_port", "vhost").splitlines():
        pid, peer_port, where = (field.strip() for field in line.split("\t"))
        if (peer_port, where) == (str(port), vhost):
            rabbitmqctl("close_connection", pid, "test: a stale connection")
            closed += 1
    assert closed == 1
    time.sleep(0.5)
    assert publisher.publish(messages(5, start=5)) == [True] * 5
    assert {json.loads(m.body)["id"] for m in drain(queue)} == {f"m-{n}" for n in range(10)}


def test_two_greenthreads_publish_through_one_channel_in_turn(bus):
    publisher, queue_named, drain = bus
    queue = queue_named("tally")
    first, second = (eventlet.spawn(publisher.publish, messages(300, start=start)) for start in (0, 300))
    assert first.wait() == second.wait() == [True] * 300
    assert sorted(json.loads(m.body)["id"] for m in drain(queue)) == sorted(f"m-{n}" for n in range(600))
