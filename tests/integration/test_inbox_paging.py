"""Inboxes page (issue #14, item 9): ``{"items", "next"}``, newest first, every notification once."""
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import free_port, make_token
from tests.integration.channel_servers import SmsGateway, SmtpServer
from tests.integration.test_notifications import platform, sms, smtp, start_platform  # noqa: F401
from tests.waiting import until

pytestmark = pytest.mark.integration
EVENTS = 5


@pytest.fixture(scope="module")
def shared_platform(module_container_factory, module_config, tmp_path_factory):
    """One platform for the tests whose pages are refused: each reads only the resident it registered."""
    smtp, sms = SmtpServer(free_port(), tmp_path_factory.mktemp("maildir")), SmsGateway(free_port())
    smtp.start()
    sms.start()
    yield start_platform(module_container_factory, module_config, free_port, make_token, smtp, sms)
    sms.stop()
    smtp.stop()


def walk(platform, path, limit) -> list[dict]:
    items, after = [], None
    while True:
        response = platform.call("notifications", "GET", path, params={"limit": limit, "after": after})
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        if page["next"] is None:
            return items
        after = page["next"]


def test_a_residents_inbox_pages_newest_first_with_nothing_lost_or_repeated(platform):
    resident = platform.resident("王芳")
    for number in range(EVENTS):
        platform.event(venue=f"hall {number}")
    whole = platform.inbox_where(resident, lambda items: len(items) == EVENTS + 1, "welcome and 5 announcements")
    first = platform.call("notifications", "GET", f"/residents/{resident}/inbox", params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next"]
    for limit in (1, 2, 4):
        paged = walk(platform, f"/residents/{resident}/inbox", limit)
        assert [i["id"] for i in paged] == [i["id"] for i in whole], limit
    assert [i["created_at"] for i in whole] == sorted((i["created_at"] for i in whole), reverse=True)
    last = platform.call("notifications", "GET", f"/residents/{resident}/inbox", params={"limit": EVENTS + 1}).json()
    assert last["next"] is None and len(last["items"]) == EVENTS + 1


def test_a_community_inbox_pages(platform):
    expiry = (datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=30)).isoformat()
    for name in ("Marie Dubois", "John Smith", "Zoë Lefèvre"):
        platform.resident(name, language="en", residence_type="foreign", nationality="FR",
                          permit_type="residence_permit_work", permit_expires_on=expiry)
    with platform.rpc("residents") as residents:
        assert residents.run_permit_reminders() == 3
    until(lambda: len(platform.call("notifications", "GET", "/communities/tongzilin/inbox").json()["items"]) == 3,
               what="three centre notices")
    paged = walk(platform, "/communities/tongzilin/inbox", 1)
    assert len(paged) == 3 and len({i["id"] for i in paged}) == 3


@pytest.mark.parametrize("params, field", [
    ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "4611686018427387904"}, "limit"),
    ({"after": "%%%"}, "after"), ({"unread": "maybe"}, "unread"),
])
def test_bad_paging_parameters_are_400_naming_them(shared_platform, params, field):
    resident = shared_platform.resident("王芳")
    for path in (f"/residents/{resident}/inbox", "/communities/tongzilin/inbox"):
        response = shared_platform.call("notifications", "GET", path, params=params)
        assert response.status_code == 400, response.text
        assert field in response.json()["details"]["fields"], response.text
