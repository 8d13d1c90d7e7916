"""Three instances of each service (`make run SCALE=3`): competing consumers on the same
queues, timers on every instance, one SecantusDB. Requests are spread over every
instance; every result must still happen exactly once."""
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests
from nameko.standalone.rpc import ClusterRpcProxy

from tests.conftest import CONSUME_NOTHING, rabbitmqctl
from tests.e2e.conftest import SERVICES
from tests.waiting import until

pytestmark = pytest.mark.e2e
RESIDENTS = 9
CAPACITY = 5
SCOPES = ["residents:read", "residents:write", "events:read", "events:write", "notifications:read", "reports:read"]


def consumers_per_queue(amqp_uri) -> dict:
    vhost = amqp_uri.rsplit("/", 1)[1]
    rows = (line.split("\t") for line in rabbitmqctl("list_queues", "-p", vhost, "name", "consumers").splitlines())
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


def entrypoint_lines(linli, service):
    """The entrypoint log lines of every instance of ``service``."""
    lines = []
    for log in sorted((linli.var_dir / "log").glob(f"{service}-*.log")):
        lines += [line for line in map(json.loads, log.read_text().splitlines())
                  if line["logger"] == "linli.entrypoints"]
    return lines


def test_requests_spread_over_three_instances_each_take_effect_once(linli_scaled):
    linli = linli_scaled
    linli.up()
    count = linli.instances
    printed = (linli.var_dir / f"linli-up-{linli.starts}.out").read_text()
    for name in SERVICES:
        for number, url in enumerate(linli.instance_urls[name], 1):
            assert f"{name}-{number} " in printed and url in printed, printed
            assert requests.get(url + "/ready").status_code == 200

    # Competing consumers: each queue a service consumes has one consumer per instance.
    queues = consumers_per_queue(linli.env["LINLI_AMQP_URI"])
    shared = {name: n for name, n in queues.items() if n and not name.startswith("rpc.reply")}
    assert {f"rpc-{name}" for name in SERVICES if name not in CONSUME_NOTHING} <= set(shared), queues
    assert set(shared.values()) == {count}, shared

    headers = linli.headers(SCOPES)
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    people = [{"community_id": "tongzilin", "name": f"Scaled Person {n}", "residence_type": "foreign",
               "nationality": "FR", "preferred_language": "en", "document_type": "passport",
               "document_number": f"SC{n:07d}", "permit_type": "residence_permit_work",
               "permit_expires_on": (today + timedelta(days=5)).isoformat()} for n in range(RESIDENTS)]
    correlation_ids = [f"scaled-{n}-{uuid.uuid4().hex[:8]}" for n in range(RESIDENTS)]

    def register(n):
        url = linli.instance_urls["residents"][n % count]
        response = requests.post(url + "/residents", json=people[n],
                                 headers={**headers, "X-Correlation-Id": correlation_ids[n]})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    with ThreadPoolExecutor(RESIDENTS) as pool:
        ids = list(pool.map(register, range(RESIDENTS)))
    assert len(set(ids)) == RESIDENTS
    for n, resident_id in enumerate(ids):  # read back from another instance than the one that wrote
        url = linli.instance_urls["residents"][(n + 1) % count]
        assert requests.get(f"{url}/residents/{resident_id}", headers=headers).status_code == 200

    def inbox(n):
        url = linli.instance_urls["notifications"][n % count]
        response = requests.get(f"{url}/residents/{ids[n]}/inbox", headers=headers)
        return [item["kind"] for item in response.json().get("items", [])] if response.status_code == 200 else []

    for n in range(RESIDENTS):
        until(lambda: "welcome" in inbox(n), f"the welcome of resident {n}")

    # An event announced to the community: the fan-out timer runs on every notifications instance.
    starts = datetime.now(timezone.utc) + timedelta(days=7)
    event = {"community_id": "tongzilin", "organiser": "neighbourhood_centre", "category": "culture",
             "title": {"en": "Scaled lecture"}, "venue": "Tongzilin hall", "starts_at": starts.isoformat(),
             "ends_at": (starts + timedelta(hours=2)).isoformat(), "capacity": CAPACITY, "audience": "community"}
    events = linli.instance_urls["events"]
    created = requests.post(events[1 % count] + "/events", json=event, headers=headers)
    assert created.status_code == 201, created.text
    [event_id] = created.json()["ids"]
    assert requests.post(f"{events[2 % count]}/events/{event_id}/schedule", headers=headers).status_code == 200
    for n in range(RESIDENTS):
        until(lambda: "event_announced" in inbox(n), f"the announcement to resident {n}")

    def register_for_event(n):
        response = requests.post(f"{events[n % count]}/events/{event_id}/registrations",
                                 json={"resident_id": ids[n]}, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()["status"]

    with ThreadPoolExecutor(RESIDENTS) as pool:
        statuses = list(pool.map(register_for_event, range(RESIDENTS)))
    assert sorted(statuses) == ["confirmed"] * CAPACITY + ["waitlisted"] * (RESIDENTS - CAPACITY), statuses

    # The permit-reminder job run by three instances at once (as their timers may): one reminder each.
    def run_reminders(_):
        with ClusterRpcProxy({"AMQP_URI": linli.env["LINLI_AMQP_URI"]}) as rpc:
            return rpc.residents.run_permit_reminders()

    with ThreadPoolExecutor(count) as pool:
        list(pool.map(run_reminders, range(count)))
    for n in range(RESIDENTS):
        until(lambda: "permit_expiring" in inbox(n), f"the permit reminder of resident {n}")

    time.sleep(3)  # timers fire every second: give a double effect the time to show
    for n in range(RESIDENTS):
        kinds = inbox(n)
        for kind in ("welcome", "event_announced", "permit_expiring"):
            assert kinds.count(kind) == 1, (n, kinds)
    for url in linli.instance_urls["reports"]:
        summary = until(lambda: (r := requests.get(url + "/communities/tongzilin/summary", headers=headers).json())
                        ["residents_total"] == RESIDENTS and r, f"{url} to count {RESIDENTS} residents")
        assert summary["residents_by_residence_type"] == {"foreign": RESIDENTS}

    # Each POST was served by the instance it was sent to, and logged once, there.
    posts = [line for line in entrypoint_lines(linli, "residents") if line["correlation_id"] in correlation_ids
             and line["kind"] == "http"]
    assert sorted((line["correlation_id"], line["instance"]) for line in posts) == sorted(
        (correlation_ids[n], n % count + 1) for n in range(RESIDENTS))
    projected = {line["correlation_id"] for line in entrypoint_lines(linli, "reports")
                 if line["kind"] == "message" and line["message_type"] == "resident.registered"}
    assert set(correlation_ids) <= projected
    linli.down()
