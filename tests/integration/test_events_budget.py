"""What a registration costs the events service in database commands (issue #15), and that
registrations racing for one event's places neither overbook it nor abort transactions."""
import eventlet
import pytest

from services.common.mongo import DB_COMMANDS, DB_TRANSACTIONS_ABORTED
from services.common.outbox import Outbox
from services.events.service import EventsService
from tests.integration.test_events import start_platform

pytestmark = pytest.mark.integration
COMMANDS = ("find", "insert", "update", "delete", "findAndModify", "aggregate", "count", "getMore",
            "commitTransaction", "abortTransaction")


def _counted(counter, **labels) -> float:
    """One counter's value, read from the counter alone: a scrape of the whole registry would
    read the outbox backlog, itself commands of the service."""
    return sum(sample.value for family in counter.collect() for sample in family.samples
               if sample.name.endswith("_total") and all(sample.labels.get(k) == v for k, v in labels.items()))


def commands(service: str = "events") -> dict[str, float]:
    return {name: _counted(DB_COMMANDS, service=service, command=name) for name in COMMANDS}


def aborted(service: str = "events") -> float:
    return _counted(DB_TRANSACTIONS_ABORTED, service=service)


def spent(before: dict[str, float], service: str = "events") -> dict[str, float]:
    after = commands(service)
    return {name: after[name] - before[name] for name in COMMANDS if after[name] > before[name]}


class QuietEvents(EventsService):
    """Events whose outbox relay loop does not wake during a test: its commands would be counted too."""

    outbox = Outbox("events", relay_every_s=3600)


@pytest.fixture
def platform(container_factory, config, free_port, token):
    return start_platform(container_factory, config, free_port, token, events_cls=QuietEvents)


def test_one_registration_costs_a_handful_of_commands(platform):
    event_id = platform.scheduled_event(capacity=2)
    first, second, third = (platform.resident(name) for name in ("甲", "乙", "丙"))
    costs = {}
    for resident_id, label in ((first, "first"), (second, "confirmed"), (third, "waitlisted")):
        before = commands()
        response = platform.register(event_id, resident_id)
        assert response.status_code == 201, response.text
        costs[label] = spent(before)
    print(costs)
    assert sum(costs["confirmed"].values()) <= 6, costs
    assert sum(costs["waitlisted"].values()) <= 7, costs
    assert sum(costs["first"].values()) <= 7, costs  # the event's community, looked up once


def test_concurrent_registrations_never_overbook_and_abort_nothing(platform):
    event_id = platform.scheduled_event(capacity=5)
    residents = [platform.resident(f"居民{i}") for i in range(40)]
    aborted_before = aborted()
    pool = eventlet.GreenPool(16)
    results = list(pool.imap(lambda rid: platform.register(event_id, rid).json(), residents))
    assert sorted(r["status"] for r in results).count("confirmed") == 5
    positions = sorted(r["waitlist_position"] for r in results if r["status"] == "waitlisted")
    assert positions == list(range(1, 36))
    assert platform.events("GET", f"/events/{event_id}").json()["places_left"] == 0
    assert aborted() - aborted_before == 0
