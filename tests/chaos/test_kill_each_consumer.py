"""kill -9 of each service's consumer in the middle of a stream of messages, then a restart.

Reports has its own test in test_faults.py (10,000 messages). Here, 2,000 each
(10,000 through the ingest door and its transactions would add a quarter of an
hour to CI on one SecantusDB): notifications (``resident.registered`` → exactly
one welcome each), residents (form rows at the ingest door → exactly one
resident each) and events (proposals → exactly one draft each). Each ends with sent, processed, duplicated (0), lost (0),
counted as effects in the service's own database, and nothing parked.
"""
import signal
import time
from datetime import datetime, timedelta, timezone

import pymongo
import pytest

from tests.chaos.conftest import publish, queue_depth, registrations, wait_for

pytestmark = pytest.mark.chaos
N = 2_000  # reports takes 10,000 in test_faults.py; these three at 2,000 keep CI within bounds
COMMUNITY = "chaos-kill"
SOURCE = "grid-system/chaos-kill"


def form_row(number):
    return {"community_id": COMMUNITY, "form_reference": f"kill:{number}",
            "row": {"name": f"Resident {number:05d}", "residence_type": "registered", "nationality": "CN",
                    "preferred_language": "zh-CN", "grid": "chaos-01"}}


def proposal(number):
    starts = datetime.now(timezone.utc) + timedelta(days=10, minutes=number)
    return {"community_id": COMMUNITY, "organiser": "foreign_resident_service_centre", "category": "culture",
            "title": {"zh-CN": f"文化分享会 {number}", "en": f"Cultural sharing session {number}"},
            "venue": "桐梓林社区活动中心", "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=2)).isoformat(), "capacity": 40,
            "proposal_reference": f"kill:{number}"}


def through_the_ingest_door(amqp_uri, type_name, make):
    from contracts.client import Publisher

    with Publisher(amqp_uri, SOURCE) as publisher:
        for number in range(N):
            publisher.publish(type_name, make(number))


# service, class, how the 10,000 arrive, the queue they wait in, (collection, query) of the effect
CASES = {
    "notifications": ("NotificationsService",
                      lambda uri: publish(uri, registrations(COMMUNITY, N)),
                      "evt-residents-resident.registered--notifications.on_resident_registered",
                      ("notifications", {"community_id": COMMUNITY, "kind": "welcome"})),
    "residents": ("ResidentsService",
                  lambda uri: through_the_ingest_door(uri, "resident.form_submitted", form_row),
                  "linli-residents.ingest.resident.form_submitted",
                  ("residents", {"community_id": COMMUNITY})),
    "events": ("EventsService",
               lambda uri: through_the_ingest_door(uri, "event.proposed", proposal),
               "linli-events.ingest.event.proposed",
               ("events", {"community_id": COMMUNITY})),
}


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", list(CASES))
def test_kill_9_of_a_consumer_in_the_middle_of_the_stream_loses_and_doubles_nothing(
        name, services, amqp_uri, mongo, db_prefix):
    from tests.conftest import TEST_DATA_KEY

    cls, send, queue, (collection, query) = CASES[name]
    service = services(name, cls)
    service.env = {**service.env, "LINLI_RESIDENTS_DATA_KEY": TEST_DATA_KEY}
    service.start()
    send(amqp_uri)
    client = pymongo.MongoClient(mongo.uri)
    effects = client[f"{db_prefix}{name}"][collection]
    try:
        wait_for(lambda: effects.count_documents(query) > N // 10, 600, "a tenth to be handled", every_s=0.05)
        service.kill(signal.SIGKILL)
        in_the_middle = effects.count_documents(query)
        assert in_the_middle < N, "the kill came too late to prove anything"
        service.start()
        wait_for(lambda: effects.count_documents(query) >= N and queue_depth(amqp_uri, queue) == 0, 900,
                 f"{N} effects", every_s=2)
        time.sleep(3)  # anything that was going to be doubled has been by now
        processed = effects.count_documents(query)
        duplicated, lost = max(0, processed - N), max(0, N - processed)
        print(f"{name}: killed at {in_the_middle}; sent {N}, processed {processed}, "
              f"duplicated {duplicated}, lost {lost}")
        assert (processed, duplicated, lost) == (N, 0, 0)
        if name == "notifications":  # one welcome per resident, not two for one and none for another
            assert len(effects.distinct("recipient", query)) == N
        parked = {q: queue_depth(amqp_uri, q) for q in
                  (f"{queue}.dead-letter" if name == "notifications" else "linli.ingest.rejected",)}
        assert parked == {next(iter(parked)): 0}, f"messages parked: {parked}"
    finally:
        client.close()
