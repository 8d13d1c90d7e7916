"""A fact stored is a fact published: a service dies at each of the two places a crash could lose
or repeat a message (``outbox:after-commit``: stored, nothing sent; ``outbox:after-publish``: one
sent, not marked), comes back, and each test ends with a count: stored N, published N,
duplicated 0 (no fact announced under two ids), lost 0. A message sent again under its own id
(what consumers skip) is allowed, and counted apart."""
import json
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pika
import pymongo
import pytest
import requests
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.auth import issue_token
from services.common.outbox import backlog
from tests.chaos.conftest import publish, registrations, wait_for
from tests.conftest import TEST_DATA_KEY, TEST_SECRET
from tests.data.sample_form import form_csv

pytestmark = pytest.mark.chaos
CRASH_POINTS = ["outbox:after-commit", "outbox:after-publish"]
WRITER = ["residents:read", "residents:write", "events:read", "events:write"]


@pytest.fixture
def tap(amqp_uri):
    """``tap(service)``: every message ``service`` publishes from now on; call ``.received()`` for what came."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()

    class Tap:
        def __init__(self, service):
            channel.exchange_declare(f"{service}.events", "topic", durable=True)
            self.queue = channel.queue_declare("", exclusive=True).method.queue
            channel.queue_bind(self.queue, f"{service}.events", "#")
            self.seen = []

        def received(self):
            while (got := channel.basic_get(self.queue, auto_ack=True))[0] is not None:
                self.seen.append(json.loads(got[2]))
            return self.seen

    yield Tap
    connection.close()


def headers():
    return {"Authorization": f"Bearer {issue_token(TEST_SECRET, subject='chaos', scopes=WRITER, communities=['*'])}"}


def call(method, url, **kwargs):
    """An HTTP call to a service that may die before it answers: what matters is what it stored."""
    try:
        return requests.request(method, url, timeout=30, headers=headers(), **kwargs)
    except requests.ConnectionError:
        return None


def with_failpoint(service, failpoint):
    service.env = {**service.env, "LINLI_FAILPOINT": failpoint}


def without_failpoint(service):
    service.env = {k: v for k, v in service.env.items() if k != "LINLI_FAILPOINT"}


def count(stored: set, messages: list, fact_of) -> tuple[int, int, int, int, int]:
    """(stored, published, duplicated, lost, repeats): ``fact_of(message)`` names the fact a message announces."""
    ids_of, deliveries = defaultdict(set), 0
    for message in messages:
        fact = fact_of(message)
        if fact in stored:
            ids_of[fact].add(message["id"])
            deliveries += 1
    published = len(ids_of)
    duplicated = sum(len(ids) - 1 for ids in ids_of.values())
    return len(stored), published, duplicated, len(stored - set(ids_of)), deliveries - published


def settle(tap, stored: set, fact_of, database, what, within_s=120) -> tuple:
    """Wait until every stored fact was published (or ``within_s``), then count."""
    deadline = time.monotonic() + within_s
    while not {fact_of(m) for m in tap.received()} >= stored and time.monotonic() < deadline:
        time.sleep(0.5)
    wait_for(lambda: backlog(database).pending == 0, 60, "the outbox to be marked sent")
    time.sleep(1)  # a repeat the relay sent last has landed
    tallied = count(stored, tap.received(), fact_of)
    print(f"\n{what}: stored {tallied[0]}, published {tallied[1]}, duplicated {tallied[2]}, lost {tallied[3]} "
          f"(sent again under the same id: {tallied[4]})")
    assert tallied[:4] == (len(stored), len(stored), 0, 0), \
        "{}: stored {}, published {}, duplicated {}, lost {}".format(what, *tallied[:4])
    return tallied


def crashed(service, failpoint):
    assert service.process.wait(60) == 137, f"the failpoint {failpoint} did not fire"


@pytest.fixture
def residents(services):
    service = services("residents", "ResidentsService")
    service.env = {**service.env, "LINLI_RESIDENTS_DATA_KEY": TEST_DATA_KEY}
    return service


@pytest.fixture
def database(mongo, db_prefix):
    client = pymongo.MongoClient(mongo.uri)
    yield lambda service: client[f"{db_prefix}{service}"]
    client.close()


@pytest.mark.parametrize("failpoint", CRASH_POINTS)
def test_a_registration_is_announced_even_if_the_process_dies(residents, database, tap, failpoint):
    bus = tap("residents")
    with_failpoint(residents, failpoint)
    residents.start()
    call("POST", f"http://{residents.address}/residents",
         json={"community_id": "tongzilin", "name": "王芳", "residence_type": "registered", "nationality": "CN",
               "preferred_language": "zh-CN"})
    crashed(residents, failpoint)
    stored = {str(r["_id"]) for r in database("residents")["residents"].find({"name": "王芳"}, {"_id": 1})}
    assert len(stored) == 1, "the registration was stored before the crash"

    without_failpoint(residents)
    residents.start()
    settle(bus, stored, lambda m: m["type"] == "resident.registered" and m["subject"], database("residents"),
           "registration")


@pytest.mark.parametrize("failpoint", CRASH_POINTS)
def test_a_bulk_import_announces_every_resident_once_even_if_the_process_dies(residents, database, tap, failpoint):
    rows = 1_200  # three batches: the crash comes after the first commits
    bus = tap("residents")
    with_failpoint(residents, failpoint)
    residents.start()
    accepted = call("POST", f"http://{residents.address}/residents/imports", data=form_csv(rows, seed=808),
                    params={"filename": "chaos.csv"})
    assert accepted is not None and accepted.status_code == 202, "the form is stored before the import runs"
    crashed(residents, failpoint)
    import_id = accepted.json()["id"]
    store = database("residents")
    before = store["residents"].count_documents({"import_id": import_id})
    assert 0 < before < rows, f"the crash came in the middle of the import ({before} of {rows} stored)"

    without_failpoint(residents)
    residents.start()  # the unacknowledged run_import is delivered again and resumes
    wait_for(lambda: store["imports"].find_one({"status": "completed"}), 180, "the import to complete")
    stored = {str(r["_id"]) for r in store["residents"].find({"import_id": import_id}, {"_id": 1})}
    job = store["imports"].find_one()
    assert (len(stored), job["registered"], job["already_registered"], job["rejected"]) == (rows, rows, 0, 0), \
        "each batch and its progress commit together: no row counted twice"
    settle(bus, stored, lambda m: m["type"] == "resident.registered" and m["subject"], store, "bulk import")
    completed = {m["id"] for m in bus.received() if m["type"] == "resident.import_completed"}
    assert len(completed) == 1


def festival():
    starts = datetime.now(timezone.utc) + timedelta(days=10)
    return {"community_id": "tongzilin", "organiser": "foreign_resident_service_centre", "category": "food",
            "title": {"zh-CN": "国际美食节", "en": "International Food Festival"}, "venue": "桐梓林社区广场",
            "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=4)).isoformat(), "capacity": 2,
            "audience": "community"}


@pytest.mark.parametrize("failpoint", CRASH_POINTS)
def test_an_event_registration_is_announced_even_if_the_process_dies(services, residents, database, tap, failpoint):
    bus = tap("events")
    residents.start()
    people = [call("POST", f"http://{residents.address}/residents",
                   json={"community_id": "tongzilin", "name": name, "residence_type": "registered",
                         "nationality": "CN", "preferred_language": "zh-CN"}).json()["id"]
              for name in ("李雷", "韩梅梅", "张伟")]
    events = services("events", "EventsService")
    events.start()
    event_id = call("POST", f"http://{events.address}/events", json=festival()).json()["ids"][0]
    assert call("POST", f"http://{events.address}/events/{event_id}/schedule").status_code == 200
    events.kill()

    with_failpoint(events, failpoint)
    events.start()
    call("POST", f"http://{events.address}/events/{event_id}/registrations", json={"resident_id": people[0]})
    crashed(events, failpoint)
    store = database("events")
    assert store["registrations"].count_documents({}) == 1, "the registration was stored before the crash"

    without_failpoint(events)
    events.start()
    for resident_id in people[1:]:  # the third is waitlisted: capacity 2
        assert call("POST", f"http://{events.address}/events/{event_id}/registrations",
                    json={"resident_id": resident_id}).status_code == 201
    stored = {str(r["_id"]) for r in store["registrations"].find({}, {"_id": 1})}
    announced = ("registration.confirmed", "registration.waitlisted")
    settle(bus, stored, lambda m: m["type"] in announced and m["data"]["registration_id"], store,
           "event registration")
    assert store["events"].find_one()["places_left"] == 0


@pytest.mark.parametrize("failpoint", CRASH_POINTS)
def test_the_monthly_assessment_is_published_even_if_the_process_dies(services, database, tap, amqp_uri,
                                                                     failpoint):
    communities = ["chaos-a", "chaos-b", "chaos-c"]
    bus = tap("reports")
    reports = services("reports", "ReportsService")
    with_failpoint(reports, failpoint)
    reports.start()
    for community in communities:
        publish(amqp_uri, registrations(community, 3))
    wait_for(lambda: all(reports.get(f"/communities/{c}/summary").status_code == 200 for c in communities), 60,
             "reports to know the communities")
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}) as rpc:
        rpc.reports.assess.call_async("2026-11")
        crashed(reports, failpoint)
    store = database("reports")
    stored = {r["wire"]["community"] for r in store["outbox"].find({"type": "community.assessed"})}
    assert stored == set(communities), "the assessment was stored (in the outbox) before the crash"

    without_failpoint(reports)
    reports.start()  # the relay sends what the dead process left; the unanswered call may run again
    settle(bus, stored, lambda m: m["type"] == "community.assessed" and m["data"]["community_id"], store,
           "assessment")
