"""Faults on purpose, each test ending with a count: sent, processed, duplicated (0), lost (0).

Reports is the consumer under test: every message it takes adds one resident
to a counter, so a lost message shows as a shortfall and a doubled effect as
an excess, and its history holds one entry per envelope id.
"""
import signal
import time

import pymongo
import pytest

from tests.chaos.conftest import publish, queue_depth, registrations, wait_for

pytestmark = pytest.mark.chaos
QUEUE = "linli-reports.on_message"


def counted_by(service, community) -> int:
    summary = service.get(f"/communities/{community}/summary")
    return summary.json()["residents_total"] if summary.status_code == 200 else 0


def tally(service, mongo, db_prefix, community, sent):
    """(processed, duplicated, lost), from the projection and the history."""
    counted = counted_by(service, community)
    client = pymongo.MongoClient(mongo.uri)
    try:
        history = client[f"{db_prefix}reports"]["history"].count_documents({"wire.data.community_id": community})
    finally:
        client.close()
    return counted, max(0, counted - sent), max(0, sent - counted), history


def settled(service, mongo, db_prefix, community, sent, amqp_uri):
    def done():
        counted, *_ = tally(service, mongo, db_prefix, community, sent)
        return counted >= sent and queue_depth(amqp_uri, QUEUE) == 0

    wait_for(done, 300, f"{sent} messages to be counted", every_s=1)
    time.sleep(2)  # anything that was going to be doubled has been by now
    counted, duplicated, lost, history = tally(service, mongo, db_prefix, community, sent)
    assert (counted, duplicated, lost) == (sent, 0, 0), \
        f"sent {sent}, processed {counted}, duplicated {duplicated}, lost {lost}"
    assert queue_depth(amqp_uri, QUEUE + ".dead-letter") == 0
    return history


def test_kill_9_in_the_middle_of_10000_messages_loses_and_doubles_nothing(services, amqp_uri, mongo, db_prefix):
    reports = services("reports", "ReportsService")
    reports.start()
    publish(amqp_uri, registrations("chaos-kill", 10_000))
    # Polled often and cheaply (the summary, not the history): batches of 200 go by quickly.
    wait_for(lambda: 1_000 < counted_by(reports, "chaos-kill"), 300, "a tenth to be handled", every_s=0.05)
    reports.kill(signal.SIGKILL)
    client = pymongo.MongoClient(mongo.uri)
    in_the_middle = client[f"{db_prefix}reports"]["history"].count_documents({"wire.data.community_id": "chaos-kill"})
    client.close()
    assert in_the_middle < 10_000, "the kill came too late to prove anything"
    reports.start()
    assert settled(reports, mongo, db_prefix, "chaos-kill", 10_000, amqp_uri) == 10_000


def test_a_database_outage_of_ten_seconds_is_waited_out_not_dead_lettered(services, amqp_uri, mongo, db_prefix):
    reports = services("reports", "ReportsService")
    reports.start()
    publish(amqp_uri, registrations("chaos-db", 300))
    wait_for(lambda: tally(reports, mongo, db_prefix, "chaos-db", 300)[0] == 300, 120, "the first 300")
    mongo.stop()
    publish(amqp_uri, registrations("chaos-db", 300, start=300))
    answer = reports.get("/communities/chaos-db/summary")
    assert answer.status_code == 503 and answer.json()["error"] == "database_unavailable"
    time.sleep(10)
    mongo.start()
    settled(reports, mongo, db_prefix, "chaos-db", 600, amqp_uri)


def test_sigterm_under_load_finishes_in_flight_work_and_loses_nothing(services, amqp_uri, mongo, db_prefix):
    reports = services("reports", "ReportsService")
    reports.start()
    publish(amqp_uri, registrations("chaos-term", 5_000))
    wait_for(lambda: 500 < tally(reports, mongo, db_prefix, "chaos-term", 5_000)[0], 300, "some to be handled")
    started = time.monotonic()
    assert reports.kill(signal.SIGTERM) == 0, "a graceful stop exits cleanly"
    stopped_in = time.monotonic() - started
    assert stopped_in < 60, f"stopping took {stopped_in:.0f} s"
    reports.start()
    settled(reports, mongo, db_prefix, "chaos-term", 5_000, amqp_uri)


def test_two_instances_competing_for_the_queue_count_like_one(services, amqp_uri, mongo, db_prefix):
    first, second = services("reports", "ReportsService"), services("reports", "ReportsService")
    first.start()
    second.start()
    publish(amqp_uri, registrations("chaos-two", 5_000))
    settled(first, mongo, db_prefix, "chaos-two", 5_000, amqp_uri)
    assert second.get("/communities/chaos-two/summary").json()["residents_total"] == 5_000
