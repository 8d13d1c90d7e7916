"""Published messages are CloudEvents that the official SDK reads, byte for byte as they crossed the bus."""
import eventlet
import pytest
import requests
from cloudevents.core.formats.json import JSONFormat
from kombu import Connection, Exchange, Queue
from nameko.standalone.rpc import ServiceRpcProxy

from services.residents.service import ResidentsService

pytestmark = pytest.mark.integration


def test_the_cloudevents_sdk_reads_what_residents_publishes(container_factory, config, token):
    container_factory(ResidentsService, config).start()
    with Connection(config["AMQP_URI"]) as connection:
        queue = Queue("test-cloudevents", exchange=Exchange("residents.events", type="topic", durable=True),
                      routing_key="#")
        queue(connection.default_channel).declare()
        registered = requests.post(
            f"http://{config['WEB_SERVER_ADDRESS']}/residents", timeout=30,
            headers={"Authorization": f"Bearer {token(['residents:write'])}"},
            json={"community_id": "tongzilin", "name": "Marie Dubois", "residence_type": "foreign",
                  "nationality": "FR", "preferred_language": "fr"})
        resident_id = registered.json()["id"]
        with ServiceRpcProxy("residents", config) as residents:
            residents.depart(resident_id, {"reason": "moved_away", "departed_on": "2026-11-20"})
        eventlet.sleep(0.5)
        bodies = []
        while (message := queue(connection.default_channel).get(no_ack=True)) is not None:
            bodies.append((message.content_type, message.body))
    assert len(bodies) == 2
    # The SDK's reader of the structured JSON format, on the bytes as they crossed the bus.
    events = [JSONFormat().read(None, body) for _, body in bodies]
    assert [e.get_type() for e in events] == ["resident.registered", "resident.departed"]
    for event in events:
        assert event.get_specversion() == "1.0" and event.get_source() == "linli/residents"
        assert event.get_subject() == resident_id and event.get_extension("community") == "tongzilin"
        assert event.get_dataschema().startswith("urn:linli:contracts:") and event.get_id()
        assert event.get_time() is not None and event.get_data()["resident_id"] == resident_id
    assert "Marie" not in str([body for _, body in bodies])
