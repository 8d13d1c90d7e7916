"""The broker topology declared before any service runs: nothing published early is lost, and a
message nobody is bound to is parked, not dropped."""
import json
import os
import tempfile
import time

import pytest
from kombu import Connection, Exchange, Queue

from contracts import build_envelope
from platform_tools import broker_definitions, dlq
from tests.conftest import rabbitmqctl
from tests.waiting import until
from services.reports.service import ReportsService

pytestmark = pytest.mark.integration


def test_the_checked_in_definitions_are_current():
    assert broker_definitions.DEFINITIONS.read_text(encoding="utf-8") == broker_definitions.render(), \
        "run `make definitions` and commit the result"


@pytest.fixture
def imported(vhost, config):
    """deploy/rabbitmq/definitions.json, as an operator imports it, into this test's vhost
    (with the test config's retry delays, which name the retry queues)."""
    from services.common.messaging import retry_delays

    document = broker_definitions.definitions(vhost, retry_delays(config))
    # A file anyone can read: rabbitmqctl runs as the broker's user.
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir="/tmp") as file:
        json.dump(document, file)
        file.flush()
        os.chmod(file.name, 0o644)
        rabbitmqctl("import_definitions", file.name)
        # The import is asynchronous: wait until the last queue of the file exists.
        until(lambda: dlq.depths(config["AMQP_URI"], [document["queues"][-1]["name"]])
              and "linli-unrouted" in rabbitmqctl("list_policies", "-p", vhost), "the definitions imported",
              timeout_s=30, interval_s=0.2)
    return vhost


def test_messages_published_before_any_service_starts_wait_for_it(imported, config, container_factory, token):
    resident = build_envelope("resident.registered", {
        "resident_id": "r-early", "community_id": "tongzilin", "residence_type": "registered", "nationality": "CN",
        "preferred_language": "zh-CN"}, source="linli/residents").to_wire()
    with Connection(config["AMQP_URI"]) as connection:
        connection.Producer(serializer="json").publish(
            resident, exchange=Exchange("residents.events", type="topic", durable=True),
            routing_key="resident.registered")
    # The service starts later, against the declared topology (its own declarations must agree with it).
    container_factory(ReportsService, config).start()
    import requests

    headers = {"Authorization": f"Bearer {token(['reports:read'])}"}
    until(lambda: requests.get(f"http://{config['WEB_SERVER_ADDRESS']}/communities/tongzilin/summary",
                               headers=headers).status_code == 200, "the early message handled", timeout_s=20)


def test_a_message_no_queue_is_bound_to_is_parked_in_unrouted(imported, config):
    with Connection(config["AMQP_URI"]) as connection:
        connection.Producer(serializer="json").publish(
            # reports.events: the other exchanges all reach reports' history ("#"), so never go unrouted.
            {"type": "community.teleported"}, exchange=Exchange("reports.events", type="topic", durable=True),
            routing_key="community.teleported")
        time.sleep(0.3)
        message = Queue(broker_definitions.UNROUTED, channel=connection.default_channel, no_declare=True).get()
        assert message is not None and message.delivery_info["routing_key"] == "community.teleported"
