"""The platform as `make run` starts it (`linli up`), once for all ops tests, plus an SMTP sink
so email deliveries succeed, a small scenario run through it, and METRICS.md parsed.

It reuses the e2e tests' ``RunningPlatform`` rather than their per-test ``linli`` fixture:
one platform (and one vhost) for the whole ops session keeps the slow start to one.
"""
from __future__ import annotations

import os
import re
import signal
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from tests.conftest import RUN_ID, free_port, free_port_run, own_vhost
from tests.e2e.conftest import SERVICES, RunningPlatform
from tests.integration.channel_servers import SmtpServer
from tests.waiting import until  # noqa: F401 - the ops tests wait with it

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "deploy" / "prometheus" / "METRICS.md"
COMMUNITY = "tongzilin"
RESIDENTS = (
    {"name": "王秀英", "residence_type": "registered", "nationality": "CN", "preferred_language": "zh-CN"},
    {"name": "James O'Neill", "residence_type": "foreign", "nationality": "IE", "preferred_language": "en"},
    {"name": "Ana Souza", "residence_type": "foreign", "nationality": "BR", "preferred_language": "en"},
)


def catalogue() -> dict[str, dict]:
    """``{metric name: {"type", "labels"}}`` from the catalogue's tables (rows starting with a `name`)."""
    metrics = {}
    for line in CATALOGUE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and (name := re.fullmatch(r"`([a-z_:][a-z0-9_:]*)`", cells[0])):
            labels = re.findall(r"`([a-z_][a-z0-9_]*)`", cells[2])
            metrics[name.group(1)] = {"type": cells[1], "labels": labels}
    return metrics


@pytest.fixture(scope="session")
def ops_vhost():
    with own_vhost(f"linli-test-{RUN_ID}-ops-{uuid.uuid4().hex[:6]}") as name:
        yield name


@pytest.fixture(scope="session")
def platform(tmp_path_factory, ops_vhost):
    """The five services, up, with an SMTP sink and without quiet hours (deliveries go out now)."""
    var = tmp_path_factory.mktemp("linli-ops")
    smtp = SmtpServer(free_port(), var / "maildir")
    smtp.start()
    host = os.environ.get("LINLI_RABBITMQ_HOST", "127.0.0.1")
    env = {key: value for key, value in os.environ.items() if not key.startswith("LINLI_")}
    env.update(
        LINLI_VAR_DIR=str(var),
        LINLI_AMQP_URI=f"amqp://guest:guest@{host}:5672/{ops_vhost}",
        LINLI_MONGO_PORT=str(free_port_run(len(SERVICES))),  # one SecantusDB per service
        LINLI_SMTP_HOST="127.0.0.1",
        LINLI_SMTP_PORT=str(smtp.port),
        LINLI_DEFAULT_QUIET_HOURS="",  # none: deliveries go out now (YAML reads "off" as false)
        **{f"LINLI_{name.upper()}_HTTP": f"127.0.0.1:{free_port()}" for name in SERVICES},
    )
    running = RunningPlatform(env, var)
    running.smtp = smtp
    try:
        running.up()
        yield running
    finally:
        if running.process and running.process.poll() is None:
            running.process.send_signal(signal.SIGTERM)
            running.process.wait(60)
        smtp.stop()


@pytest.fixture(scope="session")
def scenario(platform):
    """Residents registered (with email), an event scheduled, each registered for it, and every
    welcome and confirmation email delivered. Returns what the gauges should then show."""
    headers = platform.headers(["residents:read", "residents:write", "events:read", "events:write",
                                "notifications:read", "reports:read"], communities=(COMMUNITY,))
    urls = platform.urls
    ids = []
    for n, person in enumerate(RESIDENTS):
        body = {"community_id": COMMUNITY, "email": f"ops{n}@example.test", "consent": {"email": True}, **person}
        response = requests.post(urls["residents"] + "/residents", json=body, headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    starts = datetime.now(timezone.utc) + timedelta(days=7)
    event = {"community_id": COMMUNITY, "organiser": "neighbourhood_centre", "category": "culture",
             "title": {"zh-CN": "运维巡检", "en": "Ops walk"}, "venue": "桐梓林社区活动中心",
             "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=2)).isoformat(), "capacity": 10}
    response = requests.post(urls["events"] + "/events", json=event, headers=headers)
    assert response.status_code == 201, response.text
    [event_id] = response.json()["ids"]
    assert requests.post(f"{urls['events']}/events/{event_id}/schedule", headers=headers).status_code == 200
    for resident_id in ids:
        inbox = f"{urls['notifications']}/residents/{resident_id}/inbox"
        until(lambda: requests.get(inbox, headers=headers).status_code == 200, f"notifications to know {resident_id}")
        registered = requests.post(f"{urls['events']}/events/{event_id}/registrations",
                                   json={"resident_id": resident_id}, headers=headers)
        assert registered.status_code == 201, registered.text

    def emails_sent():
        inboxes = [requests.get(f"{urls['notifications']}/residents/{r}/inbox", headers=headers).json()["items"]
                   for r in ids]
        kinds = [{item["kind"] for item in items} for items in inboxes]
        return all({"welcome", "registration_confirmed"} <= k for k in kinds) and _emails(platform) >= 2 * len(ids)

    until(emails_sent, "welcome and confirmation emails for every resident", timeout_s=90)
    foreign = sum(1 for person in RESIDENTS if person["residence_type"] == "foreign")
    return {"residents": len(ids), "foreign": foreign, "event_id": event_id, "emails": _emails(platform)}


def _emails(platform) -> int:
    return len(platform.smtp.messages())
