"""The ingest door (issue #7): internal systems publish with plain pika (or POST), nothing is lost."""
import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pika
import pytest
import requests
from cloudevents.core.bindings import http, rabbitmq
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from contracts.ingest import MAX_INGEST_BYTES
from services.events.service import EventsService
from services.residents.service import ResidentsService
from tests.waiting import until

pytestmark = pytest.mark.integration
SOURCE = "grid-system/tongzilin"


def wire(type_name, data, **overrides):
    """An envelope as an outside system writes it, valid or not (no Linli code builds it)."""
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": SOURCE, "type": type_name,
            "time": datetime.now(timezone.utc).isoformat(), "dataschema": f"urn:linli:contracts:{type_name}:v1",
            "datacontenttype": "application/json", "data": data, "community": "tongzilin", **overrides}


def form_row(number):
    if number % 3:
        return {"姓名": f"居民{number:04d}", "性别": "女", "居住类型": "户籍", "国籍": "CN", "网格": "tongzilin-03"}
    return {"name": f"Marie Dubois {number}", "residence_type": "foreign", "nationality": "FR",
            "preferred_language": "fr", "permit_type": "residence_permit_work", "permit_expires_on": "2027-06-30"}


def form(number, **row_overrides):
    row = form_row(number if not row_overrides else 1)  # overrides use the Chinese headers
    return wire("resident.form_submitted", {"community_id": "tongzilin", "row": {**row, **row_overrides},
                                            "form_reference": f"grid:{number}"})


def proposal(number, **overrides):
    starts = datetime.now(timezone.utc) + timedelta(days=10, hours=number % 48)
    return wire("event.proposed", {
        "community_id": "tongzilin", "organiser": "foreign_resident_service_centre", "category": "culture",
        "title": {"zh-CN": f"文化分享会 {number}", "en": f"Cultural sharing session {number}"},
        "venue": "桐梓林社区活动中心", "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=2)).isoformat(), "capacity": 40, **overrides})


class Sender:
    """An internal system: plain pika, publisher confirms, our contract as JSON."""

    def __init__(self, amqp_uri):
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def send(self, body, routing_key=None, content_type="application/json", **properties):
        if isinstance(body, dict):
            routing_key = routing_key or body.get("type")
            body = json.dumps(body, ensure_ascii=False).encode()
        self.channel.basic_publish("linli.ingest", routing_key, body, pika.BasicProperties(
            content_type=content_type, delivery_mode=2, app_id="grid-system", **properties), mandatory=True)

    def drain(self, queue):
        found = []
        while True:
            method, properties, body = self.channel.basic_get(queue, auto_ack=True)
            if method is None:
                return found
            found.append((properties, body))

    def close(self):
        self.connection.close()


@pytest.fixture
def platform(container_factory, config, free_port, mongo_client, amqp_uri):
    urls = {}
    for service_cls in (ResidentsService, EventsService):
        address = f"127.0.0.1:{free_port()}"
        container_factory(service_cls, {**config, "WEB_SERVER_ADDRESS": address}).start()
        urls[service_cls.name] = f"http://{address}"
    sender = Sender(amqp_uri)
    prefix = config["MONGO_DB_PREFIX"]

    class Platform:
        residents_url = urls["residents"]
        send = staticmethod(sender.send)
        drain = staticmethod(sender.drain)
        residents = mongo_client[f"{prefix}residents"]["residents"]
        events = mongo_client[f"{prefix}events"]["events"]

        def rejected(self, count, deadline_s=60):
            found = []
            until(lambda: found.extend(sender.drain("linli.ingest.rejected")) or len(found) >= count,
                  f"{count} rejected messages", timeout_s=deadline_s)
            return found

    yield Platform()
    sender.close()


def errors_of(properties):
    return json.loads(properties.headers["x-linli-ingest-errors"])


def malformed(number):
    """Ten kinds of bad input, each with the error code it must be parked with."""
    kind = number % 10
    good = form(number)
    cases = {
        0: (b"{not json", "resident.form_submitted", "application/json", "invalid_json"),
        1: (json.dumps(good).encode(), "resident.form_submitted", "text/plain", "unsupported_content_type"),
        2: (wire("resident.teleported", {"community_id": "tongzilin"}), "resident.teleported", None, "unknown_type"),
        3: (json.dumps(form(number, 备注="x" * MAX_INGEST_BYTES)).encode(), "resident.form_submitted",
            "application/json", "body_too_large"),
        4: ({k: v for k, v in good.items() if k not in ("time", "source")}, None, None, "invalid_envelope"),
        5: (wire("resident.form_submitted", {"row": form_row(number)}), None, None, "invalid_data"),
        6: (form(number, 国籍="France"), None, None, "invalid_row"),
        7: (good, "event.proposed", None, "routing_key_mismatch"),
        8: (form(number, 出生日期="2024-13-01"), None, None, "invalid_row"),
        9: (proposal(number, capacity=0), None, None, "invalid_data"),
    }
    body, routing_key, content_type, code = cases[kind]
    return body, routing_key, content_type or "application/json", code


def test_a_thousand_messages_a_tenth_malformed_none_lost(platform):
    expected_codes, good_forms, good_proposals = {}, 0, 0
    for number in range(1000):
        if number % 10 == 9:
            body, routing_key, content_type, code = malformed(number // 10)
            expected_codes[f"bad-{number}"] = code
            platform.send(body, routing_key, content_type, message_id=f"bad-{number}")
        elif number % 10 == 5:
            platform.send(proposal(number), message_id=f"good-{number}")
            good_proposals += 1
        else:
            platform.send(form(number), message_id=f"good-{number}")
            good_forms += 1

    rejected = platform.rejected(100, deadline_s=120)
    until(lambda: platform.residents.count_documents({}) >= good_forms, "the residents", timeout_s=120)
    until(lambda: platform.events.count_documents({}) >= good_proposals, "the drafts", timeout_s=60)
    time.sleep(1)  # nothing more arrives: processed + rejected is exactly what was sent
    assert platform.residents.count_documents({}) == good_forms
    assert platform.events.count_documents({"status": "draft"}) == good_proposals
    assert len(rejected) + len(platform.drain("linli.ingest.rejected")) == 100
    assert good_forms + good_proposals + len(rejected) == 1000
    for properties, body in rejected:
        code = expected_codes[properties.message_id]
        assert code in {e["code"] for e in errors_of(properties)}, (properties.message_id, errors_of(properties))
        assert properties.headers["x-linli-sender-app-id"] == "grid-system"
        assert properties.headers["x-linli-original-routing-key"]
        assert properties.delivery_mode == 2
    metrics = requests.get(platform.residents_url + "/metrics").text
    assert 'linli_ingest_messages_total{outcome="registered",service="residents",type="resident.form_submitted"}' \
        in metrics and 'outcome="rejected",service="residents",type="unknown"' in metrics
    originals = {p.message_id: b for p, b in rejected}
    assert originals[next(k for k, c in expected_codes.items() if c == "invalid_json")] == b"{not json"


def test_the_same_message_twice_is_one_resident_and_the_same_person_again_is_already_registered(platform):
    first = form(7, 证件类型="护照", 证件号码="E12345678", 居住类型="境外", 国籍="FR", 首选语言="fr")
    platform.send(first)
    platform.send(first)  # re-sent: the same envelope id
    again = {**first, "id": str(uuid.uuid4())}  # the same person, in a new message
    platform.send(again)
    platform.send(form(8, 证件类型="护照", 证件号码="E12345678", 居住类型="境外", 国籍="FR", community_id="yulin"))
    no_identity_keys = form(9)  # no document, no phone: only the ingest record tells a re-send
    for _ in range(3):
        platform.send(no_identity_keys)
    [(_, body)] = platform.rejected(1)
    assert json.loads(body)["data"]["row"]["community_id"] == "yulin"
    time.sleep(1)
    assert platform.residents.count_documents({}) == 2
    assert platform.residents.count_documents({"name": "Marie Dubois 9"}) == 1


def test_reply_to_gets_ingest_accepted_with_the_senders_correlation_id(platform, amqp_uri):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    reply_queue = channel.queue_declare("", exclusive=True).method.queue
    message = proposal(3)
    channel.basic_publish("linli.ingest", "event.proposed", json.dumps(message).encode(), pika.BasicProperties(
        content_type="application/cloudevents+json", reply_to=reply_queue, correlation_id="kiosk-7:0042"))

    def reply():
        method, properties, body = channel.basic_get(reply_queue, auto_ack=True)
        return (properties, body) if method else None

    properties, body = until(reply, "the reply", timeout_s=30)
    accepted = json.loads(body)
    connection.close()
    assert properties.correlation_id == "kiosk-7:0042"
    assert accepted["type"] == "ingest.accepted" and accepted["source"] == "linli/events"
    assert accepted["data"]["ingested_id"] == message["id"] and accepted["data"]["outcome"] == "draft_created"
    assert platform.events.find_one()["_id"].__str__() == accepted["data"]["event_id"]


def test_post_ingest_accepts_or_names_every_error(platform, token):
    headers = {"Authorization": f"Bearer {token(['ingest:write'])}", "Content-Type": "application/json"}
    url = platform.residents_url + "/ingest"
    message = form(11)
    accepted = requests.post(url, data=json.dumps(message), headers=headers)
    assert accepted.status_code == 202 and accepted.json() == {"id": message["id"], "status": "accepted"}
    until(lambda: platform.residents.count_documents({}) == 1, "the resident", timeout_s=30)

    bad = form(12, 出生日期="2024-13-01")
    bad["data"]["community_id"] = ""
    invalid = requests.post(url, data=json.dumps(bad), headers=headers)
    assert invalid.status_code == 400 and invalid.json()["error"] == "invalid_message"
    assert {e["field"] for e in invalid.json()["details"]["errors"]} == {"data.community_id"}
    not_json = requests.post(url, data=b"\xff\xfe", headers=headers)
    assert not_json.status_code == 400 and not_json.json()["details"]["errors"][0]["code"] == "invalid_json"
    too_large = requests.post(url, data=b"x" * (MAX_INGEST_BYTES + 1), headers=headers)
    assert too_large.status_code == 413 and too_large.json()["error"] == "body_too_large"
    wrong_type = requests.post(url, data=json.dumps(message), headers={**headers, "Content-Type": "text/csv"})
    assert wrong_type.status_code == 415 and wrong_type.json()["error"] == "unsupported_content_type"
    no_scope = requests.post(url, data=json.dumps(message),
                             headers={**headers, "Authorization": f"Bearer {token(['residents:write'])}"})
    assert no_scope.status_code == 403
    other = form(13)
    other["data"]["community_id"] = "yulin"
    assert requests.post(url, data=json.dumps(other), headers=headers).status_code == 403


def test_the_publisher_client_refuses_invalid_data_and_its_message_is_processed(platform, amqp_uri):
    from contracts import InvalidPayload
    from contracts.client import NotAnIngestType, Publisher

    with Publisher(amqp_uri, "case-system/wuhou-civil-affairs") as publisher:
        with pytest.raises(InvalidPayload):
            publisher.publish("event.proposed", {**proposal(1)["data"], "capacity": 0})
        with pytest.raises(NotAnIngestType):
            publisher.publish("resident.registered", {})
        envelope = publisher.publish("resident.form_submitted", form(21)["data"])
        accepted = publisher.publish_and_wait("event.proposed", proposal(22)["data"], timeout_s=30)
    assert accepted["outcome"] == "draft_created" and accepted["event_id"]
    until(lambda: platform.residents.count_documents({}) == 1, "the resident", timeout_s=30)
    assert platform.drain("linli.ingest.rejected") == []
    assert envelope.source == "case-system/wuhou-civil-affairs"


def test_the_feed_consumer_acks_after_the_callback_and_requeues_when_it_raises(amqp_uri):
    from contracts import RESIDENT_REGISTERED, build_envelope
    from contracts.client import FeedConsumer

    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.queue_declare("linli.feed.exit-entry", durable=True)
    sent = []
    for number in range(3):
        wire_form = build_envelope("resident.registered", {**RESIDENT_REGISTERED.example, "resident_id": f"r{number}"},
                                   source="linli/residents").to_wire()
        wire_form["data"]["personal"] = {"resident_id": f"r{number}", "document_type": "passport",
                                         "document_number": "E12345678", "permit_expires_on": "2027-01-31"}
        channel.basic_publish("", "linli.feed.exit-entry", json.dumps(wire_form).encode())
        sent.append(wire_form["id"])
    calls = []

    def callback(envelope):
        calls.append(envelope.id)
        if envelope.id == sent[1] and calls.count(envelope.id) == 1:
            raise RuntimeError("the case system is down for a moment")
        if envelope.id == sent[2]:
            raise RuntimeError("this one never works")
        assert envelope.data["personal"]["document_number"] == "E12345678"
        assert envelope.data["personal"]["permit_expires_on"].year == 2027

    FeedConsumer(amqp_uri, "linli.feed.exit-entry", callback, max_attempts=3).run(idle_timeout_s=1.5)
    assert calls.count(sent[0]) == 1 and calls.count(sent[1]) == 2 and calls.count(sent[2]) == 3
    remaining = channel.queue_declare("linli.feed.exit-entry", passive=True).method.message_count
    connection.close()
    assert remaining == 0  # acked, or rejected after three attempts (to the queue's dead-letter exchange, if any)


def test_text_that_cannot_be_stored_is_rejected_up_front_over_amqp_and_http(platform, token):
    """A lone surrogate (legal JSON, not text) used to be accepted, then parked as processing_failed "kept for
    replay" that could never succeed; bytes that are not UTF-8 must never become U+FFFD (issue #14)."""
    surrogate = "bad \ud800 x"
    platform.send(json.dumps(form(21, 姓名=surrogate)).encode(), "resident.form_submitted")  # as "\ud800"
    platform.send(json.dumps(proposal(22, venue=surrogate)).encode(), "event.proposed")
    not_utf8 = json.dumps(form(23, 姓名="NAME")).encode().replace(b"NAME", b"\xff\xfe\xc3\x28")
    platform.send(not_utf8, "resident.form_submitted")
    parked = platform.rejected(3)
    assert sorted([(e["code"], e["field"] or "") for e in errors_of(p)] for p, _ in parked) == [
        [("invalid_json", "")], [("invalid_row", "data.row.姓名")], [("invalid_text", "data.venue")]]
    assert [p.headers["x-linli-ingest-status"] for p, _ in parked] == [400, 400, 400]

    headers = {"Authorization": f"Bearer {token(['ingest:write'])}", "Content-Type": "application/json"}
    for body, code in [(json.dumps(form(24, 姓名=surrogate)), "invalid_row"), (not_utf8, "invalid_json")]:
        refused = requests.post(platform.residents_url + "/ingest", data=body, headers=headers)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_message", refused.text
        assert [e["code"] for e in refused.json()["details"]["errors"]] == [code]
    assert platform.residents.count_documents({}) == 0 and platform.events.count_documents({}) == 0


def test_a_cloudevents_sdk_producer_without_dataschema_is_accepted_over_amqp_and_http(platform, token):
    """CloudEvents 1.0 makes dataschema optional: the type names the schema. A wrong one is still refused."""
    def sdk_event(number, **attributes):
        message = form(number)
        return CloudEvent({"type": message["type"], "source": SOURCE, "datacontenttype": "application/json",
                           "community": "tongzilin", **attributes}, message["data"])

    over_amqp = rabbitmq.to_structured(sdk_event(31), JSONFormat())
    assert b"dataschema" not in over_amqp.body
    platform.send(over_amqp.body, "resident.form_submitted", content_type=over_amqp.content_type)
    over_http = http.to_structured(sdk_event(32), JSONFormat())
    accepted = requests.post(platform.residents_url + "/ingest", data=over_http.body,
                             headers={**over_http.headers, "Authorization": f"Bearer {token(['ingest:write'])}"})
    assert accepted.status_code == 202, accepted.text
    until(lambda: platform.residents.count_documents({}) == 2, "both residents", timeout_s=30)

    wrong = sdk_event(33, dataschema="urn:linli:contracts:event.proposed:v1")
    platform.send(rabbitmq.to_structured(wrong, JSONFormat()).body, "resident.form_submitted")
    [(properties, _)] = platform.rejected(1)
    assert [(e["code"], e["field"]) for e in errors_of(properties)] == [("unknown_version", "dataschema")]
    assert platform.residents.count_documents({}) == 2
