"""Issue #14, item 5: one same-person rule at the three doors — HTTP, the ingest door, the form import.

Each case puts Marie in the registry as it says, then she comes in again at one door, in tongzilin:
(a) active in tongzilin: already registered, with her id; (b) active in yulin: registered elsewhere, move her;
(c) departed: registered again, linked to her earlier record; (d) erased: registered as someone new.
"""
import csv
import io
import json
import uuid
from datetime import datetime, timezone

import pika
import pytest
import requests

from services.residents.service import ResidentsService
from tests.waiting import until

pytestmark = pytest.mark.integration

MARIE = {
    "community_id": "tongzilin", "name": "Marie Dubois", "residence_type": "foreign", "nationality": "FR",
    "preferred_language": "fr", "birth_date": "1986-04-12", "phone": "+33 6 12 34 56 78",
    "document_type": "passport", "document_number": "E12345678",
}
SCOPES = ["residents:read", "residents:write", "residents:pii"]


@pytest.fixture
def registry(container_factory, config, token, amqp_uri):
    container_factory(ResidentsService, config).start()
    base = f"http://{config['WEB_SERVER_ADDRESS']}"
    headers = {"Authorization": f"Bearer {token(SCOPES, communities=('tongzilin', 'yulin'))}"}
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()

    class Registry:
        def call(self, method, path, **kwargs):
            return requests.request(method, base + path, headers=headers, timeout=60, **kwargs)

        def ingest(self, message):
            """The row through linli.ingest: ``(outcome, resident_id)`` from the reply, or the rejection's errors."""
            reply_queue = channel.queue_declare("", exclusive=True).method.queue
            channel.basic_publish("linli.ingest", message["type"], json.dumps(message).encode(), pika.BasicProperties(
                content_type="application/json", reply_to=reply_queue, delivery_mode=2))

            def settled():
                method, _, body = channel.basic_get(reply_queue, auto_ack=True)
                if method:
                    return "accepted", json.loads(body)["data"]
                method, properties, _ = channel.basic_get("linli.ingest.rejected", auto_ack=True)
                if method:
                    return "rejected", json.loads(properties.headers["x-linli-ingest-errors"])
                return None

            return until(settled, what="the ingest door's answer")

        def run_import(self, content):
            job_id = self.call("POST", "/residents/imports", data=content, params={"filename": "form.csv"}).json()["id"]

            def completed():
                job = self.call("GET", f"/residents/imports/{job_id}").json()
                return job if job["status"] == "completed" else None

            return until(completed, what="the import")

    yield Registry()
    connection.close()


def row_message():
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "grid-system/tongzilin",
            "type": "resident.form_submitted", "time": datetime.now(timezone.utc).isoformat(),
            "datacontenttype": "application/json", "dataschema": "urn:linli:contracts:resident.form_submitted:v1",
            "community": "tongzilin", "data": {"community_id": "tongzilin", "row": dict(MARIE)}}


def form_csv(rows):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(MARIE))
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def arrange(registry, case):
    """Marie in the registry as ``case`` says; returns her (earlier) id."""
    community = "yulin" if case == "elsewhere" else "tongzilin"
    response = registry.call("POST", "/residents", json={**MARIE, "community_id": community})
    assert response.status_code == 201, response.text
    earlier = response.json()["id"]
    if case == "departed":
        assert registry.call("POST", f"/residents/{earlier}/departure", json={"reason": "moved_away"}).ok
    if case == "erased":
        assert registry.call("DELETE", f"/residents/{earlier}/personal-data").ok
    return earlier


def through_http(registry, earlier):
    response = registry.call("POST", "/residents", json=MARIE)
    if response.status_code == 201:
        return "registered", response.json()["id"], None
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["details"]["existing_id"] == earlier and earlier in body["message"]
    return body["error"], earlier, body["details"].get("community_id")


def through_ingest(registry, earlier):
    message = row_message()
    kind, answer = registry.ingest(message)
    if kind == "accepted":
        assert registry.ingest(message) == (kind, answer)  # an exact replay: the same answer, not an error
        return answer["outcome"], answer["resident_id"], None
    [rejection] = answer
    assert earlier in rejection["message"] and f"POST /residents/{earlier}/move" in rejection["message"]
    return rejection["code"], earlier, "yulin" if "community yulin" in rejection["message"] else None


def through_import(registry, earlier):
    job = registry.run_import(form_csv([MARIE]))
    if job["registered"] == 1:
        found = registry.call("GET", "/residents", params={"community_id": "tongzilin"}).json()["items"]
        [new] = [r["id"] for r in found if r["id"] != earlier]
        return "registered", new, None
    if job["already_registered"] == 1:
        assert job["notes"] == [f"row 2: already registered as {earlier}"] and job["errors"] == []
        return "already_registered", earlier, None
    assert job["rejected"] == 1 and job["notes"] == []
    [error] = job["errors"]
    assert error.startswith("row 2, document_number: ") and f"POST /residents/{earlier}/move" in error
    return "registered_elsewhere", earlier, "yulin" if "community yulin" in error else None


DOORS = {"http": through_http, "ingest": through_ingest, "import": through_import}
# case -> (verdict, is the answer the earlier id, community named, previous_id of the new record is the earlier)
EXPECTED = {
    "active_here": ("already_registered", True, None, None),
    "elsewhere": ("registered_elsewhere", True, "yulin", None),
    "departed": ("registered", False, None, True),
    "erased": ("registered", False, None, False),
}


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("case", EXPECTED)
def test_one_same_person_rule_at_every_door(registry, case, door):
    earlier = arrange(registry, case)
    verdict, resident_id, community = DOORS[door](registry, earlier)
    expected_verdict, same_id, expected_community, linked = EXPECTED[case]
    assert (verdict, resident_id == earlier, community) == (expected_verdict, same_id, expected_community)
    if verdict == "registered":
        new = registry.call("GET", f"/residents/{resident_id}").json()
        assert new["status"] == "active" and new["document_number"] == MARIE["document_number"]
        assert new["previous_id"] == (earlier if linked else None)


def test_a_resident_departed_before_the_rule_is_migrated_and_may_register_again(
        container_factory, config, token, mongo_client):
    """Departures stored before this rule kept their identity keys; the service moves them aside at start."""
    headers = {"Authorization": f"Bearer {token(SCOPES)}"}
    base = f"http://{config['WEB_SERVER_ADDRESS']}"
    first = container_factory(ResidentsService, config)
    first.start()
    earlier = requests.post(base + "/residents", json=MARIE, headers=headers).json()["id"]
    assert requests.post(f"{base}/residents/{earlier}/departure", json={"reason": "moved_away"}, headers=headers).ok
    first.stop()
    database = mongo_client[config["MONGO_DB_PREFIX"] + "residents"]
    stored = database["residents"].find_one()
    old_shape = dict(entry.split(":", 1) for entry in stored["former_identity"])  # document_key, person_key
    database["residents"].update_one({"_id": stored["_id"]},
                                     {"$set": old_shape, "$unset": {"former_identity": ""}})
    database["migrations"].delete_many({})

    container_factory(ResidentsService, config).start()
    again = requests.post(base + "/residents", json=MARIE, headers=headers)
    assert again.status_code == 201, again.text
    new = requests.get(f"{base}/residents/{again.json()['id']}", headers=headers).json()
    assert new["previous_id"] == earlier


def test_a_token_that_does_not_reach_the_other_community_is_not_told_who_or_where(registry, config, token):
    """(b) to a tongzilin-only token, over HTTP and in an import: refused, but neither the yulin resident's id
    nor yulin is named — a 409 must not be a way to look into a community the token does not cover."""
    earlier = arrange(registry, "elsewhere")
    headers = {"Authorization": f"Bearer {token(SCOPES, communities=('tongzilin',))}"}
    base = f"http://{config['WEB_SERVER_ADDRESS']}"
    response = requests.post(base + "/residents", json=MARIE, headers=headers, timeout=60)
    assert response.status_code == 409 and response.json()["error"] == "registered_elsewhere"
    assert earlier not in response.text and "yulin" not in response.text
    assert set(response.json()["details"]) == {"rule"}

    job_id = requests.post(base + "/residents/imports", data=form_csv([MARIE]), params={"filename": "one.csv"},
                           headers=headers, timeout=60).json()["id"]

    def completed():
        job = requests.get(f"{base}/residents/imports/{job_id}", headers=headers, timeout=60).json()
        return job if job["status"] == "completed" else None

    job = until(completed, what="the import")
    [error] = job["errors"]
    assert job["rejected"] == 1 and "does not cover" in error
    assert earlier not in error and "yulin" not in error
