"""Partner feeds end to end: residents, events and partners on a real broker and database;
partners consume with plain pika, receive webhooks on real HTTP servers, and pull pages."""
import itertools
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import eventlet
import pika
import pytest
import requests
from kombu import Connection, Exchange, Producer
from standardwebhooks import Webhook

from contracts import RESIDENT_REGISTERED, build_envelope
from services.common.auth import issue_token
from services.common.mongo import Database
from services.events.service import EventsService
from services.partners import feed_store
from services.partners.service import PartnersService
from services.residents.service import ResidentsService
from tests.conftest import RUN_ID, TEST_SECRET
from tests.vhost_pool import delete_users_with_prefix
from tests.waiting import until

pytestmark = pytest.mark.integration
ADMIN_SCOPES = ["partners:admin", "residents:write", "residents:pii", "events:write", "events:read"]
_venues = itertools.count(1)
EXIT_ENTRY_SCOPES = {"types": ["resident.registered"], "communities": ["tongzilin"],
                     "personal_fields": ["document_type", "document_number", "name_romanised", "nationality"],
                     "personal_residence_types": ["foreign"]}
CULTURE_SCOPES = {"types": ["event.*", "feedback.submitted"], "communities": "*"}
MARIE = {"community_id": "tongzilin", "name": "Marie Dubois", "residence_type": "foreign", "nationality": "FR",
         "preferred_language": "fr", "document_type": "passport", "document_number": "E12345678"}


@pytest.fixture
def partner_user_prefix(vhost):
    """Broker users this test creates start with this prefix; they are deleted afterwards."""
    prefix = f"linli-test-{RUN_ID}-{vhost.rsplit('-', 1)[-1]}-"
    yield prefix
    delete_users_with_prefix(prefix)


def feeds_config(config, prefix, **overrides):
    return {**config, "FEED_BROKER_USER_PREFIX": prefix, "FEED_POLL_SECONDS": 0.1,
            "WEBHOOK_RETRY_SCHEDULE_SECONDS": "0,0.2,0.2", "WEBHOOK_TIMEOUT_SECONDS": 1,
            "WEBHOOK_ALLOW_PRIVATE": True, **overrides}


@pytest.fixture
def platform(container_factory, config, free_port, partner_user_prefix, amqp_uri, vhost):
    urls = {}
    for service_cls in (ResidentsService, EventsService, PartnersService):
        address = f"127.0.0.1:{free_port()}"
        container_factory(service_cls, {**feeds_config(config, partner_user_prefix),
                                        "WEB_SERVER_ADDRESS": address}).start()
        urls[service_cls.name] = f"http://{address}"
    admin = {"Authorization": "Bearer " + issue_token(TEST_SECRET, subject="test", scopes=ADMIN_SCOPES,
                                                        communities=["*"])}

    class Platform:
        def partners(self, method, path, headers=admin, **kwargs):
            return requests.request(method, urls["partners"] + path, headers=headers, **kwargs)

        def partner(self, partner_id, scopes):
            response = self.partners("POST", "/partners", json={"id": partner_id, "name": partner_id,
                                                                       "scopes": scopes})
            assert response.status_code == 201, response.text
            return response.json()

        def subscribe(self, partner_id, **subscription):
            response = self.partners("POST", f"/partners/{partner_id}/subscriptions", json=subscription)
            assert response.status_code == 201, response.text
            return response.json()

        def resident(self, **body):
            response = requests.post(urls["residents"] + "/residents", json=body, headers=admin)
            assert response.status_code == 201, response.text
            return response.json()["id"]

        def scheduled_event(self):
            starts = datetime.now(timezone.utc) + timedelta(days=10)
            body = {"community_id": "tongzilin", "organiser": "foreign_resident_service_centre", "category": "culture",
                    "title": {"en": "Cultural sharing"}, "venue": f"hall {next(_venues)}",
                    "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=2)).isoformat(),
                    "capacity": 30, "audience": "community"}
            [event_id] = requests.post(urls["events"] + "/events", json=body, headers=admin).json()["ids"]
            assert requests.post(urls["events"] + f"/events/{event_id}/schedule", headers=admin).status_code == 200
            return event_id

        def erase(self, resident_id):
            erased = requests.delete(urls["residents"] + f"/residents/{resident_id}/personal-data", headers=admin)
            assert erased.status_code == 200, erased.text

        def deliveries(self, partner_id, status=None):
            return self.partners("GET", f"/partners/{partner_id}/deliveries",
                                      params={"status": status} if status else {}).json()["items"]

        def residents_registered(self, count):
            """``count`` resident.registered messages in tongzilin, straight onto the bus; their ids."""
            envelopes = [build_envelope("resident.registered", {**RESIDENT_REGISTERED.example,
                                                                "community_id": "tongzilin"},
                                        source="linli/residents", community="tongzilin") for _ in range(count)]
            for envelope in envelopes:
                self.publish_raw("residents", envelope)
            return [envelope.id for envelope in envelopes]

        def publish_raw(self, source, envelope):
            with Connection(amqp_uri) as connection:
                Producer(connection.default_channel).publish(
                    envelope.to_wire(), exchange=Exchange(f"{source}.events", type="topic", durable=True),
                    routing_key=envelope.type, serializer="json")

    return Platform()


def bearer(*communities, scopes=("partners:admin",)):
    token = issue_token(TEST_SECRET, subject="test", scopes=list(scopes), communities=list(communities))
    return {"Authorization": f"Bearer {token}"}


def pika_connection(credentials):
    params = pika.ConnectionParameters("127.0.0.1", 5672, credentials["vhost"],
                                       pika.PlainCredentials(credentials["username"], credentials["password"]))
    return pika.BlockingConnection(params)


def consume(credentials, count, timeout_s=20):
    """Consume ``count`` messages from the partner's queue with plain pika, as a partner would."""
    connection = pika_connection(credentials)
    try:
        channel = connection.channel()
        received, deadline = [], time.monotonic() + timeout_s
        for method, properties, body in channel.consume(credentials["queue"], inactivity_timeout=0.2):
            if method is not None:
                received.append(json.loads(body))
                channel.basic_ack(method.delivery_tag)
            if len(received) >= count or time.monotonic() > deadline:
                break
        channel.cancel()
        return received
    finally:
        connection.close()


def test_a_partner_cannot_subscribe_beyond_its_scope(platform):
    platform.partner("exit-entry", EXIT_ENTRY_SCOPES)
    beyond = platform.partners("POST", "/partners/exit-entry/subscriptions", json={
        "types": ["resident.registered", "resident.moved"], "communities": ["tongzilin", "yulin"], "method": "pull"})
    assert beyond.status_code == 422 and beyond.json()["error"] == "outside_partner_scope"
    assert beyond.json()["details"] == {"types": ["resident.moved"], "communities": ["yulin"]}
    unknown = platform.partners("POST", "/partners/exit-entry/subscriptions", json={
        "types": ["resident.teleported"], "communities": ["tongzilin"], "method": "pull"})
    assert unknown.status_code == 400 and unknown.json()["details"]["types"] == ["resident.teleported"]
    too_personal = platform.partners("POST", "/partners", json={
        "id": "nosy", "name": "nosy", "scopes": {"types": ["resident.*"], "communities": "*",
                                                 "personal_fields": ["password"]}})
    assert too_personal.status_code == 422 and too_personal.json()["details"]["personal_fields"] == ["password"]
    again = platform.partners("POST", "/partners", json={"id": "exit-entry", "name": "x",
                                                              "scopes": EXIT_ENTRY_SCOPES})
    assert again.status_code == 409


def test_partners_consume_their_queues_with_pika_and_only_their_own(platform):
    exit_entry = platform.partner("exit-entry", EXIT_ENTRY_SCOPES)["broker"]
    culture = platform.partner("culture-bureau", CULTURE_SCOPES)["broker"]
    platform.subscribe("exit-entry", types=["resident.registered"], communities=["tongzilin"], method="queue")
    platform.subscribe("culture-bureau", types=["event.*", "feedback.submitted"], communities="*", method="queue")

    marie = platform.resident(**MARIE)
    wang = platform.resident(community_id="tongzilin", name="王秀英", residence_type="registered",
                             nationality="CN", document_type="id_card", document_number="510104199001011234")
    event_id = platform.scheduled_event()

    by_resident = {m["data"]["resident_id"]: m for m in consume(exit_entry, 2)}
    assert set(by_resident) == {marie, wang}
    assert by_resident[marie]["type"] == "resident.registered" and by_resident[marie]["specversion"] == "1.0"
    assert by_resident[marie]["data"]["personal"] == {
        "resident_id": marie, "document_type": "passport", "document_number": "E12345678",
        "name_romanised": "marie dubois", "nationality": "FR"}
    assert "personal" not in by_resident[wang]["data"]  # entitled to foreign residents only

    [scheduled] = consume(culture, 1)
    assert scheduled["type"] == "event.scheduled" and scheduled["data"]["event_id"] == event_id
    assert "personal" not in scheduled["data"] and "Marie" not in json.dumps(scheduled)

    # The culture bureau's own credentials do not open the exit-entry queue.
    connection = pika_connection(culture)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            connection.channel().basic_consume(exit_entry["queue"], lambda *args: None)
        assert refused.value.reply_code == 403 and "ACCESS_REFUSED" in refused.value.reply_text
    finally:
        connection.close()


class WebhookReceiver:
    """A partner's webhook endpoint on loopback: answers from a script, verifies every signature."""

    def __init__(self, free_port, secret=None):
        self.script, self.requests, self.secret = [], [], secret
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = dict(self.headers.items())
                verified = Webhook(receiver.secret).verify(body, headers)  # raises if the signature is wrong
                receiver.requests.append({"at": time.monotonic(), "headers": headers, "body": verified})
                status, extra_headers, delay_s = receiver.script.pop(0) if receiver.script else (200, {}, 0)
                eventlet.sleep(delay_s)
                self.send_response(status)
                for name, value in extra_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/linli"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(free_port):
    made = WebhookReceiver(free_port)
    yield made
    made.close()


def webhook_partner(platform, receiver, partner_id="culture-bureau"):
    platform.partner(partner_id, CULTURE_SCOPES)
    subscription = platform.subscribe(partner_id, types=["event.scheduled"], communities="*", method="webhook",
                                      url=receiver.url)
    assert subscription["secret"].startswith("whsec_")
    receiver.secret = subscription["secret"]
    return subscription


def test_webhooks_are_signed_and_retried_after_500_and_timeout(platform, receiver):
    webhook_partner(platform, receiver)
    receiver.script = [(500, {}, 0), (200, {}, 1.5)]  # then a timeout (1 s here), then 200
    event_id = platform.scheduled_event()
    until(lambda: len(receiver.requests) >= 3, what="three attempts")
    assert {r["headers"]["webhook-id"] for r in receiver.requests} == {receiver.requests[0]["body"]["id"]}
    assert receiver.requests[-1]["body"]["data"]["event_id"] == event_id
    [sent] = until(lambda: platform.deliveries("culture-bureau", "sent"), what="the delivery sent")
    assert sent["attempts"] == 3
    assert "secret" not in json.dumps(platform.partners("GET", "/partners/culture-bureau").json())


def test_retry_after_is_honoured(platform, receiver):
    webhook_partner(platform, receiver)
    receiver.script = [(503, {"Retry-After": "2"}, 0)]
    platform.scheduled_event()
    until(lambda: len(receiver.requests) >= 2, what="the retry")
    # The schedule says 0.2 s here; the endpoint asked for 2 s, and got at least that.
    assert receiver.requests[1]["at"] - receiver.requests[0]["at"] >= 1.9


def test_410_disables_the_endpoint(platform, receiver):
    webhook_partner(platform, receiver)
    platform.partner("sentinel", CULTURE_SCOPES)
    platform.subscribe("sentinel", types=["event.scheduled"], communities="*", method="pull")
    receiver.script = [(410, {}, 0)]
    platform.scheduled_event()
    until(lambda: platform.deliveries("culture-bureau", "disabled"), what="the delivery disabled")
    [subscription] = platform.partners("GET", "/partners/culture-bureau").json()["subscriptions"]
    assert subscription["status"] == "disabled"

    platform.scheduled_event()
    until(lambda: len(platform.partners("GET", "/feeds/sentinel").json()["items"]) == 2,
               what="the second event recorded")
    assert len(receiver.requests) == 1 and len(platform.deliveries("culture-bureau")) == 1


def test_failed_deliveries_are_listed_and_retried(platform, receiver):
    webhook_partner(platform, receiver)
    receiver.script = [(500, {}, 0)] * 3
    platform.scheduled_event()
    [failed] = until(lambda: platform.deliveries("culture-bureau", "failed"), what="the delivery failed")
    assert failed["attempts"] == 3 and failed["last_error"] == "HTTP 500"
    retried = platform.partners("POST", f"/partners/culture-bureau/deliveries/{failed['id']}/retry")
    assert retried.status_code == 202
    until(lambda: platform.deliveries("culture-bureau", "sent"), what="the retried delivery sent")
    assert len(receiver.requests) == 4 and len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1
    again = platform.partners("POST", f"/partners/culture-bureau/deliveries/{failed['id']}/retry")
    assert again.status_code == 409 and again.json()["error"] == "not_retryable"


def test_a_webhook_on_a_private_address_is_refused(container_factory, config, free_port, partner_user_prefix):
    address = f"127.0.0.1:{free_port()}"
    container_factory(PartnersService, {**feeds_config(config, partner_user_prefix, WEBHOOK_ALLOW_PRIVATE=False),
                                             "WEB_SERVER_ADDRESS": address}).start()
    admin = {"Authorization": "Bearer " + issue_token(TEST_SECRET, subject="test", scopes=ADMIN_SCOPES,
                                                        communities=["*"])}
    body = {"id": "culture-bureau", "name": "文旅局", "scopes": CULTURE_SCOPES}
    assert requests.post(f"http://{address}/partners", json=body, headers=admin).status_code == 201
    for url in ("http://127.0.0.1:9/hook", "http://localhost/hook", "http://169.254.169.254/latest"):
        refused = requests.post(f"http://{address}/partners/culture-bureau/subscriptions", headers=admin, json={
            "types": ["event.scheduled"], "communities": "*", "method": "webhook", "url": url})
        assert refused.status_code == 422 and refused.json()["error"] == "unsafe_webhook_url", url


def test_pull_feed_pages_with_stable_cursors(platform):
    platform.partner("grid-centre", {"types": ["resident.registered"], "communities": ["tongzilin"]})
    platform.partner("other", {"types": ["resident.registered"], "communities": ["tongzilin"]})
    platform.subscribe("grid-centre", types=["resident.registered"], communities=["tongzilin"], method="pull")
    residents = [platform.resident(community_id="tongzilin", name=f"居民{i}", residence_type="registered",
                                   nationality="CN") for i in range(7)]
    partner = {"Authorization": "Bearer " + issue_token(TEST_SECRET, subject="partner:grid-centre",
                                                          scopes=["feeds:read"], communities=[])}

    def page(after=None, headers=partner):
        response = platform.partners("GET", "/feeds/grid-centre", headers=headers,
                                          params={"limit": 3, **({"after": after} if after else {})})
        assert response.status_code == 200, response.text
        return response.json()

    until(lambda: len(platform.partners("GET", "/feeds/grid-centre").json()["items"]) == 7,
               what="seven entries")
    pages, cursors, after = [], [], None
    while True:
        current = page(after)
        if not current["items"]:
            assert current["next"] == after  # at the end, the cursor stays
            break
        pages.append(current["items"])
        cursors.append(after)
        after = current["next"]
    assert [len(p) for p in pages] == [3, 3, 1]
    read = [item["data"]["resident_id"] for p in pages for item in p]
    assert sorted(read) == sorted(residents) and len(set(read)) == 7  # no gaps, no duplicates
    assert [page(cursor)["items"] for cursor in cursors] == pages  # the same pages when read again

    bad = platform.partners("GET", "/feeds/grid-centre", headers=partner, params={"after": "abc"})
    assert bad.status_code == 400 and "after" in bad.json()["message"]
    bad_limit = platform.partners("GET", "/feeds/grid-centre", headers=partner, params={"limit": "0"})
    assert bad_limit.status_code == 400 and "limit" in bad_limit.json()["message"]
    stranger = {"Authorization": "Bearer " + issue_token(TEST_SECRET, subject="partner:other",
                                                           scopes=["feeds:read"], communities=[])}
    assert platform.partners("GET", "/feeds/grid-centre", headers=stranger).status_code == 403
    assert platform.partners("GET", "/feeds/grid-centre", headers={}).status_code == 401


def test_replay_resends_with_the_same_ids(platform):
    culture = platform.partner("culture-bureau", CULTURE_SCOPES)["broker"]
    platform.subscribe("culture-bureau", types=["event.scheduled"], communities="*", method="queue")
    since = datetime.now(timezone.utc).isoformat()
    platform.scheduled_event()
    platform.scheduled_event()
    first = [m["id"] for m in consume(culture, 2)]
    replay = platform.partners("POST", "/partners/culture-bureau/replay", json={"since": since})
    assert replay.status_code == 202 and replay.json()["deliveries"] == 2
    assert sorted(m["id"] for m in consume(culture, 2)) == sorted(first)
    bad = platform.partners("POST", "/partners/culture-bureau/replay", json={"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.json()["details"]["fields"]


def test_a_redelivered_message_does_not_make_a_second_entry(platform, mongo_client, config):
    platform.partner("grid-centre", {"types": ["resident.registered"], "communities": ["tongzilin"]})
    platform.subscribe("grid-centre", types=["resident.registered"], communities=["tongzilin"], method="pull")
    data = {**RESIDENT_REGISTERED.example, "community_id": "tongzilin"}
    twice = build_envelope("resident.registered", data, source="linli/residents", community="tongzilin",
                           message_id=str(uuid.uuid4()))
    sentinel = build_envelope("resident.registered", data, source="linli/residents", community="tongzilin")
    for envelope in (twice, twice, sentinel):
        platform.publish_raw("residents", envelope)
    items = until(lambda: [i["id"] for i in platform.partners("GET", "/feeds/grid-centre").json()["items"]
                                if i["id"] == sentinel.id] and platform.partners(
                                    "GET", "/feeds/grid-centre").json()["items"], what="the sentinel recorded")
    assert [item["id"] for item in items] == [twice.id, sentinel.id]
    entries = mongo_client[config["MONGO_DB_PREFIX"] + "partners"]["feed_entries"]
    assert entries.count_documents({"envelope.id": twice.id}) == 1


def test_personal_fields_are_fetched_when_delivered_and_an_erased_resident_gives_none(platform):
    platform.partner("exit-entry", EXIT_ENTRY_SCOPES)
    platform.subscribe("exit-entry", types=["resident.registered"], communities=["tongzilin"], method="pull")
    marie = platform.resident(**MARIE)
    [item] = until(lambda: platform.partners("GET", "/feeds/exit-entry").json()["items"], what="the entry")
    assert item["data"]["personal"]["document_number"] == "E12345678"
    platform.erase(marie)
    [item] = platform.partners("GET", "/feeds/exit-entry").json()["items"]
    assert item["data"]["resident_id"] == marie and "personal" not in item["data"]


def test_two_instances_never_claim_one_delivery_at_once(mongo_client, config):
    db = Database(mongo_client, config["MONGO_DB_PREFIX"] + "partners")
    db[feed_store.DELIVERIES].insert_one(feed_store._new_delivery(
        {"_id": "s1", "partner_id": "p1", "method": "webhook"}, "e1:s1", "e1", feed_store.now()))
    pool = eventlet.GreenPool(10)
    claims = [c for c in pool.imap(lambda n: feed_store.claim_due_delivery(db, 60, f"instance-{n}"), range(10)) if c]
    assert len(claims) == 1
    assert feed_store.claim_due_delivery(db, 60, "late") is None  # leased until the holder finishes


def test_a_one_community_admin_reaches_only_partners_within_its_communities(platform):
    local = bearer("tongzilin")

    def register(partner_id, scopes, headers=local):
        return platform.partners("POST", "/partners", headers=headers,
                                      json={"id": partner_id, "name": partner_id, "scopes": scopes})

    city_wide = register("culture-bureau", CULTURE_SCOPES)
    assert city_wide.status_code == 403 and city_wide.json()["error"] == "outside_token_communities"
    assert city_wide.json()["details"]["communities"] == ["*"]
    two = register("civil-affairs", {"types": ["resident.*"], "communities": ["tongzilin", "yulin"]})
    assert two.status_code == 403 and two.json()["details"]["communities"] == ["yulin"]
    personal = register("exit-entry", EXIT_ENTRY_SCOPES)  # tongzilin only, but with personal fields
    assert personal.status_code == 403 and "residents:pii" in personal.json()["message"]
    assert platform.partners("GET", "/partners/culture-bureau").status_code == 404  # nothing was made
    with_pii = bearer("tongzilin", scopes=("partners:admin", "residents:pii"))
    assert register("exit-entry", EXIT_ENTRY_SCOPES, headers=with_pii).status_code == 201
    assert register("grid-centre", {"types": ["resident.registered"], "communities": ["tongzilin"]}).status_code == 201
    assert platform.partners("GET", "/partners/grid-centre", headers=local).status_code == 200
    own = platform.partners("POST", "/partners/grid-centre/subscriptions", headers=local, json={
        "types": ["resident.registered"], "communities": ["tongzilin"], "method": "pull"})
    assert own.status_code == 201, own.text

    platform.partner("culture-bureau", CULTURE_SCOPES)  # by the city's admin
    inside = platform.subscribe("culture-bureau", types=["event.scheduled"], communities=["tongzilin"], method="pull")
    since = datetime.now(timezone.utc).isoformat()
    for method, path, kwargs in (
            ("GET", "/partners/culture-bureau", {}),
            ("POST", "/partners/culture-bureau/subscriptions",
             {"json": {"types": ["event.scheduled"], "communities": ["tongzilin"], "method": "pull"}}),
            ("POST", f"/partners/culture-bureau/subscriptions/{inside['id']}/enable", {}),
            ("POST", "/partners/culture-bureau/replay", {"json": {"since": since}}),
            ("GET", "/partners/culture-bureau/deliveries", {}),
            ("POST", "/partners/culture-bureau/deliveries/0123456789abcdef/retry", {}),
            ("GET", "/feeds/culture-bureau", {})):
        answer = platform.partners(method, path, headers=local, **kwargs)
        assert answer.status_code == 403, (method, path, answer.status_code, answer.text)
        assert answer.json()["error"] == "outside_token_communities" and answer.json()["details"]["communities"] == [
            "*"], (method, path, answer.text)

    # Within its community, a feed with personal fields is read only with residents:pii.
    platform.subscribe("exit-entry", types=["resident.registered"], communities=["tongzilin"], method="pull")
    feed = platform.partners("GET", "/feeds/exit-entry", headers=local)
    assert feed.status_code == 403 and "residents:pii" in feed.json()["message"]
    assert platform.partners("GET", "/feeds/exit-entry", headers=with_pii).status_code == 200


def test_deliveries_page_newest_first_with_a_cursor(platform):
    platform.partner("grid-centre", {"types": ["resident.registered"], "communities": ["tongzilin"]})
    platform.subscribe("grid-centre", types=["resident.registered"], communities=["tongzilin"], method="queue")
    sent = platform.residents_registered(7)
    until(lambda: len(platform.deliveries("grid-centre")) == 7, what="seven deliveries")

    def page(after=None, **params):
        response = platform.partners("GET", "/partners/grid-centre/deliveries",
                                          params={"limit": 3, **params, **({"after": after} if after else {})})
        assert response.status_code == 200, response.text
        return response.json()

    pages, cursors, after = [], [], None
    while True:
        current = page(after)
        pages.append(current["items"])
        cursors.append(after)
        after = current["next"]
        if after is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    listed = [item for p in pages for item in p]
    assert sorted(item["envelope_id"] for item in listed) == sorted(sent)  # no gaps, no duplicates
    created = [item["created_at"] for item in listed]
    assert created == sorted(created, reverse=True)  # newest first
    assert [[i["id"] for i in page(cursor)["items"]] for cursor in cursors] == [[i["id"] for i in p] for p in pages]
    assert page(None, limit=7)["next"] is None
    until(lambda: len(platform.deliveries("grid-centre", "sent")) == 7, what="all sent")
    assert [len(page(None, status="sent")["items"]), page(None, status="failed")["items"]] == [3, []]


def test_bad_paging_parameters_are_400s_naming_the_parameter(platform):
    platform.partner("grid-centre", {"types": ["resident.registered"], "communities": ["tongzilin"]})
    huge = "9" * 26
    for path in ("/feeds/grid-centre", "/partners/grid-centre/deliveries"):
        for name, value in (("after", huge), ("after", str(2 ** 63)), ("after", "-1"), ("after", "\u00b2"),
                            ("after", "1.5"), ("limit", huge), ("limit", "0"), ("limit", "-3"),
                            ("limit", "\u00b2"), ("limit", "ten")):
            answer = platform.partners("GET", path, params={name: value})
            assert answer.status_code == 400, (path, name, value, answer.status_code, answer.text)
            assert answer.json()["details"] == {name: value} and name in answer.json()["message"], answer.text
    assert platform.partners("GET", "/feeds/grid-centre", params={"after": str(2 ** 63 - 1)}).status_code == 200
    lost = platform.partners("GET", "/partners/grid-centre/deliveries", params={"status": "lost"})
    assert lost.status_code == 400 and lost.json()["details"] == {"status": "lost"}


def test_a_subscription_disabled_by_410_is_enabled_again_and_sends_what_it_held(platform, receiver):
    subscription = webhook_partner(platform, receiver)
    receiver.script = [(410, {}, 0)]
    event_id = platform.scheduled_event()
    [held] = until(lambda: platform.deliveries("culture-bureau", "disabled"), what="the delivery disabled")
    enable = f"/partners/culture-bureau/subscriptions/{subscription['id']}/enable"
    enabled = platform.partners("POST", enable)
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["status"] == "active" and enabled.json()["disabled_reason"] is None
    assert enabled.json()["resumed_deliveries"] == 1
    [sent] = until(lambda: platform.deliveries("culture-bureau", "sent"), what="the held delivery sent")
    assert sent["id"] == held["id"] and receiver.requests[-1]["body"]["data"]["event_id"] == event_id
    assert receiver.requests[1]["headers"]["webhook-id"] == receiver.requests[0]["headers"]["webhook-id"]
    [shown] = platform.partners("GET", "/partners/culture-bureau").json()["subscriptions"]
    assert shown["status"] == "active"

    platform.scheduled_event()  # and what comes now is delivered again
    until(lambda: len(platform.deliveries("culture-bureau", "sent")) == 2, what="the next event sent")
    again = platform.partners("POST", enable)
    assert again.status_code == 200 and again.json()["resumed_deliveries"] == 0
    missing = platform.partners("POST", "/partners/culture-bureau/subscriptions/nope/enable")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_deliveries_stored_before_paging_get_their_list_key_once(mongo_client, db_prefix):
    """A database written before deliveries had a ``list_key``: the first start gives each one its key
    (so it shows in the newest-first pages), and marks that done, so later starts scan nothing."""
    from datetime import datetime, timezone

    from services.partners import feed_store

    db = mongo_client[db_prefix + "partners"]
    at = datetime(2026, 11, 1, 8, 30, tzinfo=timezone.utc)
    db[feed_store.DELIVERIES].insert_one({"_id": "a" * 32, "partner_id": "exit-entry", "status": "sent",
                                          "created_at": at})
    feed_store.ensure_indexes(db)
    assert db[feed_store.DELIVERIES].find_one({"_id": "a" * 32})["list_key"] == "20261101T083000000000-" + "a" * 32
    items, _ = feed_store.deliveries_page(db, "exit-entry", None, None, 10)
    assert [item["_id"] for item in items] == ["a" * 32]
    db[feed_store.DELIVERIES].insert_one({"_id": "b" * 32, "partner_id": "exit-entry", "status": "sent",
                                          "created_at": at})
    feed_store.ensure_indexes(db)  # a later start: the migration is done, nothing is read again
    assert "list_key" not in db[feed_store.DELIVERIES].find_one({"_id": "b" * 32})
