"""Database commands per unit of work in the residents service (issue #15): counted, so deterministic.

A collection-form import costs a few commands per chunk of rows, not per row; the ingest door
handles a batch of messages in one transaction; the outbox stages and relays a batch of
envelopes in a constant number of commands."""
import json
import math
import time
import uuid
from datetime import datetime, timezone

import pika
import pytest
import requests

from contracts import RESIDENT_FORM_SUBMITTED
from services.common.ingest import declare_topology, queue_for
from services.residents.service import ResidentsService
from tests.data.sample_form import form_csv

from tests.integration.budgets import commands, spent
from tests.waiting import until

pytestmark = pytest.mark.integration


@pytest.fixture
def residents(container_factory, config, mongo_client):
    container = container_factory(ResidentsService, config)
    container.start()
    return mongo_client[config["MONGO_DB_PREFIX"] + "residents"]


def settled(database, rows):
    """The import completed and its announcements published (the outbox empty)."""
    until(lambda: database["imports"].find_one({"status": "completed"}), "the import", timeout_s=300)
    until(lambda: database["outbox"].count_documents({"sent_at": None}) == 0, "the outbox relay", timeout_s=60)
    time.sleep(2.5)  # what the relay does after publishing is counted too


def test_an_import_costs_a_few_commands_per_chunk_not_per_row(residents, config, token):
    rows = 2_000
    url = f"http://{config['WEB_SERVER_ADDRESS']}/residents/imports"
    before = commands("residents")
    accepted = requests.post(url, data=form_csv(rows, seed=4242), params={"filename": "budget.csv"},
                             headers={"Authorization": f"Bearer {token(['residents:write'])}"}, timeout=60)
    assert accepted.status_code == 202, accepted.text
    settled(residents, rows)
    used = spent(before, commands("residents"))
    per_row = sum(used.values()) / rows
    print(f"\nimport of {rows} rows: {sum(used.values()):.0f} commands, {per_row:.3f} per row: {used}")
    assert residents["residents"].count_documents({}) == rows
    assert per_row <= 0.05, used


def test_a_registration_costs_its_look_ups_one_write_each_and_a_commit(residents, config, token):
    url = f"http://{config['WEB_SERVER_ADDRESS']}/residents"
    headers = {"Authorization": f"Bearer {token(['residents:write'])}"}
    time.sleep(0.5)  # the start's own commands are not counted
    before, started = commands("residents"), time.monotonic()
    for number in range(10):
        response = requests.post(url, headers=headers, timeout=10, json={
            "community_id": "tongzilin", "name": f"王秀英{number}", "residence_type": "registered",
            "nationality": "CN", "preferred_language": "zh-CN", "birth_date": "1948-03-02",
            "phone": f"1380000{number:04d}"})
        assert response.status_code == 201, response.text
    until(lambda: residents["outbox"].count_documents({}) == 0, "the outbox relay", timeout_s=30)
    time.sleep(0.3)
    used = spent(before, commands("residents"))
    print(f"\n10 registrations: {used}")
    # per registration: the same-person look-ups (person key, former keys), the resident, its envelope,
    # the commit; and the delete of the sent envelope, shared by commits a moment apart. Besides: the
    # outbox relay's one indexed find every 10 s, however many registrations (more on a slow machine).
    relay_polls = math.ceil((time.monotonic() - started) / 10.0)
    assert sum(used.values()) <= 10 * 6 + relay_polls, used


def ingest_form(number):
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "grid-system/budget",
            "type": "resident.form_submitted", "time": datetime.now(timezone.utc).isoformat(),
            "dataschema": "urn:linli:contracts:resident.form_submitted:v1", "community": "tongzilin",
            "data": {"community_id": "tongzilin", "form_reference": f"grid:{number}",
                     "row": {"姓名": f"居民{number:05d}", "性别": "女", "居住类型": "户籍", "国籍": "CN",
                             "联系电话": f"138{number:08d}", "出生日期": "1960-01-01"}}}


def test_the_ingest_door_handles_messages_in_batches(container_factory, config, mongo_client, amqp_uri):
    """2,000 form rows waiting on the queue (sent before the service starts, so that the sender's pace
    is not what is measured) are registered in batches: a few commands per batch, not per message."""
    messages = 2_000
    declare_topology(amqp_uri, queue_for("residents", RESIDENT_FORM_SUBMITTED))
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.confirm_delivery()
    for number in range(messages):
        channel.basic_publish("linli.ingest", "resident.form_submitted", json.dumps(ingest_form(number)).encode(),
                              pika.BasicProperties(content_type="application/json", delivery_mode=2))
    connection.close()
    residents = mongo_client[config["MONGO_DB_PREFIX"] + "residents"]
    container = container_factory(ResidentsService, config)
    container.start()
    before, started = commands("residents"), time.monotonic()
    until(lambda: residents["residents"].count_documents({}) >= messages, "the residents", timeout_s=300)
    counted_s = time.monotonic() - started
    until(lambda: residents["outbox"].count_documents({"sent_at": None}) == 0, "the outbox relay", timeout_s=60)
    time.sleep(2.5)
    used = spent(before, commands("residents"))
    per_message = sum(used.values()) / messages
    print(f"\ningest of {messages} messages in {counted_s:.1f} s: {sum(used.values()):.0f} commands, "
          f"{per_message:.3f} per message: {used}")
    assert residents["residents"].count_documents({}) == messages
    assert per_message <= 0.2, used
