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

from platform_tools import platform as linli_platform
from services.common.auth import dev_secret, issue_token
from tests.bench.meter import Meter, settle
from tests.data.sample_form import HEADER as FORM_HEADER
from tests.data.sample_form import form_csv
from tests.data.sample_form import rows as sample_rows


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def broker_pid() -> dict[str, int]:
    """The local RabbitMQ node's Erlang VM (the oldest ``beam.smp`` running ``rabbit``), if there is one."""
    found = subprocess.run(["pgrep", "-o", "-f", "beam.smp.* -s rabbit boot"], capture_output=True, text=True)
    return {"rabbitmq": int(found.stdout.split()[0])} if found.returncode == 0 else {}


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


class Bench:
    """The running platform, and the bench's own ways of seeing when work is done: reports'
    summary over HTTP (its commands are measured and left out of the counts) and the
    notifications database read directly (by a client of the bench's own, not counted)."""

    def __init__(self, stack, urls: dict, headers: dict, amqp_uri: str):
        import pymongo

        self.stack, self.urls, self.headers, self.amqp_uri = stack, urls, headers, amqp_uri
        self.meter = Meter(urls, {**{child.name: child.process.pid for child in stack.children},
                                  **broker_pid()})
        self.client = pymongo.MongoClient(stack.mongo_uris["notifications"], tz_aware=True)
        self.notifications = self.client[os.environ.get("LINLI_DB_PREFIX", "linli_") + "notifications"]
        self.store = pymongo.MongoClient(stack.mongo_uris["residents"], tz_aware=True)
        self.summary_cost = None

    def counted(self, community: str) -> int:
        response = requests.get(f"{self.urls['reports']}/communities/{community}/summary", headers=self.headers)
        return response.json()["residents_total"] if response.status_code == 200 else 0

    def in_inboxes(self, kind: str, community: str | None = None) -> int:
        found = {"kind": kind, "in_inbox": True, **({"community_id": community} if community else {})}
        return self.notifications.notifications.count_documents(found)

    def wait_counted(self, phase, community: str, count: int, interval_s: float = 0.2) -> None:
        """Until reports counts ``count`` residents in ``community``; the polls' cost is left out of ``phase``."""
        if self.summary_cost is None:
            self.summary_cost = self.meter.read_cost("reports", f"/communities/{community}/summary", self.headers)
        polls = 0
        while (polls := polls + 1) and self.counted(community) < count:
            time.sleep(interval_s)
        phase.exclude("reports", polls * self.summary_cost)

    def wait_inboxes(self, kind: str, count: int, community: str | None = None, interval_s: float = 0.25) -> None:
        while self.in_inboxes(kind, community) < count:
            time.sleep(interval_s)

    def settle(self) -> str:
        return settle({child.name: child.process.pid for child in self.stack.children})

    def store_rate(self, documents: int = 20_000, batch: int = 1000) -> float:
        """The store's own ``insert_many`` rate (resident-sized documents, ``batch`` at a time, into
        the residents' SecantusDB while nothing else writes to it)."""
        collection = self.store["linli_bench_store"]["residents"]
        rows = [{"community_id": "bench", "name": f"居民{n}", "residence_type": "registered", "nationality": "CN",
                 "preferred_language": "zh-CN", "birth_date": "1960-01-01", "grid_id": "bench-03",
                 "household_id": f"bench-h{n // 3}", "tags": ["老年人"], "status": "active"} for n in range(documents)]
        started = time.perf_counter()
        for offset in range(0, documents, batch):
            collection.insert_many(rows[offset:offset + batch])
        elapsed = time.perf_counter() - started
        self.store.drop_database("linli_bench_store")
        return documents / elapsed


def skeleton(bench: Bench, count: int, clients: int) -> tuple[float, float]:
    """Residents per second from the first POST until reports counts them all and each has
    its welcome in the inbox, and the median registration → counted latency of one alone."""
    community = f"bench-{uuid.uuid4().hex[:6]}"

    def register(i: int) -> None:
        body = {"community_id": community, "name": f"居民{i}", "residence_type": "registered",
                "nationality": "CN", "preferred_language": "zh-CN"}
        with requests.Session() as session:
            response = session.post(bench.urls["residents"] + "/residents", json=body, headers=bench.headers)
        response.raise_for_status()

    # One resident alone first, for latency; then the rate under load.
    latencies = []
    for i in range(5):
        started = time.perf_counter()
        register(-1 - i)
        while bench.counted(community) < i + 1:
            time.sleep(0.002)
        latencies.append(time.perf_counter() - started)
    bench.wait_inboxes("welcome", 5, community)
    with bench.meter.phase("skeleton", count, "HTTP registration", budget=10) as phase:
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(register, range(count)))
        bench.wait_counted(phase, community, count + 5)
        bench.wait_inboxes("welcome", count + 5, community)
        elapsed = time.perf_counter() - started
    return count / elapsed, sorted(latencies)[len(latencies) // 2]


def form_import(bench: Bench, rows: int) -> tuple[float, float, str]:
    """Rows per second from uploading a collection form of ``rows`` fictional residents until
    reports counts every resident it registered and each has its welcome; and the import alone."""
    community = f"bench-form-{uuid.uuid4().hex[:6]}"
    content = form_csv(rows, seed=rows, community=community)
    urls, headers = bench.urls, bench.headers
    with bench.meter.phase("import", rows, "row", budget=1.0) as phase:
        started = time.perf_counter()
        response = requests.post(urls["residents"] + "/residents/imports", data=content, headers=headers,
                                 params={"filename": "bench.csv"}, timeout=600)
        response.raise_for_status()
        job_url = f"{urls['residents']}/residents/imports/{response.json()['id']}"
        while (job := requests.get(job_url, headers=headers).json())["status"] != "completed":
            time.sleep(0.25)
        imported_in = time.perf_counter() - started
        phase.exclude("residents", 0)  # the job's own progress reads are part of using it
        bench.wait_counted(phase, community, job["registered"])
        bench.wait_inboxes("welcome", job["registered"], community)
        elapsed = time.perf_counter() - started
    return rows / elapsed, rows / imported_in, community


def ingest_door(bench: Bench, count: int) -> float:
    """``count`` collection-form rows from the grid system through the AMQP ingest door
    (``linli.ingest``, plain pika with confirms) until reports counts every resident."""
    import json

    community = f"bench-door-{uuid.uuid4().hex[:6]}"
    rows = list(sample_rows(count, seed=count + 1, community=community, foreign_share=0.0))
    connection = pika.BlockingConnection(pika.URLParameters(bench.amqp_uri))
    channel = connection.channel()
    channel.confirm_delivery()
    properties = pika.BasicProperties(content_type="application/json", delivery_mode=2, app_id="grid-system")
    with bench.meter.phase("ingest", count, "message", budget=1.0) as phase:
        started = time.perf_counter()
        for number, row in enumerate(rows):
            body = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "urn:linli:bench:grid-system",
                    "type": "resident.form_submitted", "time": datetime.now(timezone.utc).isoformat(),
                    "datacontenttype": "application/json", "community": community,
                    "data": {"community_id": community, "row": dict(zip(FORM_HEADER, row)),
                             "form_reference": f"bench:{number}"}}
            channel.basic_publish("linli.ingest", "resident.form_submitted",
                                  json.dumps(body, ensure_ascii=False).encode(), properties)
        bench.wait_counted(phase, community, count)
        elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


def event_registrations(bench: Bench, community: str, residents: int, events: int,
                        clients: int) -> tuple[float, float, dict]:
    """``residents`` residents registering for ``events`` events at once: registrations per
    second, p99 latency, and how many were confirmed and waitlisted; commands counted until
    notifications has told each of them."""
    urls, headers = bench.urls, bench.headers
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

    told_before = bench.in_inboxes("registration_confirmed") + bench.in_inboxes("registration_waitlisted")
    with bench.meter.phase("events", len(resident_ids), "event registration", budget=12):
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(register, range(len(resident_ids))))
        elapsed = time.perf_counter() - started
        while (bench.in_inboxes("registration_confirmed") + bench.in_inboxes("registration_waitlisted")
               < told_before + len(results)):
            time.sleep(0.25)
    latencies = sorted(latency for latency, _ in results)
    outcomes = {status: sum(1 for _, s in results if s == status) for status in ("confirmed", "waitlisted")}
    return len(results) / elapsed, latencies[int(len(latencies) * 0.99) - 1], outcomes


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


def announcement(bench: Bench, residents: int) -> tuple[float, float]:
    """An event scheduled in a community of ``residents`` (their resident.registered put straight on
    notifications' queue first): inboxes per second until each has it, and the seconds it took."""
    community = f"bench-hall-{uuid.uuid4().hex[:6]}"
    _publish_registrations(bench.amqp_uri,
                           "evt-residents-resident.registered--notifications.on_resident_registered",
                           community, residents)
    while bench.notifications.audience.count_documents({"community_id": community}) < residents:
        time.sleep(0.5)  # every resident known to notifications before the clock starts
    bench.wait_inboxes("welcome", residents, community)
    starts = datetime.now(timezone.utc) + timedelta(days=7)
    body = {"community_id": community, "organiser": "neighbourhood_centre", "category": "food",
            "title": {"zh-CN": "国际美食节", "en": "International Food Festival"}, "venue": "社区广场",
            "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=4)).isoformat(),
            "capacity": 500, "audience": "community"}
    urls, headers = bench.urls, bench.headers
    [event_id] = requests.post(urls["events"] + "/events", json=body, headers=headers).json()["ids"]
    with bench.meter.phase("announce", residents, "inbox", budget=0.3):
        started = time.perf_counter()
        requests.post(f"{urls['events']}/events/{event_id}/schedule", headers=headers).raise_for_status()
        # The fan-out job's own record says when it is done (a small collection: polling it does not
        # load the database the way counting a growing notifications collection would); then one count.
        while not bench.notifications.fan_outs.find_one(
                {"kind": "event_announced", "query.community_id": community, "status": "done"}, {"_id": 1}):
            time.sleep(0.05)
        bench.wait_inboxes("event_announced", residents, community)
        elapsed = time.perf_counter() - started
    return residents / elapsed, elapsed


def reports_at_scale(bench: Bench, residents: int, reads: int = 1000) -> dict:
    """Summary and /health latency at ``residents`` residents, and the rebuild time."""
    import statistics

    urls, headers = bench.urls, bench.headers
    community = f"bench-city-{uuid.uuid4().hex[:6]}"
    with bench.meter.phase("reports", residents, "message") as phase:
        started = time.perf_counter()  # reports consumes while they are being published
        _publish_registrations(bench.amqp_uri, "linli-reports.on_message", community, residents)
        bench.wait_counted(phase, community, residents, interval_s=1)
        projected_in = time.perf_counter() - started

    def latencies(paths: list[str]) -> list[tuple[float, float]]:
        """p50 and p99 of each path, read in turn (so both see the same machine), after a warm-up."""
        times = {path: [] for path in paths}
        with requests.Session() as session:
            for round_ in range(reads + 20):
                for path in paths:
                    begun = time.perf_counter()
                    session.get(urls["reports"] + path, headers=headers).raise_for_status()
                    if round_ >= 20:
                        times[path].append(time.perf_counter() - begun)
        return [(statistics.median(sorted(t)), sorted(t)[int(len(t) * 0.99) - 1]) for t in times.values()]

    bench.settle()  # read once the projection's work is done, as a dashboard would be
    summary, health = latencies([f"/communities/{community}/summary", "/health"])
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
    parser.add_argument("--door-messages", type=int, default=2000, help="form rows through the AMQP ingest door")
    parser.add_argument("--registrations", type=int, default=2000, help="residents registering for events")
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--audience", type=int, nargs="+", default=[10_000, 50_000],
                        help="community sizes an event is announced to (the first is the reference for linearity)")
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
        bench = Bench(stack, urls, headers, amqp_uri)
        try:
            run_phases(bench, args, base_rate)
        finally:
            stack.stop()
    finally:
        rabbitmqctl("delete_vhost", vhost)


def run_phases(bench: Bench, args, base_rate: float) -> None:
    store_rate = bench.store_rate()
    print(f"store     SecantusDB insert_many (1,000 a batch)      20000 docs   {store_rate:10.1f} docs/s")
    rate, latency = skeleton(bench, args.residents, args.clients)
    print(f"skeleton  POST /residents -> counted and welcomed  {args.residents:>6} residents "
          f"{rate:7.1f} residents/s   (one alone, until counted: {latency * 1000:.0f} ms median of 5)")
    print(f"ratio     skeleton / baseline = {rate / base_rate:.4f}   (the raw broker is {base_rate / rate:.1f}x faster)")
    print(f"          {bench.settle()}")
    form_rate, import_rate, community = form_import(bench, args.form_rows)
    print(f"import    collection form -> counted and welcomed {args.form_rows:>6} rows "
          f"{form_rate:9.1f} rows/s   (the import job alone: {import_rate:.1f} rows/s; goal 1000)")
    print(f"ratio     import / baseline = {form_rate / base_rate:.4f}   import / store insert_many = "
          f"{form_rate / store_rate:.4f}")
    print(f"          {bench.settle()}")
    rate = ingest_door(bench, args.door_messages)
    print(f"ingest    form rows through the AMQP ingest door -> counted {args.door_messages:>6} messages "
          f"{rate:9.1f} msgs/s   (goal 1000)")
    print(f"ratio     ingest door / baseline = {rate / base_rate:.4f}   ingest door / store insert_many = "
          f"{rate / store_rate:.4f}")
    print(f"          {bench.settle()}")
    rate, p99, outcomes = event_registrations(bench, community, args.registrations, args.events, args.clients * 2)
    print(f"events    {args.registrations} residents register for {args.events} events at once ({args.clients * 2} "
          f"clients) {rate:9.1f} registrations/s   p99 {p99 * 1000:.0f} ms   (goal 300/s, p99 100 ms; "
          f"{outcomes['confirmed']} confirmed, {outcomes['waitlisted']} waitlisted)")
    print(f"ratio     registrations / baseline = {rate / base_rate:.4f}")
    print(f"          {bench.settle()}")
    reference = None
    for audience in args.audience:
        rate, elapsed = announcement(bench, audience)
        linear = ""
        if reference is None:
            reference = (audience, elapsed)
        else:
            linear = (f"; {elapsed / reference[1]:.2f}x the time of {reference[0]} for {audience / reference[0]:.0f}x "
                      f"the inboxes (goal ≤ 6x for 5x)")
        print(f"announce  event scheduled -> in every inbox      {audience:>6} residents "
              f"{rate:7.1f} inboxes/s   (goal 4000/s){linear}")
        print(f"ratio     announcement / baseline = {rate / base_rate:.4f}   announcement / store insert_many = "
              f"{rate / store_rate:.4f}")
        print(f"          {bench.settle()}")
    scale = reports_at_scale(bench, args.reports_residents)
    (s50, s99), (h50, h99) = scale["summary"], scale["health"]
    print(f"reports   {args.reports_residents} resident.registered projected "
          f"{scale['projected_per_s']:9.1f} msgs/s   ratio to baseline {scale['projected_per_s'] / base_rate:.4f}")
    print(f"summary   GET /communities/<id>/summary at {args.reports_residents} residents: "
          f"p50 {s50 * 1000:.1f} ms, p99 {s99 * 1000:.1f} ms   (/health: p50 {h50 * 1000:.1f} ms, "
          f"p99 {h99 * 1000:.1f} ms; p99 ratio {s99 / h99:.1f}x, goal ≤ 2x)")
    print(f"rebuild   every projection from {scale['rebuild_messages']} messages of history "
          f"in {scale['rebuild_s']:.1f} s ({scale['rebuild_messages'] / scale['rebuild_s']:.0f} msgs/s)")


if __name__ == "__main__":
    main()
