"""Fuzzing the ingest exchange ``linli.ingest`` with hypothesis (issue #8).

An internal system's worst day, sent with plain pika and publisher confirms:
envelopes with a field junked, dropped, re-dated or added, data of the wrong
shape, bodies that are not UTF-8 JSON or not an object, bodies over the size
limit, wrong or missing content types, routing keys no service binds or that
differ from the type. Every message carries a ``message_id`` and asks for a
reply, so it can be followed to its end:

- sent == processed (an ``ingest.accepted`` reply) + rejected (parked on
  ``linli.ingest.rejected``), each id exactly once: nothing lost, nothing twice;
- whatever ``check_body`` refuses is parked with at least the codes it names,
  an errors header of ``{code, field, message}`` and a 400/413/415 status;
- nothing is parked as ``processing_failed`` (the ingest analogue of a 500),
  and both services still answer ``/health`` with no container dead.
"""
import json
import time
import uuid
from collections import Counter

import pika
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.ingest import MAX_INGEST_BYTES
from services.common.ingest import IngestRejected, check_body
from services.events.service import EventsService
from services.residents.service import ResidentsService
from tests.integration.test_fuzz_http import (
    BAD_DATES, huge_text, json_junk, junk_text, raw_body, storable, text, unencodable,
)
from tests.integration.test_ingest import form, proposal

pytestmark = pytest.mark.integration
EXAMPLES = 520  # each a batch of 9 to 13 messages
MIN_MESSAGES = 5100  # with the 4,900 requests of test_fuzz_http: the 10,000 generated inputs of issue #8
REPLIES = "fuzz-ingest-replies"
TYPES = ["resident.form_submitted", "event.proposed"]
CONTENT_TYPES = ["application/json", "application/cloudevents+json", "application/json; charset=utf-8",
                 "text/plain", "application/xml", "", None, "application/octet-stream", "APPLICATION/JSON"]


@st.composite
def bad_envelope(draw):
    """A valid envelope as a sender writes it, then broken in one (or no) way."""
    number = draw(st.integers(0, 10_000))
    wire = form(number) if draw(st.booleans()) else proposal(number, time_zone="Asia/Shanghai")
    part = wire if draw(st.booleans()) else wire["data"]
    kinds = ["mutate", "drop", "date", "extra", "nested", "row", "none"]
    # Huge bodies are slow, so rare (17, not 0: hypothesis favours 0).
    kind = "huge" if draw(st.integers(0, 49)) == 17 else draw(st.sampled_from(kinds))
    if kind == "mutate":
        part[draw(st.sampled_from(sorted(part)))] = draw(json_junk)
    elif kind == "drop":
        part.pop(draw(st.sampled_from(sorted(part))))
    elif kind == "date":
        part[draw(st.sampled_from(["time", "starts_at", "ends_at"] if "starts_at" in part else ["time"]))] = \
            draw(st.sampled_from(BAD_DATES))
    elif kind == "extra":
        part[draw(text | unencodable)] = draw(json_junk)
    elif kind == "nested":
        part[draw(st.sampled_from(sorted(part)))] = draw(st.dictionaries(text, json_junk, min_size=1, max_size=3))
    elif kind == "row" and "row" in wire["data"]:
        wire["data"]["row"][draw(st.sampled_from(["姓名", "国籍", "出生日期", "居住类型", "证件号码"]))] = draw(junk_text)
    elif kind == "huge":
        part[draw(st.sampled_from(sorted(part)))] = draw(huge_text)
    return wire


@st.composite
def ingest_message(draw):
    """(body bytes, routing key, content type) as an internal system might publish them."""
    if draw(st.integers(0, 4)):
        wire = draw(bad_envelope())
        # ASCII: a lone surrogate as "\ud800"; else as the bytes it would be, which are not UTF-8.
        body = json.dumps(wire, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
        declared = wire.get("type") if isinstance(wire.get("type"), str) and storable(wire["type"]) else None
        declared = declared if declared and len(declared.encode()) <= 255 else None  # AMQP's limit on a key
    else:
        too_large = draw(st.integers(0, 49)) == 17
        body = b"{" + b" " * MAX_INGEST_BYTES + b"}" if too_large else draw(raw_body)
        declared = None
    routing_key = draw(st.one_of(
        st.just(declared) if declared else st.sampled_from(TYPES), st.sampled_from(TYPES),
        st.sampled_from(["resident.teleported", "", "#", "*.*", "linli.ingest.rejected", "resident", "a" * 255]),
        text.filter(lambda key: len(key.encode()) <= 255)))
    return body, routing_key or "", draw(st.sampled_from(CONTENT_TYPES))


class Sender:
    """Plain pika with publisher confirms, as an internal system publishes."""

    def __init__(self, amqp_uri):
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.channel.queue_declare(REPLIES, durable=True)

    def send(self, message_id, body, routing_key, content_type):
        self.channel.basic_publish("linli.ingest", routing_key, body, pika.BasicProperties(
            content_type=content_type, delivery_mode=2, app_id="fuzz-system", message_id=message_id,
            correlation_id=message_id, reply_to=REPLIES), mandatory=True)

    def drain(self, queue):
        found = []
        while (got := self.channel.basic_get(queue, auto_ack=True))[0] is not None:
            found.append(got[1:])
        return found


@pytest.fixture
def platform(container_factory, config, free_port, amqp_uri):
    urls, containers = {}, {}
    for cls in (ResidentsService, EventsService):
        address = f"127.0.0.1:{free_port()}"
        containers[cls.name] = container_factory(cls, {**config, "WEB_SERVER_ADDRESS": address})
        containers[cls.name].start()
        urls[cls.name] = f"http://{address}"
    sender = Sender(amqp_uri)
    yield urls, containers, sender
    sender.connection.close()


def expected_codes(body, content_type, routing_key) -> set[str]:
    """What ``check_body`` names, the codes a parked message must carry at least (empty: it passes)."""
    try:
        check_body(body, content_type, routing_key)
    except IngestRejected as rejected:
        return set(rejected.codes)
    return set()


def test_every_generated_bad_message_is_parked_with_its_reasons_and_none_is_lost(platform):
    urls, containers, sender = platform
    sent = {}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                     HealthCheck.large_base_example])
    @given(st.lists(ingest_message(), min_size=9, max_size=13))
    def fuzz(messages):
        for body, routing_key, content_type in messages:
            message_id = f"fuzz-{uuid.uuid4().hex}"
            sender.send(message_id, body, routing_key, content_type)
            sent[message_id] = expected_codes(body, content_type, routing_key)

    fuzz()
    assert len(sent) >= MIN_MESSAGES, f"only {len(sent)} messages were sent"

    processed, rejected = [], []
    deadline = time.monotonic() + 120
    while len(processed) + len(rejected) < len(sent) and time.monotonic() < deadline:
        if any(container._died.ready() for container in containers.values()):
            break  # a consumer crashed the service: what it held is lost to this run, say so now
        processed += [properties.correlation_id for properties, _ in sender.drain(REPLIES)]
        rejected += sender.drain("linli.ingest.rejected")
        time.sleep(0.5)
    time.sleep(1)  # anything settled twice would arrive now
    processed += [properties.correlation_id for properties, _ in sender.drain(REPLIES)]
    rejected += sender.drain("linli.ingest.rejected")

    parked = Counter(properties.message_id for properties, _ in rejected)
    settled = Counter(processed) + parked
    lost = set(sent) - set(settled)
    twice = {message_id: n for message_id, n in settled.items() if n > 1}
    strangers = set(settled) - set(sent)
    assert not lost and not twice and not strangers, (
        f"sent {len(sent)}, processed {len(processed)}, rejected {len(rejected)}: {len(lost)} lost, "
        f"{len(twice)} settled twice, {len(strangers)} unknown")

    failures, codes = [], Counter()
    for properties, _ in rejected:
        headers = properties.headers
        errors = json.loads(headers["x-linli-ingest-errors"])
        found = {e["code"] for e in errors}
        codes.update(found)
        if not errors or not all(set(e) == {"code", "field", "message"} and e["message"] for e in errors):
            failures.append(f"{properties.message_id}: errors without code, field and message: {errors}")
        if headers["x-linli-ingest-status"] not in (400, 413, 415):
            failures.append(f"{properties.message_id}: status {headers['x-linli-ingest-status']}")
        if "processing_failed" in found:
            failures.append(f"{properties.message_id}: a handler failed on it: {errors}")
        if not sent[properties.message_id] <= found:
            failures.append(f"{properties.message_id}: parked with {sorted(found)}, "
                            f"check_body names {sorted(sent[properties.message_id])}")
    should_be_parked = {message_id for message_id, expected in sent.items() if expected}
    failures += [f"{message_id}: check_body refuses it, yet it was processed"
                 for message_id in should_be_parked & set(processed)]
    print(f"\ningest: {len(sent)} sent, {len(processed)} processed, {len(rejected)} rejected; codes {dict(codes)}")
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures[:30])
    for name, url in urls.items():
        assert requests.get(url + "/health", timeout=10).status_code == 200, f"{name} stopped answering"
        assert not containers[name]._died.ready(), f"the {name} container died"
