"""Input that once made a 500 (issue #14, items 3 and 4): each is a 400 that names the field.

Integers past 2⁶³ in the query string, a lone UTF-16 surrogate in any JSON
string, bytes that are not UTF-8 in a JSON body, query values that are not
UTF-8, and time zones of 256+ characters — against the four running services.
"""
import json

import pytest

from tests.integration.test_fuzz_http import platform  # noqa: F401 - the five services, a resident, an event
from tests.integration.test_route_security import HOME, event_body, resident_body

pytestmark = pytest.mark.integration
HUGE = ["4611686018427387904", "9223372036854775808", "99999999999999999999999", "-1", "0", "1.5", "x", "1e3"]
SURROGATE = "bad \ud800 x"
BAD_ZONES = ["A" * 300, "Asia/" + "x" * 255, "../" * 90 + "etc/passwd", "Asia/Shanghai\x00", "/etc/passwd"]


def _field_named(response, *path):
    details = response.json()["details"]["fields"]
    for name in path:
        assert name in details, f"{path} not named in {details}"
        details = details[name]
    return details


def test_integer_query_parameters_out_of_range_are_a_400_naming_them(platform):  # noqa: F811
    urls, _, session, ids = platform
    inbox = f"{urls['notifications']}/residents/{ids['resident_id']}/inbox"
    residents = f"{urls['residents']}/residents?community_id={HOME}"
    for value in HUGE:
        for url, name in [(f"{residents}&page={value}", "page"), (f"{residents}&page_size={value}", "page_size"),
                          (f"{inbox}?limit={value}", "limit"),
                          (f"{urls['notifications']}/communities/{HOME}/inbox?limit={value}", "limit")]:
            response = session.get(url)
            assert response.status_code == 400, f"{url}: {response.status_code} {response.text[:200]}"
            assert response.json()["error"] == "validation_failed" and _field_named(response, name)


def test_a_lone_surrogate_in_any_json_string_is_a_400_naming_the_field(platform):  # noqa: F811
    urls, _, session, ids = platform
    resident, event = f"{urls['residents']}/residents", f"{urls['events']}/events"
    cases = [
        (session.post, resident, {**resident_body(), "name": SURROGATE}, ("name",)),
        (session.patch, f"{resident}/{ids['resident_id']}", {"name": SURROGATE}, ("name",)),
        (session.post, event, {**event_body(), "title": {"en": SURROGATE}}, ("title", "en")),
        (session.patch, f"{event}/{ids['event_id']}", {"venue": SURROGATE}, ("venue",)),
        (session.post, f"{urls['partners']}/partners", {"id": "surrogate", "name": SURROGATE, "scopes": {
            "types": ["event.scheduled"], "communities": [HOME]}}, ("name",)),
        (session.put, f"{urls['notifications']}/residents/{ids['resident_id']}/preferences",
         {"opt_outs": [{"category": SURROGATE, "channel": "sms"}]}, ("opt_outs", "0", "category")),
        (session.post, resident, {**resident_body(), "tags": ["x"], SURROGATE: 1}, ("bad \\ud800 x",)),
    ]
    for send, url, body, path in cases:
        response = send(url, data=json.dumps(body), headers={"Content-Type": "application/json"})
        assert response.status_code == 400, f"{url}: {response.status_code} {response.text[:200]}"
        assert response.json()["error"] == "invalid_text" and _field_named(response, *path)


def test_a_json_body_that_is_not_utf8_is_invalid_json_and_nothing_is_stored(platform):  # noqa: F811
    urls, _, session, _ = platform
    body = json.dumps({**resident_body(), "name": "NAME"}).encode().replace(b"NAME", b"\xff\xfe\xc3\x28")
    response = session.post(f"{urls['residents']}/residents", data=body,
                            headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_json", response.text
    found = session.get(f"{urls['residents']}/residents", params={"community_id": HOME, "name": "\ufffd"}).json()
    assert found["items"] == []


def test_query_values_and_path_segments_that_are_not_utf8_never_make_a_5xx(platform):  # noqa: F811
    urls, _, session, ids = platform
    for raw in ("%ED%A0%80", "%FF%FE", "%C3%28"):
        for url in (f"{urls['residents']}/residents?community_id={HOME}&name={raw}",
                    f"{urls['residents']}/residents?community_id={raw}",
                    f"{urls['residents']}/residents/{raw}",
                    f"{urls['events']}/events?community_id={HOME}&lang={raw}",
                    f"{urls['events']}/events/{ids['event_id']}?lang={raw}",
                    f"{urls['reports']}/communities/{HOME}/summary?month={raw}"):
            response = session.get(url)
            assert response.status_code < 500, f"{url}: {response.status_code} {response.text[:200]}"
            assert response.status_code in (200, 400, 403, 404), f"{url}: {response.status_code}"


def test_a_time_zone_that_is_no_zone_is_a_400_naming_it(platform):  # noqa: F811
    urls, _, session, ids = platform
    for zone, (send, url, body) in [(zone, case) for zone in BAD_ZONES for case in [
        (session.post, f"{urls['events']}/events", {**event_body(), "time_zone": zone}),
        (session.patch, f"{urls['events']}/events/{ids['event_id']}", {"time_zone": zone}),
        (session.put, f"{urls['notifications']}/residents/{ids['resident_id']}/preferences", {"time_zone": zone}),
    ]]:
        response = send(url, json=body)
        assert response.status_code == 400, f"{url}: {response.status_code} {response.text[:200]}"
        assert response.json()["error"] == "validation_failed" and _field_named(response, "time_zone")
