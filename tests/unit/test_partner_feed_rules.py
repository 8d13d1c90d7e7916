"""The rules of partner feeds: scopes, retries, Retry-After, webhook URL safety, personal fields."""
import socket
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from contracts.feeds import PARTNER_PERSONAL_FIELDS, PartnerFeedEnvelopeV1, personal_fields_of
from services.partners import feeds

EXIT_ENTRY = feeds.PartnerScopes.from_request(
    types=["resident.registered", "resident.departed"], communities=["tongzilin"],
    personal_fields=["document_type", "document_number", "name_romanised", "nationality"],
    personal_residence_types=["foreign"])
CULTURE = feeds.PartnerScopes.from_request(types=["event.*", "feedback.submitted"], communities="*")


def test_patterns_expand_to_the_registered_types_and_unknown_ones_are_named():
    assert {"event.scheduled", "event.changed", "event.cancelled", "event.completed"} <= CULTURE.types
    assert "registration.confirmed" not in CULTURE.types
    with pytest.raises(feeds.UnknownTypes) as raised:
        feeds.expand_types(["event.*", "resident.teleported", "parcel.*"])
    assert raised.value.details["types"] == ["resident.teleported", "parcel.*"]
    assert raised.value.status == 400


def test_a_partner_may_not_be_entitled_to_fields_that_are_not_partner_fields():
    with pytest.raises(feeds.FeedRuleError) as raised:
        feeds.PartnerScopes.from_request(types=["resident.*"], communities="*", personal_fields=["password", "name"])
    assert raised.value.details["personal_fields"] == ["password"]


def test_a_subscription_within_scope_is_accepted():
    types, communities = feeds.check_subscription(EXIT_ENTRY, ["resident.registered"], ["tongzilin"])
    assert types == {"resident.registered"} and communities == {"tongzilin"}
    assert feeds.check_subscription(CULTURE, ["event.scheduled"], ["yulin", "tongzilin"])[1] == {"yulin", "tongzilin"}


def test_a_subscription_beyond_scope_names_what_is_outside():
    with pytest.raises(feeds.OutsideScope) as raised:
        feeds.check_subscription(EXIT_ENTRY, ["resident.*"], ["tongzilin", "yulin"])
    details = raised.value.details
    assert "resident.moved" in details["types"] and "resident.registered" not in details["types"]
    assert details["communities"] == ["yulin"] and raised.value.status == 422
    with pytest.raises(feeds.OutsideScope) as everywhere:
        feeds.check_subscription(EXIT_ENTRY, ["resident.registered"], "*")
    assert everywhere.value.details == {"communities": ["*"]}
    with pytest.raises(feeds.UnknownTypes):
        feeds.check_subscription(CULTURE, ["event.rescheduled"], "*")


def test_subscriptions_match_on_type_and_community():
    subscription = {"types": ["event.scheduled"], "communities": ["tongzilin"]}
    assert feeds.subscription_matches(subscription, "event.scheduled", "tongzilin")
    assert not feeds.subscription_matches(subscription, "event.scheduled", "yulin")
    assert not feeds.subscription_matches(subscription, "event.cancelled", "tongzilin")
    assert feeds.subscription_matches({"types": ["event.scheduled"], "communities": ["*"]}, "event.scheduled", "x")


def test_personal_fields_only_where_the_scope_covers_the_resident():
    foreigner = {"resident_id": "r1", "residence_type": "foreign"}
    assert feeds.personal_fields_wanted(EXIT_ENTRY, foreigner) == [
        "document_number", "document_type", "name_romanised", "nationality"]
    assert feeds.personal_fields_wanted(EXIT_ENTRY, {"resident_id": "r1", "residence_type": "registered"}) == []
    assert feeds.personal_fields_wanted(CULTURE, {"resident_id": "r1", "rating": 9}) == []
    assert feeds.personal_fields_wanted(EXIT_ENTRY, {"event_id": "e1"}) == []


def test_only_the_allowed_fields_are_attached_and_an_erased_resident_gives_none():
    fetched = {"resident_id": "r1", "available": True, "document_number": "E1234", "phone": "138"}
    assert feeds.filter_personal(["document_number"], fetched) == {"resident_id": "r1", "document_number": "E1234"}
    assert feeds.filter_personal(["document_number"], {"resident_id": "r1", "available": False}) is None
    wire = {"id": "m1", "data": {"resident_id": "r1"}}
    assert feeds.partner_view(wire, None) == wire
    view = feeds.partner_view(wire, {"resident_id": "r1", "document_number": "E1234"})
    assert personal_fields_of(view) == {"resident_id": "r1", "document_number": "E1234"}
    assert "personal" not in wire["data"]  # the stored envelope is not changed


def test_the_partner_view_is_documented_in_contracts():
    assert PartnerFeedEnvelopeV1.__doc__ and "personal" in PartnerFeedEnvelopeV1.__doc__
    assert {"document_number", "name_romanised", "nationality"} <= PARTNER_PERSONAL_FIELDS
    assert "resident_id" not in PARTNER_PERSONAL_FIELDS


def test_the_default_retry_schedule_spans_about_a_day():
    schedule = feeds.DEFAULT_RETRY_SCHEDULE_S
    assert schedule[0] == 0 and len(schedule) == 8
    assert timedelta(hours=20) < timedelta(seconds=sum(schedule)) < timedelta(hours=30)
    assert [feeds.next_retry_delay(n) for n in range(1, 4)] == [5, 300, 1800]
    assert feeds.next_retry_delay(len(schedule)) is None


def test_retry_after_overrides_the_schedule_but_not_the_last_attempt():
    assert feeds.next_retry_delay(1, (0, 5, 60), retry_after_s=42) == 42
    assert feeds.next_retry_delay(3, (0, 5, 60), retry_after_s=42) is None


def test_retry_after_as_seconds_or_http_date():
    now = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert feeds.parse_retry_after("120", now) == 120
    assert feeds.parse_retry_after(format_datetime(now + timedelta(minutes=3), usegmt=True), now) == 180
    assert feeds.parse_retry_after(format_datetime(now - timedelta(minutes=3), usegmt=True), now) == 0
    assert feeds.parse_retry_after(None, now) is None
    assert feeds.parse_retry_after("soon", now) is None


def _resolving_to(*addresses):
    return lambda host, port, *args: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.1.10", "172.16.0.5", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1"])
def test_webhooks_to_non_public_addresses_are_refused(address):
    with pytest.raises(feeds.UnsafeUrl) as raised:
        feeds.check_webhook_url("https://partner.example/hook", False, resolve=_resolving_to(address))
    assert raised.value.details["addresses"] == [address]


def test_one_private_address_among_public_ones_is_enough_to_refuse():
    with pytest.raises(feeds.UnsafeUrl):
        feeds.check_webhook_url("https://partner.example/hook", False, resolve=_resolving_to("93.184.216.34", "10.0.0.1"))


def test_webhooks_to_public_addresses_are_accepted_and_private_ones_when_allowed():
    feeds.check_webhook_url("https://partner.example/hook", False, resolve=_resolving_to("93.184.216.34"))
    feeds.check_webhook_url("http://127.0.0.1:8080/hook", True)


def test_webhook_urls_must_be_http_with_a_host():
    for url in ("ftp://partner.example/x", "https:///nohost", "file:///etc/passwd"):
        with pytest.raises(feeds.UnsafeUrl):
            feeds.check_webhook_url(url, True)


def test_a_partner_token_names_its_partner_and_cursors_are_checked():
    assert feeds.partner_of("partner:exit-entry") == "exit-entry"
    assert feeds.partner_of("local-operator") is None
    assert feeds.parse_cursor(None) == 0 and feeds.parse_cursor("17") == 17
    assert feeds.parse_cursor(str(2 ** 63 - 1)) == 2 ** 63 - 1
    for bad in ("-3", str(2 ** 63), "9" * 26, "\u00b2", " 1"):
        with pytest.raises(feeds.BadFeedQuery, match="after"):
            feeds.parse_cursor(bad)
    assert feeds.parse_limit("50") == 50
    for bad in ("0", "x", "5000", "\u00b2", "9" * 40, ""):
        with pytest.raises(feeds.BadFeedQuery, match="limit"):
            feeds.parse_limit(bad)


def test_delivery_list_cursors_and_statuses_are_checked():
    cursor = "20261129T053312123456-" + "a" * 32
    assert feeds.parse_delivery_cursor(cursor) == cursor and feeds.parse_delivery_cursor(None) is None
    for bad in ("17", "9" * 26, cursor + "x", cursor.upper()):
        with pytest.raises(feeds.BadFeedQuery, match="after"):
            feeds.parse_delivery_cursor(bad)
    assert feeds.parse_delivery_status("failed") == "failed" and feeds.parse_delivery_status(None) is None
    for bad in ("lost", ""):
        with pytest.raises(feeds.BadFeedQuery, match="status"):
            feeds.parse_delivery_status(bad)
