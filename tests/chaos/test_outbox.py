"""A fact stored is a fact published: the residents service dies at each of the two places a
crash could lose or repeat a registration's message, and comes back."""
import json

import pika
import pymongo
import pytest
import requests

from services.common.auth import issue_token
from tests.chaos.conftest import wait_for
from tests.conftest import TEST_DATA_KEY, TEST_SECRET

pytestmark = pytest.mark.chaos


@pytest.fixture
def tap(amqp_uri):
    """Every message residents publishes, from now on."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.exchange_declare("residents.events", "topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, "residents.events", "#")

    def received():
        bodies = []
        while (got := channel.basic_get(queue, auto_ack=True))[0] is not None:
            bodies.append(json.loads(got[2]))
        return bodies

    yield received
    connection.close()


def register(residents, name):
    token = issue_token(TEST_SECRET, subject="chaos", scopes=["residents:write"], communities=["tongzilin"])
    try:
        requests.post(f"http://{residents.address}/residents", timeout=10, headers={"Authorization": f"Bearer {token}"},
                      json={"community_id": "tongzilin", "name": name, "residence_type": "registered",
                            "nationality": "CN", "preferred_language": "zh-CN"})
    except requests.ConnectionError:
        pass  # the process may die before it answers: what matters is what it stored


@pytest.mark.parametrize("failpoint", ["outbox:after-commit", "outbox:after-publish"])
def test_a_registration_is_announced_even_if_the_process_dies(services, mongo, db_prefix, tap, failpoint):
    residents = services("residents", "ResidentsService")
    residents.env = {**residents.env, "LINLI_RESIDENTS_DATA_KEY": TEST_DATA_KEY, "LINLI_FAILPOINT": failpoint}
    residents.start()
    register(residents, "王芳")
    assert residents.process.wait(30) == 137, "the failpoint did not fire"
    client = pymongo.MongoClient(mongo.uri)
    stored = client[f"{db_prefix}residents"]["residents"].find_one({"name": "王芳"})
    assert stored is not None, "the registration was stored before the crash"

    residents.env = {k: v for k, v in residents.env.items() if k != "LINLI_FAILPOINT"}
    residents.start()
    seen = []
    wait_for(lambda: seen.extend(tap()) or any(m["subject"] == str(stored["_id"]) for m in seen), 60,
             "the registration's message after the restart")
    announced = [m for m in seen if m["type"] == "resident.registered" and m["subject"] == str(stored["_id"])]
    assert {m["id"] for m in announced} == {announced[0]["id"]}, "a repeat carries the same id: consumers skip it"
    outbox = client[f"{db_prefix}residents"]["outbox"]
    wait_for(lambda: outbox.count_documents({"sent_at": None}) == 0, 30, "the outbox to be marked sent")
    client.close()
