"""Privacy scan (issues #8, #14): personal data stays where the residents service keeps them.

The platform runs as `make run` starts it, with an SMTP sink and an SMS gateway, and a partner
department entitled to personal fields reads its feed. Residents with names, phones, emails,
birth dates and document numbers no other data can contain are registered, welcomed by in-app,
email and SMS (notifications asks residents for the addresses of a batch: RPC ``get_contacts``), shown to the
partner with their personal fields (RPC ``get_for_partner``), registered for an event, and one
is erased. A queue bound to every exchange of the run's vhost — the four events exchanges,
``nameko-rpc`` (every RPC request and reply), retry, dead-letter and feed exchanges alike — keeps
every message; those, every log of the run and every document of every ``linli_*`` database are
searched for the personal values (also JSON-, URL- and unicode-escaped, any case). The residents
database may hold a kept resident's values in the fields meant for them; a document number is
stored only encrypted, so it must be found nowhere, and an erased resident's values nowhere.
"""
import json
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, quote_plus, unquote

import pika
import pymongo
import pytest
import requests

from platform_tools.platform import SERVICES as PLATFORM_SERVICES
from platform_tools.platform import mongo_uri
from tests.conftest import RUN_ID, rabbitmqctl
from tests.integration.channel_servers import SmsGateway, SmtpServer
from tests.vhost_pool import delete_users_with_prefix
from tests.waiting import until

pytestmark = pytest.mark.e2e
SOURCES = ("residents", "events", "notifications", "reports")
# Where linli_residents.residents keeps each personal value of a resident who was not erased.
# (A Latin name and its romanised form differ only in case, so each may be found in the other's field.)
NAME_FIELDS = {"name", "name_romanised", "name_search"}
KEPT_IN = {"name": NAME_FIELDS, "name_romanised": NAME_FIELDS, "phone": {"phone"}, "email": {"email"}}
PEOPLE = [
    {"name": "Zyxwq Plorth", "residence_type": "foreign", "nationality": "FR", "preferred_language": "en",
     "document_type": "passport", "document_number": "ZX9876543", "permit_type": "residence_permit_work",
     "permit_expires_on": "2027-06-30", "birth_date": "1931-02-17", "phone": "+33 7 19 28 37 46",
     "email": "zyxwq.plorth@privacy.example", "consent": {"inapp": True, "email": True, "sms": True}},
    {"name": "龘靐齉", "residence_type": "registered", "nationality": "CN", "preferred_language": "zh-CN",
     "document_type": "id_card", "document_number": "LQ88776655443", "birth_date": "1929-11-23",
     "phone": "13977553311", "email": "lq.qiuxiang@privacy.example",
     "consent": {"inapp": True, "email": True, "sms": True}},
    {"name": "Quorblex Vantid", "residence_type": "foreign", "nationality": "DE", "preferred_language": "en",
     "document_type": "passport", "document_number": "QV5550123", "birth_date": "1933-08-09"},  # erased below
]
PARTNER_FIELDS = ["name", "name_romanised", "birth_date", "document_number", "phone"]
PARTNER = {"id": "privacy-audit", "name": "privacy audit", "scopes": {
    "types": ["resident.registered"], "communities": ["tongzilin"], "personal_fields": PARTNER_FIELDS}}
SCOPES = ["residents:read", "residents:write", "residents:pii", "events:read", "events:write", "notifications:read",
          "partners:admin"]


def spellings(secret: str) -> set[str]:
    """How a value may be written down: plain, JSON- or unicode-escaped, URL-encoded; compared lower-case."""
    return {s.lower() for s in (secret, json.dumps(secret)[1:-1], secret.encode("unicode_escape").decode(),
                                quote(secret), quote_plus(secret))}


def found_in(text: str, secrets) -> list[str]:
    text = text.lower()
    return [secret for secret in secrets if any(s in text for s in spellings(secret))]


def every_binding(vhost: str) -> list[tuple[str, str]]:
    """(exchange, key) that together see every message published to any exchange of ``vhost``:
    ``#`` on a topic exchange, every key in use on a direct one, no key on a fanout or headers one
    (a headers binding without arguments matches every message). Only the default exchange, which
    takes no bindings, is left out."""
    keys_in_use = {}
    for line in rabbitmqctl("list_bindings", "-p", vhost, "--no-table-headers", "source_name", "routing_key"
                            ).splitlines():
        source, _, key = line.partition("\t")
        keys_in_use.setdefault(source, set()).add(key)
    bindings = []
    for line in rabbitmqctl("list_exchanges", "-p", vhost, "--no-table-headers", "name", "type").splitlines():
        name, _, kind = line.partition("\t")
        if name:
            keys = {"topic": {"#"}, "fanout": {""}, "headers": {""}}.get(kind) or keys_in_use.get(name, set())
            bindings += [(name, key) for key in sorted(keys)]
    return bindings


class Tap:
    """One queue bound to every exchange of the vhost; ``drain()`` keeps every raw message it got."""

    def __init__(self, amqp_uri: str, vhost: str):
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
        self.channel = self.connection.channel()
        self.queue = f"privacy-tap-{RUN_ID}-{uuid.uuid4().hex[:6]}"
        self.channel.queue_declare(self.queue, auto_delete=False)
        self.bindings = every_binding(vhost)
        for exchange, key in self.bindings:
            self.channel.queue_bind(self.queue, exchange, routing_key=key)
        self.messages = []

    @property
    def exchanges(self) -> set[str]:
        return {exchange for exchange, _ in self.bindings}

    def drain(self):
        while (got := self.channel.basic_get(self.queue, auto_ack=True))[0] is not None:
            method, properties, body = got
            self.messages.append((method.exchange, method.routing_key, body,
                                  json.dumps(properties.headers or {}, default=str)))
        return self.messages

    def close(self):
        self.channel.queue_delete(self.queue)
        self.connection.close()


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


def personal_values(person: dict) -> dict:
    """field -> value of everything personal about ``person``, its romanised name included."""
    from services.residents.domain import romanise

    values = {f: person[f] for f in ("name", "phone", "email", "document_number", "birth_date") if person.get(f)}
    digits = {"phone_digits": "".join(ch for ch in person["phone"] if ch.isdigit())} if person.get("phone") else {}
    return {**values, **digits, "name_romanised": romanise(person["name"])}


def act(linli, headers, smtp, sms):
    """Register (and fail to: a duplicate, a bad field), welcome (in-app, email, SMS; one SMS refused by
    the gateway), read the partner's feed, register for an event, erase one; returns the residents' ids."""
    base = dict(linli.urls)
    sms.answers = [400]  # errors are logged too: one SMS fails for good
    ids = []
    for person in PEOPLE:
        response = requests.post(base["residents"] + "/residents", json={"community_id": "tongzilin", **person},
                                 headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    refused = [requests.post(base["residents"] + "/residents", headers=headers, json={"community_id": "tongzilin",
                                                                                      **PEOPLE[0], **change})
               for change in ({}, {"nationality": "XX"}, {"email": "not an address " + PEOPLE[0]["email"]})]
    assert [r.status_code for r in refused] == [409, 400, 400], [r.text for r in refused]
    reachable = sum(1 for person in PEOPLE if person.get("consent"))
    until(lambda: len(smtp.messages()) >= reachable, "the welcome emails")  # addresses from get_contacts
    until(lambda: len(sms.received) >= reachable, "the welcome SMS")
    assert {m["To"] for m in smtp.messages()} >= {p["email"] for p in PEOPLE if p.get("consent")}
    feed = f"{base['partners']}/feeds/{PARTNER['id']}"

    def feed_personal():  # resident id -> data.personal, once the feed shows every resident
        items = requests.get(feed, headers=headers).json()["items"]
        personal = {i["data"]["resident_id"]: i["data"].get("personal") for i in items}
        return personal if set(ids) <= set(personal) else None

    personal = until(feed_personal, "every resident in the partner's feed")  # read through get_for_partner
    assert [personal[i]["document_number"] for i in ids] == [p["document_number"] for p in PEOPLE]
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


@pytest.fixture
def channels(free_port, tmp_path):
    """An SMTP sink and an SMS gateway for the platform's email and SMS."""
    smtp, sms = SmtpServer(free_port(), tmp_path / "mail"), SmsGateway(free_port())
    smtp.start()
    sms.start()
    yield smtp, sms
    smtp.stop()
    sms.stop()


def test_personal_data_appears_only_where_the_residents_service_keeps_them(linli, channels):
    smtp, sms = channels
    partner_user_prefix = f"linli-test-{RUN_ID}-privacy-"
    linli.env.update(LINLI_SMTP_HOST="127.0.0.1", LINLI_SMTP_PORT=str(smtp.port),
                     LINLI_SMS_GATEWAY_URL=f"http://127.0.0.1:{sms.port}/messages",
                     LINLI_DEFAULT_QUIET_HOURS="",  # none: deliveries go out now
                     LINLI_FEED_BROKER_USER_PREFIX=partner_user_prefix)
    linli.up()
    amqp_uri = linli.env["LINLI_AMQP_URI"]
    headers = linli.headers(SCOPES)
    partners = linli.urls["partners"]
    assert requests.post(partners + "/partners", json=PARTNER, headers=headers).status_code == 201
    subscribed = requests.post(f"{partners}/partners/{PARTNER['id']}/subscriptions", headers=headers, json={
        "types": ["resident.registered"], "communities": ["tongzilin"], "method": "pull"})
    assert subscribed.status_code == 201, subscribed.text
    tap = Tap(amqp_uri, unquote(amqp_uri.rsplit("/", 1)[1]))
    # Each service's own server (one SecantusDB per service under `make run`).
    servers = {service: pymongo.MongoClient(mongo_uri(linli.env, service)) for service, _, _ in PLATFORM_SERVICES}
    values = [personal_values(person) for person in PEOPLE]
    secrets = sorted({value for person in values for value in person.values()})
    try:
        ids = act(linli, headers, smtp, sms)
        erased_id = ids[-1]
        kept = {(field, value) for person in values[:-1] for field, value in person.items()}
        # Quiet: notifications knows of the erasure and reports has recorded every message the bus carried.
        until(lambda: servers["notifications"]["linli_notifications"]["audience"].find_one({"_id": erased_id, "status": "erased"}),
              "notifications to record the erasure")
        bus = [f"{name}.events" for name in SOURCES if name != "reports"]
        until(lambda: {json.loads(body)["id"] for exchange, _, body, _ in tap.drain() if exchange in bus}
              <= set(servers["reports"]["linli_reports"]["history"].distinct("_id")), "reports to record every message")
        hits = []
        for exchange, key, body, properties in tap.drain():
            hits += [f"broker {exchange} {key}: {s}" for s in found_in(body.decode("utf-8", "replace") + properties,
                                                                         secrets)]
        databases = [(mongo, name) for mongo in servers.values() for name in mongo.list_database_names()
                     if name.startswith("linli_")]
        documents, kept_where_meant = 0, set()
        for mongo, db_name in databases:
            for collection in mongo[db_name].list_collection_names():
                for document in mongo[db_name][collection].find():
                    documents += 1
                    for path, text in strings_of(document):
                        for secret in found_in(text, secrets):
                            where = {(f, secret) for f, paths in KEPT_IN.items() if path in paths} & kept
                            if (db_name, collection) == ("linli_residents", "residents") and where:
                                kept_where_meant |= where
                            else:
                                hits.append(f"db {db_name}.{collection} {document.get('_id')} {path}: {secret}")
        assert {name for _, name in databases} >= {f"linli_{name}" for name in SOURCES}, databases
        assert kept_where_meant == {(f, v) for f, v in kept if f in KEPT_IN}, "the scan must see what residents keep"
        assert documents > 0 and PEOPLE[-1]["name"] not in str(list(servers["residents"]["linli_residents"]["residents"].find()))
    finally:
        tap.close()
        for mongo in servers.values():
            mongo.close()
        linli.down()
        delete_users_with_prefix(partner_user_prefix)

    logs = sorted((linli.var_dir / "log").glob("*.log")) + sorted(linli.var_dir.glob("linli-up-*.out"))
    for log in logs:
        hits += [f"log {log.name}: {s}" for s in found_in(log.read_text("utf-8", "replace"), secrets)]
    rpc_calls = {key for exchange, key, _, _ in tap.messages if exchange == "nameko-rpc"}
    summary = (f"sent {len(secrets)} personal values; scanned {len(tap.messages)} messages from "
               f"{len(tap.exchanges)} exchanges, {len(logs)} logs, {documents} documents in {len(databases)} databases;"
               f" {len(hits)} hits")
    print(summary, *hits, sep="\n  ")
    assert {"nameko-rpc", "residents.events", "events.events", "notifications.events"} <= tap.exchanges
    assert {"residents.get_contacts", "residents.get_for_partner"} <= rpc_calls, "the scenario reads contacts and feeds"
    assert len(tap.messages) >= 3 * len(PEOPLE) and len(logs) >= len(SOURCES)
    assert not hits, summary + "\n" + "\n".join(hits)
