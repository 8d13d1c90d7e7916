"""LINLI_QUEUE_TYPE=quorum against the cluster's definitions (deploy/k8s/rabbitmq/definitions.json):
the services start against pre-declared quorum queues, messages go through, and every durable
queue they declare is a quorum queue (nameko's RPC reply queues stay classic)."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from amqp.exceptions import PreconditionFailed
from kombu import Connection, Queue
from nameko.standalone.rpc import ClusterRpcProxy

from contracts import build_envelope
from platform_tools import broker_definitions
from tests.conftest import ROOT, TEST_DATA_KEY, TEST_SECRET, rabbitmqctl

pytestmark = pytest.mark.integration

NAMEKO = Path(sys.executable).parent / "nameko"
RETRY_DELAYS_S = (0.5, 1)
HISTORY_QUEUE = "linli-reports.on_message"  # reports' queue of every message (bound with "#")


def test_the_checked_in_quorum_definitions_are_current():
    expected = broker_definitions.render(queue_type="quorum")
    assert broker_definitions.QUORUM_DEFINITIONS.read_text(encoding="utf-8") == expected, \
        "run `make definitions` and commit the result"


def queue_types(vhost: str) -> dict[str, str]:
    listed = rabbitmqctl("list_queues", "-p", vhost, "--formatter", "json", "name", "type", "durable")
    return {q["name"]: q["type"] for q in json.loads(listed)}


@pytest.fixture
def quorum_vhost(vhost, amqp_uri):
    """The quorum definitions, imported into this test's vhost as an operator imports them."""
    document = broker_definitions.definitions(vhost, RETRY_DELAYS_S, queue_type="quorum")
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir="/tmp") as file:
        json.dump(document, file)
        file.flush()
        os.chmod(file.name, 0o644)  # rabbitmqctl's broker runs as another user
        rabbitmqctl("import_definitions", file.name)
        deadline = time.monotonic() + 60  # the import is asynchronous
        while not ({q["name"] for q in document["queues"]} <= set(queue_types(vhost))
                   and "linli-poison" in rabbitmqctl("list_policies", "-p", vhost)):
            assert time.monotonic() < deadline, "the quorum definitions were not imported"
            time.sleep(0.5)
    return vhost


@pytest.fixture
def start_service(quorum_vhost, amqp_uri, mongo_uri, db_prefix, free_port, tmp_path):
    """``start_service(name, cls)``: `nameko run` as deployed, with LINLI_QUEUE_TYPE=quorum; its URL."""
    processes = []

    def start(name: str, service_class: str) -> str:
        address = f"127.0.0.1:{free_port()}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("LINLI_")}
        env.update(LINLI_QUEUE_TYPE="quorum", LINLI_AMQP_URI=amqp_uri, LINLI_MONGO_URI=mongo_uri,
                   LINLI_DB_PREFIX=db_prefix, LINLI_JWT_SECRET=TEST_SECRET, LINLI_RESIDENTS_DATA_KEY=TEST_DATA_KEY,
                   LINLI_MESSAGE_RETRY_DELAYS_S=",".join(str(d) for d in RETRY_DELAYS_S),
                   **{f"LINLI_{name.upper()}_HTTP": address})
        log_path = tmp_path / f"{name}.log"
        process = subprocess.Popen(
            [str(NAMEKO), "run", "--config", f"services/{name}/config.yaml", f"services.{name}.service:{service_class}"],
            cwd=ROOT, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
        processes.append(process)
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"{name} exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{name} not healthy:\n{log_path.read_text()[-3000:]}"
            try:
                if requests.get(f"http://{address}/health", timeout=1).status_code == 200:
                    return f"http://{address}"
            except requests.RequestException:
                pass
            time.sleep(0.3)

    yield start
    for process in processes:  # before the vhost goes
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_classic_declare_of_a_quorum_queue_is_refused(quorum_vhost, amqp_uri):
    """Why the setting exists: without it, a service's declare fails against the cluster's queues."""
    with Connection(amqp_uri) as connection:
        with pytest.raises(PreconditionFailed, match="x-queue-type"):
            Queue(HISTORY_QUEUE, durable=True)(connection.channel()).declare()


def test_services_run_on_quorum_queues(start_service, quorum_vhost, amqp_uri, token):
    residents = start_service("residents", "ResidentsService")
    reports = start_service("reports", "ReportsService")
    assert residents and reports

    # Residents registers and publishes; reports counts; the rpc-residents queue answers too.
    registered = requests.post(f"{residents}/residents", headers={"Authorization": f"Bearer {token(['residents:write'])}"},
                               json={"community_id": "tongzilin", "name": "王秀英", "residence_type": "registered",
                                     "nationality": "CN", "preferred_language": "zh-CN"}, timeout=30)
    assert registered.status_code == 201, registered.text
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}) as rpc:
        assert rpc.residents.get(registered.json()["id"])["community_id"] == "tongzilin"
    # Through a quorum retry queue: its message TTL expires and it is dead-lettered back to the queue.
    retried = build_envelope("resident.registered", {
        "resident_id": "r-retried", "community_id": "tongzilin", "residence_type": "foreign", "nationality": "IE",
        "preferred_language": "en"}, source="linli/residents").to_wire()
    with Connection(amqp_uri) as connection:
        connection.Producer(serializer="json").publish(
            retried, exchange="", routing_key=f"{HISTORY_QUEUE}.retry.500ms", delivery_mode=2)

    headers = {"Authorization": f"Bearer {token(['reports:read'])}"}
    deadline = time.monotonic() + 30
    while True:
        response = requests.get(f"{reports}/communities/tongzilin/summary", headers=headers)
        if response.status_code == 200 and response.json()["residents_total"] == 2:
            break
        assert time.monotonic() < deadline, f"not both residents counted: {response.status_code} {response.text}"
        time.sleep(0.3)
    assert response.json()["residents_by_residence_type"] == {"registered": 1, "foreign": 1}

    types = queue_types(quorum_vhost)
    assert types["rpc-residents"] == "quorum"  # declared by nameko, not by the definitions
    assert types[f"{HISTORY_QUEUE}.retry.500ms"] == "quorum"
    classic = {name for name, kind in types.items() if kind != "quorum" and not name.startswith("rpc.reply-")}
    assert classic == set(), f"durable queues that are not quorum: {sorted(classic)}"
