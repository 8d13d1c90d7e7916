"""``GET /events`` pages (issue #14, item 9): it used to stop at 500 without a word."""
import pytest

from tests.conftest import free_port, make_token
from tests.integration.test_events import festival, platform, start_platform  # noqa: F401

pytestmark = pytest.mark.integration
SERIES, WEEKS = 11, 46  # 506 events; each series starts at the same times, so start times tie


@pytest.fixture(scope="module")
def shared_platform(module_container_factory, module_config):
    """One platform for the tests that only read: a refused page changes nothing."""
    return start_platform(module_container_factory, module_config, free_port, make_token)


def create_events(platform) -> set[str]:
    ids = set()
    for number in range(SERIES):
        response = platform.events("POST", "/events", json=festival(venue=f"hall {number}",
                                                                   recurrence={"weekly": True, "count": WEEKS}))
        assert response.status_code == 201, response.text
        ids.update(response.json()["ids"])
    return ids


def walk(platform, **params) -> tuple[list[str], int]:
    """Every event id, following ``next``; and how many pages that took."""
    seen, pages, after = [], 0, None
    while True:
        response = platform.events("GET", "/events", params={"community_id": "tongzilin", "after": after, **params})
        assert response.status_code == 200, response.text
        answer = response.json()
        seen += [item["id"] for item in answer["items"]]
        pages += 1
        after = answer["next"]
        if after is None:
            return seen, pages


def test_more_events_than_a_page_are_all_listed_once(platform):
    created = create_events(platform)
    assert len(created) > 500
    first = platform.events("GET", "/events", params={"community_id": "tongzilin", "limit": 500}).json()
    assert len(first["items"]) == 500 and first["next"]
    seen, pages = walk(platform, limit=500)
    assert pages == 2 and len(seen) == len(set(seen)) and set(seen) == created
    seen, pages = walk(platform, limit=7)  # page boundaries inside runs of equal start times
    assert len(seen) == len(set(seen)) and set(seen) == created
    starts = [item["starts_at"] for item in platform.events(
        "GET", "/events", params={"community_id": "tongzilin", "limit": 60}).json()["items"]]
    assert starts == sorted(starts)


@pytest.mark.parametrize("params, field", [
    ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "99999999999999999999999"}, "limit"),
    ({"limit": "ten"}, "limit"), ({"after": "not-a-cursor"}, "after"), ({"after": "WzFd"}, "after"),
    ({"community_id": None}, "community_id"),
])
def test_bad_paging_parameters_are_400_naming_them(shared_platform, params, field):
    response = shared_platform.events("GET", "/events", params={"community_id": "tongzilin", **params})
    assert response.status_code == 400, response.text
    assert field in response.json()["details"]["fields"]
