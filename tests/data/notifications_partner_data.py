"""Writes ``notifications_partner_data_v1.json``: partner-feed data as the notifications service stored it
before partner departments became the partners service (the input of ``services/partners/migrations``).

It was run on the code of that time (commit 46bbb74, where ``feed_store`` was ``services.notifications.feed_store``),
against a SecantusDB of its own: ``python -m tests.data.notifications_partner_data``. The storage format did not
change in the move, so running it now (with the partners service's ``feed_store``) writes the same shape.

What it holds: the partner ``culture-bureau`` (events and feedback, every community) with a queue, a webhook and
a pull subscription; three ``event.scheduled`` messages recorded (entries for each subscription, sequence 1-9);
the queue's deliveries pending, the webhook's failed after its attempts; the sequence counter.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pymongo
from bson import json_util

from contracts import EVENT_SCHEDULED, build_envelope, parse_envelope
from services.common.mongo import Database
from services.partners import feed_store

OUTPUT = Path(__file__).with_name("notifications_partner_data_v1.json")
COLLECTIONS = (feed_store.PARTNERS, feed_store.SUBSCRIPTIONS, feed_store.COUNTERS, feed_store.ENTRIES,
               feed_store.DELIVERIES)
PARTNER_ID = "culture-bureau"
SCOPES = {"types": ["event.*", "feedback.submitted"], "communities": "*", "personal_fields": [],
          "personal_residence_types": []}


def write(db) -> None:
    feed_store.ensure_indexes(db.db)
    feed_store.insert_partner(db, {"_id": PARTNER_ID, "name": "Culture bureau", "scopes": SCOPES})
    for method, url, secret in (("queue", None, None), ("webhook", "https://culture.example.org/linli", "whsec_" + "A" * 43),
                                ("pull", None, None)):
        feed_store.insert_subscription(db, {"partner_id": PARTNER_ID, "types": ["event.scheduled"],
                                            "communities": ["tongzilin"], "method": method, "url": url,
                                            "secret": secret})
    envelopes = [parse_envelope(build_envelope(EVENT_SCHEDULED.name, {**EVENT_SCHEDULED.example,
                                                                      "event_id": f"evt-{n}"},
                                               source="linli/events", community="tongzilin").to_wire())
                 for n in range(1, 4)]
    assert feed_store.record_messages(db, envelopes) == 9
    for delivery in db[feed_store.DELIVERIES].find({"method": "webhook"}):
        changes = feed_store.failed_attempt({**delivery, "attempts": 7}, "HTTP 503 from the endpoint", None)
        db[feed_store.DELIVERIES].update_one({"_id": delivery["_id"]}, {"$set": changes})


def dump(db) -> dict:
    return {name: sorted(db[name].find(), key=lambda d: str(d["_id"])) for name in COLLECTIONS}


def main() -> None:
    data_dir = tempfile.mkdtemp(prefix="linli-partner-data-")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "secantusd-py"), "--host", "127.0.0.1",
                               "--port", str(port), "--storage-path", f"{data_dir}/db"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            time.sleep(0.2)
        client = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/?replicaSet=secantus", tz_aware=True)
        db = Database(client, "linli_notifications")
        write(db)
        document = {"written_at": datetime.now(timezone.utc), "database": "notifications", "collections": dump(db)}
        OUTPUT.write_text(json_util.dumps(document, indent=1, json_options=json_util.CANONICAL_JSON_OPTIONS) + "\n",
                          encoding="utf-8")
        client.close()
    finally:
        server.terminate()
        server.wait(20)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
