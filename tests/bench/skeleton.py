"""`make bench`: the walking skeleton's end-to-end rate against a raw-broker baseline.

Both are measured in this run, on this broker (a vhost of their own):

- baseline: pika publishes N persistent messages with publisher confirms (as
  nameko does) to a durable queue, then consumes and acks them all;
- skeleton: N residents registered over HTTP (8 concurrent clients) until
  reports counts all N — through the four real service processes that
  `linli up` starts, with SecantusDB under a temporary var/;
- import: a collection form of 50,000 fictional residents, from upload until
  reports counts every one;
- events: 2,000 of them registering for 20 events at once (16 clients):
  registrations per second and p99 latency (the events are held by another
  community and open to all, so they are announced to that community's
  residents, not to the 50,000, and the fan-out does not load this measurement);
- announcement: an event scheduled in a community of 10,000 residents (all
  opted in; their resident.registered put straight on the notifications
  queue first), until every one of them has it in their inbox;
- reports: 100,000 resident.registered messages put on the reports queue,
  then GET /communities/<id>/summary latency (p50/p99) against /health on the
  same service, and the time to rebuild every projection from the history.

It prints figures and their ratio. Nothing here asserts a timing.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pika
import requests

from services.common import platform as linli_platform
from services.common.auth import dev_secret, issue_token
from tests.data.sample_form import form_csv


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def baseline(amqp_uri: str, count: int) -> float:
    """Messages per second for pika publish (confirmed, persistent) + consume/ack."""
    body = b'{"specversion": "1.0", "type": "resident.registered", "data": {"resident_id": "x"}}'
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.queue_declare("bench.baseline", durable=True)
    channel.confirm_delivery()
    started = time.perf_counter()
    properties = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    for _ in range(count):
        channel.basic_publish("", "bench.baseline", body, properties)
    received = 0
    channel.basic_qos(prefetch_count=100)
    for method, _, _ in channel.consume("bench.baseline", inactivity_timeout=30):
        if method is None:
            raise RuntimeError(f"baseline: only {received} of {count} messages came back")
        channel.basic_ack(method.delivery_tag)
        received += 1
        if received == count:
            break
    elapsed = time.perf_counter() - started
    channel.cancel()
    connection.close()
    return count / elapsed


def start_platform(amqp_uri: str) -> tuple[linli_platform.Platform, dict, dict]:
    """The four services as `linli up` starts them, in a temporary var/; (platform, urls, headers)."""
    var = Path(tempfile.mkdtemp(prefix="linli-bench-"))
    os.environ.update(
        LINLI_VAR_DIR=str(var),
        LINLI_AMQP_URI=amqp_uri,
        LINLI_MONGO_PORT=str(_free_port()),
        **{f"LINLI_{name.upper()}_HTTP": f"127.0.0.1:{_free_port()}" for name, _, _ in linli_platform.SERVICES},
    )
    os.environ.pop("LINLI_MONGO_URI", None)
    stack = linli_platform.Platform(var=var, rabbitmq_owner=None)
    stack.start()
    urls = {child.name: child.url for child in stack.children if child.url}
    token = issue_token(dev_secret(var), subject="bench", communities=["*"],
                        scopes=["residents:read", "residents:write", "reports:read", "reports:admin", "events:read",
                                "events:write"])
    return stack, urls, {"Authorization": f"Bearer {token}"}


def counted(urls, headers, community) -> int:
    response = requests.get(f"{urls['reports']}/communities/{community}/summary", headers=headers)
    return response.json()["residents_total"] if response.status_code == 200 else 0


def skeleton(urls: dict, headers: dict, count: int, clients: int) -> tuple[float, float]:
    """Residents per second from the first POST until reports counts them all,
    and the median registration → counted latency of a single resident."""
    community = f"bench-{uuid.uuid4().hex[:6]}"

    def register(i: int) -> None:
        body = {"community_id": community, "name": f"居民{i}", "residence_type": "registered",
                "nationality": "CN", "preferred_language": "zh-CN"}
        with requests.Session() as session:
            response = session.post(urls["residents"] + "/residents", json=body, headers=headers)
        response.raise_for_status()

    # One resident alone first, for latency; then the rate under load.
    latencies = []
    for i in range(5):
        started = time.perf_counter()
        register(-1 - i)
        while counted(urls, headers, community) < i + 1:
            time.sleep(0.002)
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(register, range(count)))
    while counted(urls, headers, community) < count + 5:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    return count / elapsed, sorted(latencies)[len(latencies) // 2]


def event_registrations(urls: dict, headers: dict, community: str, residents: int, events: int,
                        clients: int) -> tuple[float, float, dict]:
    """``residents`` residents registering for ``events`` events at once: registrations per
    second, p99 latency, and how many were confirmed and waitlisted."""
    resident_ids = []
    for page in range(1, residents // 200 + 2):
        found = requests.get(urls["residents"] + "/residents", headers=headers,
                             params={"community_id": community, "page": page, "page_size": 200}).json()
        resident_ids += [r["id"] for r in found["items"]]
    resident_ids = resident_ids[:residents]
    starts = datetime.now(timezone.utc) + timedelta(days=7)
    event_ids = []
    for number in range(events):
        body = {"community_id": f"{community}-hall", "organiser": "neighbourhood_centre", "category": "culture",
                "title": {"zh-CN": f"文化分享会 {number}", "en": f"Cultural sharing session {number}"},
                "venue": f"活动室 {number}", "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=2)).isoformat(), "capacity": residents // events * 9 // 10,
                "audience": "any_community"}
        [event_id] = requests.post(urls["events"] + "/events", json=body, headers=headers).json()["ids"]
        requests.post(f"{urls['events']}/events/{event_id}/schedule", headers=headers).raise_for_status()
        event_ids.append(event_id)

    def register(i: int) -> tuple[float, str]:
        started = time.perf_counter()
        with requests.Session() as session:
            response = session.post(f"{urls['events']}/events/{event_ids[i % events]}/registrations",
                                    json={"resident_id": resident_ids[i]}, headers=headers)
        response.raise_for_status()
        return time.perf_counter() - started, response.json()["status"]

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(register, range(len(resident_ids))))
    elapsed = time.perf_counter() - started
    latencies = sorted(latency for latency, _ in results)
    outcomes = {status: sum(1 for _, s in results if s == status) for status in ("confirmed", "waitlisted")}
    return len(results) / elapsed, latencies[int(len(latencies) * 0.99) - 1], outcomes


def form_import(urls: dict, headers: dict, rows: int) -> tuple[float, float, str]:
    """Residents per second from uploading a collection form of ``rows`` fictional
    residents until reports counts every one; and the import alone (until the job completes)."""
    community = f"bench-form-{uuid.uuid4().hex[:6]}"
    content = form_csv(rows, seed=rows, community=community)
    started = time.perf_counter()
    response = requests.post(urls["residents"] + "/residents/imports", data=content, headers=headers,
                             params={"filename": "bench.csv"}, timeout=600)
    response.raise_for_status()
    job_url = f"{urls['residents']}/residents/imports/{response.json()['id']}"
    imported_in = None
    while True:
        if imported_in is None and requests.get(job_url, headers=headers).json()["status"] == "completed":
            imported_in = time.perf_counter() - started
        if counted(urls, headers, community) >= rows:
            break
        time.sleep(0.25)
    elapsed = time.perf_counter() - started
    return rows / elapsed, rows / (imported_in or elapsed), community


def _publish_registrations(amqp_uri: str, queue: str, community: str, count: int) -> None:
    """``count`` resident.registered envelopes straight onto one consumer's queue (publisher
    confirms): the measurement is of that consumer, not of the residents service."""
    import json

    from contracts import build_envelope

    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.confirm_delivery()
    properties = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    for n in range(count):
        body = build_envelope("resident.registered", {
            "resident_id": f"{community}-{n}", "community_id": community,
            "residence_type": "foreign" if n % 3 == 0 else "registered",
            "nationality": ("FR", "US", "KR", "JP", "DE")[n % 5] if n % 3 == 0 else "CN",
            "preferred_language": ("zh-CN", "en", "fr")[n % 3], "birth_year": 1940 + n % 70,
            "tags": ["volunteer"] if n % 7 == 0 else []}, source="linli/bench").to_wire()
        channel.basic_publish("", queue, json.dumps(body).encode(), properties)
    connection.close()


def announcement(urls: dict, headers: dict, amqp_uri: str, residents: int) -> float:
    """Notifications per second from scheduling an event in a community of ``residents``
    until each has it in the inbox (counted in the notifications database)."""
    import pymongo

    community = f"bench-hall-{uuid.uuid4().hex[:6]}"
    _publish_registrations(amqp_uri, "evt-residents-resident.registered--notifications.on_resident_registered",
                           community, residents)
    client = pymongo.MongoClient(f"mongodb://127.0.0.1:{os.environ['LINLI_MONGO_PORT']}/?replicaSet=secantus")
    database = client[os.environ.get("LINLI_DB_PREFIX", "linli_") + "notifications"]
    while database.audience.count_documents({"community_id": community}) < residents:
        time.sleep(0.5)  # every resident known to notifications before the clock starts
    starts = datetime.now(timezone.utc) + timedelta(days=7)
    body = {"community_id": community, "organiser": "neighbourhood_centre", "category": "food",
            "title": {"zh-CN": "国际美食节", "en": "International Food Festival"}, "venue": "社区广场",
            "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=4)).isoformat(),
            "capacity": 500, "audience": "community"}
    [event_id] = requests.post(urls["events"] + "/events", json=body, headers=headers).json()["ids"]
    started = time.perf_counter()
    requests.post(f"{urls['events']}/events/{event_id}/schedule", headers=headers).raise_for_status()
    while database.notifications.count_documents({"kind": "event_announced", "community_id": community,
                                                  "in_inbox": True}) < residents:
        time.sleep(0.25)
    elapsed = time.perf_counter() - started
    client.close()
    return residents / elapsed


def reports_at_scale(urls: dict, headers: dict, amqp_uri: str, residents: int, reads: int = 300) -> dict:
    """Summary and /health latency at ``residents`` residents, and the rebuild time."""
    import statistics

    community = f"bench-city-{uuid.uuid4().hex[:6]}"
    started = time.perf_counter()  # reports consumes while they are being published
    _publish_registrations(amqp_uri, "linli-reports.on_message", community, residents)
    while counted(urls, headers, community) < residents:
        time.sleep(1)
    projected_in = time.perf_counter() - started

    def latencies(path: str) -> tuple[float, float]:
        times = []
        with requests.Session() as session:
            for _ in range(reads):
                begun = time.perf_counter()
                session.get(urls["reports"] + path, headers=headers).raise_for_status()
                times.append(time.perf_counter() - begun)
        times.sort()
        return statistics.median(times), times[int(len(times) * 0.99) - 1]

    summary = latencies(f"/communities/{community}/summary")
    health = latencies("/health")
    started = time.perf_counter()
    rebuilt = requests.post(urls["reports"] + "/projections/rebuild", headers=headers, timeout=3600).json()
    return {"projected_per_s": residents / projected_in, "summary": summary, "health": health,
            "rebuild_messages": rebuilt["messages"], "rebuild_s": time.perf_counter() - started}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000, help="baseline message count")
    parser.add_argument("--residents", type=int, default=500, help="residents registered by the skeleton run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--form-rows", type=int, default=50_000, help="rows of the collection form imported")
    parser.add_argument("--registrations", type=int, default=2000, help="residents registering for events")
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--audience", type=int, default=10_000, help="residents an event is announced to")
    parser.add_argument("--reports-residents", type=int, default=100_000,
                        help="residents in the community whose summary is read")
    args = parser.parse_args()

    vhost = f"linli-bench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    amqp_uri = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    try:
        base_rate = baseline(amqp_uri, args.messages)
        print(f"baseline  pika publish (confirmed) + consume/ack   {args.messages:>6} msgs   {base_rate:10.1f} msg/s")
        stack, urls, headers = start_platform(amqp_uri)
        try:
            rate, latency = skeleton(urls, headers, args.residents, args.clients)
            print(f"skeleton  POST /residents -> counted by reports    {args.residents:>6} residents "
                  f"{rate:7.1f} residents/s   (one alone: {latency * 1000:.0f} ms median of 5)")
            print(f"ratio     skeleton / baseline = {rate / base_rate:.4f}   "
                  f"(the raw broker is {base_rate / rate:.1f}x faster)")
            form_rate, import_rate, community = form_import(urls, headers, args.form_rows)
            print(f"import    collection form -> counted by reports  {args.form_rows:>6} rows "
                  f"{form_rate:9.1f} residents/s   (the import job alone: {import_rate:.1f} rows/s)")
            print(f"ratio     import / baseline = {form_rate / base_rate:.4f}   (goal: 0.3)")
            rate, p99, outcomes = event_registrations(urls, headers, community, args.registrations, args.events,
                                                      args.clients * 2)
            print(f"events    {args.registrations} residents register for {args.events} events at once "
                  f"{rate:9.1f} registrations/s   p99 {p99 * 1000:.0f} ms   "
                  f"({outcomes['confirmed']} confirmed, {outcomes['waitlisted']} waitlisted)")
            print(f"ratio     registrations / baseline = {rate / base_rate:.4f}")
            rate = announcement(urls, headers, amqp_uri, args.audience)
            print(f"announce  event scheduled -> in every inbox      {args.audience:>6} residents "
                  f"{rate:7.1f} notifications/s")
            print(f"ratio     announcement / baseline = {rate / base_rate:.4f}")
            scale = reports_at_scale(urls, headers, amqp_uri, args.reports_residents)
            (s50, s99), (h50, h99) = scale["summary"], scale["health"]
            print(f"reports   {args.reports_residents} resident.registered projected "
                  f"{scale['projected_per_s']:9.1f} msgs/s   ratio to baseline {scale['projected_per_s'] / base_rate:.4f}")
            print(f"summary   GET /communities/<id>/summary at {args.reports_residents} residents: "
                  f"p50 {s50 * 1000:.1f} ms, p99 {s99 * 1000:.1f} ms   (/health: p50 {h50 * 1000:.1f} ms, "
                  f"p99 {h99 * 1000:.1f} ms; ratio p50 {s50 / h50:.1f}x)")
            print(f"rebuild   every projection from {scale['rebuild_messages']} messages of history "
                  f"in {scale['rebuild_s']:.1f} s ({scale['rebuild_messages'] / scale['rebuild_s']:.0f} msgs/s)")
        finally:
            stack.stop()
    finally:
        rabbitmqctl("delete_vhost", vhost)


if __name__ == "__main__":
    main()
