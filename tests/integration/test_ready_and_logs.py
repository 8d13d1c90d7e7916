"""/ready, and the JSON log lines one correlation id ties together (issue #9).

The readiness tests run a container in this process. The log test runs the
four services as `nameko run` processes (``Platform``, as `make run` does, on
this test's vhost and databases) and reads what they wrote to var/log/.
"""
import json
import os
import time
import uuid

import pytest
import requests
from nameko.messaging import QueueConsumer

from services.common.auth import dev_secret, issue_token
from platform_tools.platform import SERVICES as PLATFORM_SERVICES, Platform
from services.reports.service import ReportsService
from services.residents.service import ResidentsService
from tests.conftest import TEST_DATA_KEY
from tests.waiting import until

pytestmark = pytest.mark.integration
SERVICES = tuple(name for name, _, _ in PLATFORM_SERVICES)
EVERY_LINE = {"time", "level", "logger", "message", "service", "instance"}
EVERY_CALL = {"entrypoint", "kind", "correlation_id", "outcome", "duration_ms"}


def test_ready_after_start_with_every_check_named(container_factory, config):
    container = container_factory(ResidentsService, config)
    container.start()
    url = f"http://{config['WEB_SERVER_ADDRESS']}"
    response = requests.get(url + "/ready", timeout=5)  # no token
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "service": "residents",
                               "checks": {"broker": "ok", "database": "ok", "consumers": "ok"}}
    assert response.headers["X-Correlation-Id"]


def test_ready_is_503_naming_consumers_that_are_not_attached(container_factory, config):
    container = container_factory(ReportsService, config)
    container.start()
    url = f"http://{config['WEB_SERVER_ADDRESS']}"
    assert requests.get(url + "/ready", timeout=5).status_code == 200
    # Take one consumer's channel away, as a broken connection would.
    provider, consumer = next((p, c) for e in container.extensions if isinstance(e, QueueConsumer)
                              for p, c in e._consumers.items() if hasattr(p, "message_type"))
    consumer.channel.is_open = False
    time.sleep(1.1)  # past the cached answer
    response = requests.get(url + "/ready", timeout=5)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "not_ready" and body["details"]["not_ready"] == ["consumers"]
    assert provider.queue.name in body["details"]["checks"]["consumers"]
    assert requests.get(url + "/health", timeout=5).status_code == 200  # alive all the same
    consumer.channel.is_open = True


@pytest.fixture
def processes(tmp_path, amqp_uri, mongo_uri, db_prefix, free_port):
    """The five services as processes of their own, logging as configured in their config.yaml."""
    platform = Platform(var=tmp_path, rabbitmq_owner=None)
    platform.env = {k: v for k, v in os.environ.items() if not k.startswith("LINLI_")}
    platform.env.update(LINLI_AMQP_URI=amqp_uri, LINLI_MONGO_URI=mongo_uri, LINLI_DB_PREFIX=db_prefix,
                        LINLI_LOG_LEVEL="INFO", LINLI_RESIDENTS_DATA_KEY=TEST_DATA_KEY,
                        **{f"LINLI_{name.upper()}_HTTP": f"127.0.0.1:{free_port()}" for name in SERVICES})
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()


def log_lines(platform, service):
    """Every line ``service`` wrote, each parsed as JSON (a line that is not JSON fails here)."""
    lines = []
    for number, text in enumerate((platform.logs / f"{service}.log").read_text().splitlines(), 1):
        try:
            lines.append(json.loads(text))
        except ValueError:
            pytest.fail(f"{service}.log line {number} is not JSON: {text[:300]}")
    return lines


def test_one_correlation_id_from_the_post_to_the_projection_and_the_welcome(processes):
    urls = {child.name: child.url for child in processes.children}
    token = issue_token(dev_secret(processes.var), subject="test", communities=["tongzilin"],
                        scopes=["residents:write", "reports:read", "notifications:read"])
    headers = {"Authorization": f"Bearer {token}"}
    correlation_id = f"it-{uuid.uuid4().hex}"
    name = f"Xqzvy Lentrop {uuid.uuid4().hex[:6]}"  # must appear in no log
    response = requests.post(urls["residents"] + "/residents", headers={**headers, "X-Correlation-Id": correlation_id},
                             json={"community_id": "tongzilin", "name": name, "residence_type": "registered",
                                   "nationality": "CN", "preferred_language": "zh-CN", "phone": "13800138000"})
    assert response.status_code == 201, response.text
    assert response.headers["X-Correlation-Id"] == correlation_id
    resident_id = response.json()["id"]

    # A header that is not a plain token is replaced, not logged; a refusal before any worker is logged too.
    refused = requests.get(urls["residents"] + "/residents", headers={"X-Correlation-Id": f"{name} 13800138000"})
    assert refused.status_code == 401
    generated = refused.headers["X-Correlation-Id"]
    assert generated != f"{name} 13800138000" and uuid.UUID(generated)

    def welcomed():
        inbox = requests.get(f"{urls['notifications']}/residents/{resident_id}/inbox", headers=headers)
        return inbox.status_code == 200 and inbox.json()["items"]

    until(welcomed, "the welcome in the inbox", timeout_s=30)

    def calls(service, **where):
        return [line for line in log_lines(processes, service) if line.get("logger") == "linli.entrypoints"
                and all(line.get(key) == value for key, value in where.items())]

    def eventually(service, **where):  # a line is written when the worker ends, after the effect
        return until(lambda: calls(service, **where), f"a {where} line from {service}", timeout_s=10)

    [post] = eventually("residents", correlation_id=correlation_id, kind="http")
    assert post["entrypoint"] == "residents.register_over_http" and post["status"] == 201
    assert post["outcome"] == "ok" and post["method"] == "POST" and post["route"] == "/residents"
    projected = eventually("reports", correlation_id=correlation_id, kind="message",
                           message_type="resident.registered")
    assert all(line["outcome"] == "ok" for line in projected)
    welcomed = eventually("notifications", correlation_id=correlation_id, kind="message",
                          message_type="resident.registered")
    assert all(line["outcome"] == "ok" for line in welcomed)
    # What the welcome published in turn (the in-app outcome) reaches reports under the same id.
    eventually("reports", correlation_id=correlation_id, kind="message", message_type="notification.outcomes")
    [refusal] = eventually("residents", correlation_id=generated, status=401)
    assert refusal["outcome"] == "refused" and refusal["route"] == "/residents"

    for service in SERVICES:
        lines = log_lines(processes, service)
        assert lines, f"{service} logged nothing"
        for line in lines:
            assert EVERY_LINE <= set(line) and line["service"] == service, line
            if line["logger"] == "linli.entrypoints":
                assert EVERY_CALL <= set(line) and line["correlation_id"], line
                assert ("status" in line) == (line["kind"] == "http"), line
                assert "message_type" in line or line["kind"] != "message", line
        text = (processes.logs / f"{service}.log").read_text()
        for secret in (name, "13800138000"):
            assert secret not in text and json.dumps(secret)[1:-1] not in text, f"{secret} in {service}.log"
