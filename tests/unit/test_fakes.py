"""Every fake store offers what its use cases call, with the real store's signatures: a fake that drifts
from the real store would let a unit test pass on a call the service cannot make."""
import pytest

from services.cases.store import CasesStore
from services.events.store import EventsStore
from services.notifications.store import FanOuts
from services.reports.store import ReportsStore
from services.residents.store import ResidentsStore
from tests.unit.fakes import interface
from tests.unit.fakes.cases_store import FakeCasesStore
from tests.unit.fakes.events_store import FakeEventsStore
from tests.unit.fakes.fan_outs import FakeFanOuts
from tests.unit.fakes.reports_store import FakeReportsStore
from tests.unit.fakes.residents_store import FakeResidentsStore

WHOLE = [(FakeEventsStore, EventsStore), (FakeReportsStore, ReportsStore), (FakeCasesStore, CasesStore)]
# Fakes of part of a store (the rest is tested on the database): each of the real store's methods they have
# takes the same parameters (their other methods are the test's own: seeding, what was told).
PART = [(FakeResidentsStore, ResidentsStore), (FakeFanOuts, FanOuts)]


@pytest.mark.parametrize("fake, real", WHOLE, ids=lambda cls: cls.__name__)
def test_a_whole_fake_has_exactly_the_real_stores_methods(fake, real):
    assert interface(fake) == interface(real)


@pytest.mark.parametrize("fake, real", PART, ids=lambda cls: cls.__name__)
def test_a_partial_fake_takes_the_real_stores_parameters(fake, real):
    real_methods, fake_methods = interface(real), interface(fake)
    shared = set(real_methods) & set(fake_methods)
    assert shared, f"{fake.__name__} fakes nothing of {real.__name__}"
    assert {name: fake_methods[name] for name in shared} == {name: real_methods[name] for name in shared}
