"""What a registration costs the events service in database commands (issue #15), and that
registrations racing for one event's places neither overbook it nor abort transactions."""
import eventlet
import pytest

from services.common.mongo import DB_COMMANDS, DB_TRANSACTIONS_ABORTED
from services.common.outbox import Outbox
from services.events.service import EventsService
from tests.integration.test_events import start_platform

pytestmark = pytest.mark.integration


def _samples(counter, service: str) -> dict[str, float]:
    """A counter's ``*_total`` values of one service, by their other label, read from the counter alone:
    a scrape of the whole registry would read the outbox backlog, itself commands of the service."""
    return {sample.labels.get("command", ""): sample.value for family in counter.collect()
            for sample in family.samples if sample.name.endswith("_total") and sample.labels["service"] == service}


def commands(service: str = "events") -> dict[str, float]:
    return _samples(DB_COMMANDS, service)


def aborted(service: str = "events") -> float:
    return sum(_samples(DB_TRANSACTIONS_ABORTED, service).values())


def spent(before: dict[str, float], service: str = "events") -> dict[str, float]:
    after = commands(service)
    return {name: n - before.get(name, 0) for name, n in after.items() if n > before.get(name, 0)}


class QuietEvents(EventsService):
    """Events whose outbox relay loop and offer-expiry timer do not wake during a test: their commands
    would be counted too."""

    outbox = Outbox("events", relay_every_s=3600)

    def expire_offers_regularly(self):  # no @timer: not an entrypoint
        pass


@pytest.fixture
def platform(container_factory, config, free_port, token):
    return start_platform(container_factory, config, free_port, token, events_cls=QuietEvents)


def test_one_registration_costs_six_commands_and_a_waitlisted_one_seven(platform):
    """In one transaction: the event's place or waitlist number (one conditional write), the registration
    (one upsert), its outbox record, the commit; after it, the outbox publishes and marks the record
    sent. A waitlisted registration also counts its position. The event's community (who may register
    for it) is read once per process and kept: it never changes."""
    event_id = platform.scheduled_event(capacity=1)
    confirmed, waitlisted = platform.resident("甲"), platform.resident("乙")
    costs = {}
    for resident_id, outcome in ((confirmed, "confirmed"), (waitlisted, "waitlisted")):
        before = commands()
        response = platform.register(event_id, resident_id)
        assert response.json()["status"] == outcome, response.text
        costs[outcome] = spent(before)
    assert costs["confirmed"] == {"findAndModify": 2, "update": 2, "commitTransaction": 1, "find": 1}, costs
    assert costs["waitlisted"] == {**costs["confirmed"], "aggregate": 1}, costs


def test_concurrent_registrations_never_overbook_and_abort_nothing(platform):
    """Registrations of one event take their turn in a process, so none is aborted by a write conflict
    on the event's document. (Instances in other processes can conflict: pymongo retries the loser,
    whose competitor commits meanwhile; each retry is counted in linli_db_transactions_aborted_total.)"""
    event_id = platform.scheduled_event(capacity=5)
    residents = [platform.resident(f"居民{i}") for i in range(40)]
    aborted_before, before = aborted(), commands()
    pool = eventlet.GreenPool(16)
    results = list(pool.imap(lambda rid: platform.register(event_id, rid).json(), residents))
    assert sorted(r["status"] for r in results).count("confirmed") == 5
    positions = sorted(r["waitlist_position"] for r in results if r["status"] == "waitlisted")
    assert positions == list(range(1, 36))
    assert aborted() - aborted_before == 0
    assert sum(spent(before).values()) <= 5 * 6 + 35 * 7  # nothing done twice
    assert platform.events("GET", f"/events/{event_id}").json()["places_left"] == 0
