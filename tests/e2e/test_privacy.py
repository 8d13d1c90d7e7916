"""Privacy scan (issue #8): names and document numbers stay where the residents service keeps them.

The platform runs as `make run` starts it. Residents with names and document
numbers no other data can contain are registered, welcomed, registered for an
event, and one is erased; then every message that crossed the four events
exchanges, every log of the run and every document of every ``linli_*``
database is searched for them (also JSON-, URL- and unicode-escaped, any case).
The residents database may hold a kept resident's name in the fields meant for
it; a document number is stored only encrypted, so it must be found nowhere,
and an erased resident's name nowhere at all.
"""
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, quote_plus

import pymongo
import pytest
import requests
from kombu import Connection, Exchange, Queue

pytestmark = pytest.mark.e2e
SOURCES = ("residents", "events", "notifications", "reports")
NAME_FIELDS = {"name", "name_search", "name_romanised"}  # of linli_residents.residents
PEOPLE = [
    {"name": "Zyxwq Plorth", "residence_type": "foreign", "nationality": "FR", "preferred_language": "en",
     "document_type": "passport", "document_number": "ZX9876543", "permit_type": "residence_permit_work",
     "permit_expires_on": "2027-06-30"},
    {"name": "龘靐齉", "residence_type": "registered", "nationality": "CN", "preferred_language": "zh-CN",
     "document_type": "id_card", "document_number": "LQ88776655443"},
    {"name": "Quorblex Vantid", "residence_type": "foreign", "nationality": "DE", "preferred_language": "en",
     "document_type": "passport", "document_number": "QV5550123"},  # erased below
]
SCOPES = ["residents:read", "residents:write", "residents:pii", "events:read", "events:write", "notifications:read"]


def until(check, what, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


def spellings(secret: str) -> set[str]:
    """How a value may be written down: plain, JSON- or unicode-escaped, URL-encoded; compared lower-case."""
    return {s.lower() for s in (secret, json.dumps(secret)[1:-1], secret.encode("unicode_escape").decode(),
                                quote(secret), quote_plus(secret))}


def found_in(text: str, secrets) -> list[str]:
    text = text.lower()
    return [secret for secret in secrets if any(s in text for s in spellings(secret))]


class Tap:
    """A queue bound with ``#`` to each exchange; ``drain()`` keeps every raw message it got."""

    def __init__(self, amqp_uri, exchanges):
        self.connection = Connection(amqp_uri)
        self.queues = [Queue(f"privacy-tap-{name}-{uuid.uuid4().hex[:6]}", routing_key="#", auto_delete=False,
                             exchange=Exchange(name, type="topic", durable=True))(self.connection.default_channel)
                       for name in exchanges]
        self.messages = []
        for queue in self.queues:
            queue.declare()

    def drain(self):
        for queue in self.queues:
            while (message := queue.get(no_ack=True)) is not None:
                self.messages.append((queue.exchange.name, message.delivery_info.get("routing_key"),
                                      message.body if isinstance(message.body, bytes) else message.body.encode(),
                                      json.dumps(message.headers or {}, default=str)))
        return self.messages

    def close(self):
        for queue in self.queues:
            queue.delete()
        self.connection.release()


def strings_of(value, path=""):
    """(dotted path, text) of every string (or bytes) inside a document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings_of(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings_of(item, path)
    elif isinstance(value, (str, bytes)):
        yield path, value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def act(linli, headers):
    """Register, welcome, register for an event, erase one; returns the residents' ids."""
    base = {name: linli.urls[name] for name in SOURCES}
    ids = []
    for person in PEOPLE:
        response = requests.post(base["residents"] + "/residents", json={"community_id": "tongzilin", **person},
                                 headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    starts = datetime.now(timezone.utc) + timedelta(days=7)
    event = {"community_id": "tongzilin", "organiser": "foreign_resident_service_centre", "category": "culture",
             "title": {"zh-CN": "隐私巡检", "en": "Privacy walk"}, "venue": "桐梓林社区活动中心",
             "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=2)).isoformat(), "capacity": 10}
    [event_id] = requests.post(base["events"] + "/events", json=event, headers=headers).json()["ids"]
    assert requests.post(f"{base['events']}/events/{event_id}/schedule", headers=headers).status_code == 200
    for resident_id in ids:
        inbox = f"{base['notifications']}/residents/{resident_id}/inbox"

        def kinds():  # a 404 until notifications has heard of the resident
            return {i["kind"] for i in requests.get(inbox, headers=headers).json().get("items", [])}

        until(lambda: "welcome" in kinds(), f"the welcome of {resident_id}")
        registered = requests.post(f"{base['events']}/events/{event_id}/registrations",
                                   json={"resident_id": resident_id}, headers=headers)
        assert registered.status_code == 201, registered.text
        until(lambda: "registration_confirmed" in kinds(), f"the confirmation of {resident_id}")
    erased = requests.delete(f"{base['residents']}/residents/{ids[-1]}/personal-data", headers=headers)
    assert erased.status_code == 200, erased.text
    return ids


def test_names_and_document_numbers_appear_only_where_the_residents_service_keeps_them(linli):
    linli.up()
    amqp_uri = linli.env["LINLI_AMQP_URI"]
    bus = Tap(amqp_uri, [f"{name}.events" for name in SOURCES])
    rpc = Tap(amqp_uri, ["nameko-rpc"])  # requests and replies between services
    mongo = pymongo.MongoClient(f"mongodb://127.0.0.1:{linli.env['LINLI_MONGO_PORT']}/?replicaSet=secantus")
    try:
        ids = act(linli, linli.headers(SCOPES))
        erased_id = ids[-1]
        names = [p["name"] for p in PEOPLE]
        numbers = [p["document_number"] for p in PEOPLE]
        kept_names, erased_name = names[:-1], names[-1]
        # Quiet: notifications knows of the erasure and reports has recorded every message the bus carried.
        until(lambda: mongo["linli_notifications"]["audience"].find_one({"_id": erased_id, "status": "erased"}),
              "notifications to record the erasure")
        until(lambda: {json.loads(body)["id"] for exchange, _, body, _ in bus.drain() if exchange != "reports.events"}
              <= set(mongo["linli_reports"]["history"].distinct("_id")), "reports to record every message")
        hits = []
        for exchange, key, body, headers in bus.drain():
            hits += [f"bus {exchange} {key}: {s}" for s in found_in(body.decode("utf-8", "replace") + headers,
                                                                      names + numbers)]
        rpc_hits = [f"{key}: {s}" for _, key, body, headers in rpc.drain()
                    for s in found_in(body.decode("utf-8", "replace") + headers, names + numbers)]

        databases = [name for name in mongo.list_database_names() if name.startswith("linli_")]
        documents, kept_where_meant = 0, set()
        for db_name in databases:
            for collection in mongo[db_name].list_collection_names():
                for document in mongo[db_name][collection].find():
                    documents += 1
                    for path, text in strings_of(document):
                        for secret in found_in(text, names + numbers):
                            allowed = (secret in kept_names and (db_name, collection) == ("linli_residents", "residents")
                                       and path in NAME_FIELDS)
                            if allowed:
                                kept_where_meant.add(secret)
                            else:
                                hits.append(f"db {db_name}.{collection} {document.get('_id')} {path}: {secret}")
        assert set(databases) >= {f"linli_{name}" for name in SOURCES}, databases
        assert kept_where_meant == set(kept_names), "the scan must see the names the residents keep"
        assert documents > 0 and erased_name not in str(list(mongo["linli_residents"]["residents"].find()))
    finally:
        bus.close()
        rpc.close()
        mongo.close()
        linli.down()

    logs = sorted((linli.var_dir / "log").glob("*.log")) + sorted(linli.var_dir.glob("linli-up-*.out"))
    for log in logs:
        hits += [f"log {log.name}: {s}" for s in found_in(log.read_text("utf-8", "replace"), names + numbers)]
    summary = (f"sent {len(names)} names and {len(numbers)} document numbers; scanned {len(bus.messages)} bus messages, "
               f"{len(logs)} logs, {documents} documents in {len(databases)} databases; {len(hits)} hits"
               f" (and {len(rpc_hits)} in {len(rpc.messages)} RPC messages)")
    print(summary, *hits, *rpc_hits, sep="\n  ")
    assert len(bus.messages) >= 3 * len(PEOPLE) and len(logs) >= len(SOURCES)
    assert not hits, summary + "\n" + "\n".join(hits)
    assert not rpc_hits, summary + "\n" + "\n".join(rpc_hits)
