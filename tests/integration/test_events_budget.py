"""What a registration and a batch of ingested proposals cost the events service in database commands
(issue #15), and that registrations racing for one event's places neither overbook it nor abort transactions."""
import json
from datetime import datetime, timedelta, timezone

import eventlet
import pytest
from nameko.testing.services import entrypoint_hook

from services.common.ingest import IngestRejected, check_body
from services.common.outbox import OUTBOX, Outbox
from services.events.service import EventsService
from tests.integration.budgets import aborted, commands, spent
from tests.integration.test_events import start_platform
from tests.integration.test_ingest import proposal
from tests.waiting import until

pytestmark = pytest.mark.integration


class QuietEvents(EventsService):
    """Events whose outbox relay loop and offer-expiry timer do not wake during a test: their commands
    would be counted too."""

    outbox = Outbox("events", poll_every_s=3600)

    def expire_offers_regularly(self):  # no @timer: not an entrypoint
        pass


@pytest.fixture
def platform(container_factory, config, free_port, token, mongo_client):
    platform = start_platform(container_factory, config, free_port, token, events_cls=QuietEvents)
    platform.outbox = mongo_client[config["MONGO_DB_PREFIX"] + "events"][OUTBOX]
    return platform


def test_one_registration_costs_five_commands_and_a_waitlisted_one_six(platform):
    """In one transaction: the event's place or waitlist number (one conditional write), the registration
    (one upsert), its outbox record, the commit; after it, the outbox publishes from memory (no read-back:
    it saw the commit) and deletes the record. A waitlisted registration also counts its position. The
    event's community (who may register for it) is read once per process and kept: it never changes."""
    event_id = platform.scheduled_event(capacity=1)
    until(lambda: platform.outbox.count_documents({}) == 0, "the event's own messages sent", timeout_s=30)
    confirmed, waitlisted = platform.resident("甲"), platform.resident("乙")
    costs = {}
    for resident_id, outcome in ((confirmed, "confirmed"), (waitlisted, "waitlisted")):
        before = commands("events")
        response = platform.register(event_id, resident_id)
        assert response.json()["status"] == outcome, response.text
        until(lambda: platform.outbox.count_documents({}) == 0, "the registration's message sent", timeout_s=30)
        eventlet.sleep(0.2)  # the relay's delete, counted once it answered
        costs[outcome] = spent(before, commands("events"))
    print(f"\nconfirmed: {costs['confirmed']}\nwaitlisted: {costs['waitlisted']}")
    assert costs["confirmed"] == {"findAndModify": 2, "insert": 1, "commitTransaction": 1, "delete": 1}, costs
    assert costs["waitlisted"] == {**costs["confirmed"], "aggregate": 1}, costs


def test_concurrent_registrations_never_overbook_and_abort_nothing(platform):
    """Registrations of one event take their turn in a process, so none is aborted by a write conflict
    on the event's document. (Instances in other processes can conflict: pymongo retries the loser,
    whose competitor commits meanwhile; each retry is counted in linli_db_transactions_aborted_total.)"""
    event_id = platform.scheduled_event(capacity=5)
    residents = [platform.resident(f"居民{i}") for i in range(40)]
    aborted_before, before = aborted("events"), commands("events")
    pool = eventlet.GreenPool(16)
    results = list(pool.imap(lambda rid: platform.register(event_id, rid).json(), residents))
    assert sorted(r["status"] for r in results).count("confirmed") == 5
    positions = sorted(r["waitlist_position"] for r in results if r["status"] == "waitlisted")
    assert positions == list(range(1, 36))
    assert aborted("events") - aborted_before == 0
    assert sum(spent(before, commands("events")).values()) <= 5 * 6 + 35 * 7  # nothing done twice
    assert platform.events("GET", f"/events/{event_id}").json()["places_left"] == 0


def test_a_batch_of_proposals_costs_four_commands_whatever_its_size(container_factory, config, mongo_client):
    """The ingest door's ``event.proposed``: a batch looks up which messages it has seen (one find), inserts
    the drafts and the records of what was ingested (an insert each) and commits; a proposal that breaks
    a rule is parked, not recorded. The same batch again (a redelivery) is answered from the records."""
    container = container_factory(QuietEvents, config)
    container.start()

    def ingest(envelopes):
        before = commands("events")
        with entrypoint_hook(container, "ingest_proposal") as ingest_proposal:
            outcomes = ingest_proposal(envelopes)
        return outcomes, spent(before, commands("events"))

    def batch(first, size):
        past = datetime.now(timezone.utc) - timedelta(days=1)
        bodies = [proposal(n) for n in range(first, first + size - 1)] + [
            proposal(first, starts_at=past.isoformat(), ends_at=(past + timedelta(hours=2)).isoformat())]
        return [check_body(json.dumps(body).encode(), "application/json", "event.proposed") for body in bodies]

    few, many = batch(0, 5), batch(100, 200)
    (_, few_cost), (outcomes, many_cost) = ingest(few), ingest(many)
    print(f"\n5 proposals: {few_cost}\n200 proposals: {many_cost}")
    assert few_cost == many_cost == {"find": 1, "insert": 2, "commitTransaction": 1}, (few_cost, many_cost)
    assert [o["outcome"] for o in outcomes[:-1]] == ["draft_created"] * 199
    assert isinstance(outcomes[-1], IngestRejected) and outcomes[-1].codes == ["event_in_the_past"]

    again, again_cost = ingest(many)
    assert again[:-1] == outcomes[:-1] and again_cost == {"find": 1}, again_cost
    drafts = mongo_client[config["MONGO_DB_PREFIX"] + "events"]["events"]
    assert drafts.count_documents({"status": "draft"}) == 4 + 199
