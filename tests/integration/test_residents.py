"""The residents service in a real container: every operation over HTTP and RPC."""
import json
from datetime import date, timedelta

import eventlet
import pytest
import requests
from nameko.standalone.rpc import ServiceRpcProxy

from services.common.sealing import open_sealed
from services.residents.service import ResidentsService
from tests.conftest import TEST_READER_PRIVATE_KEY

pytestmark = pytest.mark.integration

MARIE = {
    "community_id": "tongzilin", "name": "Marie Dubois", "residence_type": "foreign", "nationality": "FR",
    "preferred_language": "fr", "birth_date": "1986-04-12", "phone": "+33 6 12 34 56 78",
    "document_type": "passport", "document_number": "E12345678",
    "permit_type": "residence_permit_work", "permit_expires_on": "2027-03-01", "tags": ["volunteer"],
    "household_id": "h-17", "grid_id": "tongzilin-03",
}
WANG = {
    "community_id": "tongzilin", "name": "王秀英", "residence_type": "registered", "nationality": "CN",
    "preferred_language": "zh-CN", "birth_date": "1948-03-02", "phone": "13800001111", "tags": ["elderly"],
    "household_id": "h-17",
}
WORKER_SCOPES = ["residents:read", "residents:write"]


@pytest.fixture
def residents(container_factory, config):
    container = container_factory(ResidentsService, config)
    container.start()
    return container


@pytest.fixture
def api(residents, config, token):
    base = f"http://{config['WEB_SERVER_ADDRESS']}"

    class Api:
        def __init__(self, scopes=WORKER_SCOPES, communities=("tongzilin",)):
            self.headers = {"Authorization": f"Bearer {token(scopes, communities)}"}

        def __call__(self, method, path, **kwargs):
            return requests.request(method, base + path, headers=self.headers, **kwargs)

    return Api


def register(api, body):
    response = api()("POST", "/residents", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_register_get_masked_and_with_pii(api, bus_tap):
    tap = bus_tap("residents")
    resident_id = register(api, MARIE)
    view = api()("GET", f"/residents/{resident_id}").json()
    assert view["document_number"] == "E1234****78"
    assert view["name_romanised"] == "marie dubois" and view["permit_expires_on"] == "2027-03-01"
    full = api(WORKER_SCOPES + ["residents:pii"])("GET", f"/residents/{resident_id}").json()
    assert full["document_number"] == "E12345678"
    [message] = tap.messages()
    assert message["type"] == "resident.registered" and message["data"]["resident_id"] == resident_id
    assert "Marie" not in str(message) and "E12345678" not in str(message) and "+33" not in str(message)


def test_the_same_document_twice_is_409_with_the_existing_id(api):
    first = register(api, MARIE)
    again = api()("POST", "/residents", json={**MARIE, "name": "M. Dubois", "phone": None})
    assert again.status_code == 409
    assert again.json()["details"] == {"existing_id": first, "rule": "same document"}


def test_same_name_birth_date_and_phone_in_one_community_is_409(api, token):
    first = register(api, WANG)
    again = api()("POST", "/residents", json={**WANG, "phone": "138 0000 1111", "tags": []})
    assert again.status_code == 409 and again.json()["details"]["existing_id"] == first
    # Another community may have its own 王秀英 with the same birthday and phone.
    yulin = api(WORKER_SCOPES, ("yulin",))("POST", "/residents", json={**WANG, "community_id": "yulin"})
    assert yulin.status_code == 201


def test_racing_registrations_of_one_person_make_one_record(api):
    pool = eventlet.GreenPool(8)
    statuses = sorted(pool.imap(lambda _: api()("POST", "/residents", json=MARIE).status_code, range(8)))
    assert statuses == [201] + [409] * 7


def test_partial_update_names_the_changed_fields_only(api, bus_tap):
    resident_id = register(api, MARIE)
    tap = bus_tap("residents")
    response = api()("PATCH", f"/residents/{resident_id}", json={"phone": "13900002222", "tags": ["volunteer"],
                                                                    "preferred_language": "en"})
    assert response.json()["changed_fields"] == ["phone", "preferred_language"]
    [message] = tap.messages()
    assert message["type"] == "resident.updated"
    assert message["data"]["changed_fields"] == ["phone", "preferred_language"]
    assert message["data"]["preferred_language"] == "en" and "phone" not in message["data"]
    assert api()("GET", f"/residents/{resident_id}").json()["phone"] == "13900002222"


def test_a_consent_update_changes_only_the_channels_it_names(api):
    resident_id = register(api, MARIE)
    response = api()("PATCH", f"/residents/{resident_id}", json={"consent": {"sms": True}})
    assert response.json()["changed_fields"] == ["consent"]
    assert api()("GET", f"/residents/{resident_id}").json()["consent"] == {"inapp": True, "sms": True, "email": False}


def test_an_update_that_breaks_a_rule_is_400_and_changes_nothing(api):
    resident_id = register(api, MARIE)
    response = api()("PATCH", f"/residents/{resident_id}", json={"nationality": "CN"})
    assert response.status_code == 400 and "nationality" in response.json()["details"]["fields"]
    assert api()("GET", f"/residents/{resident_id}").json()["nationality"] == "FR"


def test_move_needs_both_communities_and_is_announced(api, bus_tap):
    resident_id = register(api, MARIE)
    refused = api()("POST", f"/residents/{resident_id}/move", json={"community_id": "yulin"})
    assert refused.status_code == 403
    tap = bus_tap("residents")
    both = api(WORKER_SCOPES, ("tongzilin", "yulin"))
    moved = both("POST", f"/residents/{resident_id}/move", json={"community_id": "yulin", "moved_on": "2026-11-20"})
    assert moved.status_code == 200
    [message] = tap.messages()
    assert message["type"] == "resident.moved" and message["data"]["from_community_id"] == "tongzilin"
    assert api()("GET", f"/residents/{resident_id}").status_code == 403  # no longer tongzilin's


def test_departure_ends_changes(api, bus_tap):
    resident_id = register(api, WANG)
    tap = bus_tap("residents")
    assert api()("POST", f"/residents/{resident_id}/departure", json={"reason": "moved_away"}).status_code == 200
    assert [m["type"] for m in tap.messages()] == ["resident.departed"]
    again = api()("PATCH", f"/residents/{resident_id}", json={"phone": "13900000000"})
    assert again.status_code == 409 and again.json()["error"] == "resident_departed"
    bad = api()("POST", f"/residents/{resident_id}/departure", json={"reason": "abducted by aliens"})
    assert bad.status_code == 400 and "reason" in bad.json()["details"]["fields"]


def test_search_by_name_in_chinese_or_pinyin_tags_and_paging(api):
    register(api, MARIE)
    register(api, WANG)
    for i in range(25):
        register(api, {**WANG, "name": f"李{i}", "phone": None, "tags": [], "household_id": None})

    def names(**params):
        body = api()("GET", "/residents", params={"community_id": "tongzilin", **params}).json()
        return body["total"], [r["name"] for r in body["items"]]

    assert names(name="秀英") == (1, ["王秀英"])
    assert names(name="wang xiuying") == (1, ["王秀英"])
    assert names(name="WangXiuying") == (1, ["王秀英"])
    assert names(name="dubois") == (1, ["Marie Dubois"])
    assert names(tag="elderly", nationality="CN") == (1, ["王秀英"])
    assert names(nationality="CN")[0] == 26
    assert names(residence_type="foreign") == (1, ["Marie Dubois"])
    total, page3 = names(page_size=10, page=3)
    assert total == 27 and len(page3) == 7
    assert api()("GET", "/residents", params={"community_id": "tongzilin", "page_size": 1000}).status_code == 400
    assert api()("GET", "/residents", params={"community_id": "yulin"}).status_code == 403


def test_household_view(api):
    register(api, MARIE)
    register(api, WANG)
    household = api()("GET", "/communities/tongzilin/households/h-17").json()
    assert [m["name"] for m in household["members"]] == ["王秀英", "Marie Dubois"]  # eldest first
    assert api()("GET", "/communities/tongzilin/households/h-404").status_code == 404


def test_erasure_leaves_no_personal_data_in_the_database(api, bus_tap, mongo_client, config):
    resident_id = register(api, MARIE)
    tap = bus_tap("residents")
    assert api()("DELETE", f"/residents/{resident_id}/personal-data").status_code == 403  # needs residents:pii
    erased = api(WORKER_SCOPES + ["residents:pii"])("DELETE", f"/residents/{resident_id}/personal-data")
    assert erased.status_code == 200
    assert [m["type"] for m in tap.messages()] == ["resident.erased"]
    view = api()("GET", f"/residents/{resident_id}").json()
    assert view["erased"] and view["name"] is None and view["nationality"] == "FR"
    from bson import json_util

    database = mongo_client[config["MONGO_DB_PREFIX"] + "residents"]
    dump = json_util.dumps({name: list(database[name].find()) for name in database.list_collection_names()})
    for secret in ("E12345678", "Marie", "Dubois", "+33 6 12 34 56 78", "1986-04-12"):
        assert secret not in dump


def test_get_contact_returns_only_what_the_purpose_needs_and_is_audited(api, config, mongo_client):
    resident_id = register(api, MARIE)
    with ServiceRpcProxy("residents", config) as residents:
        contact = open_sealed(residents.get_contact(resident_id, "notify"), TEST_READER_PRIVATE_KEY)
        assert set(contact) == {"resident_id", "reachable", "preferred_language", "consent", "phone", "email",
                                "community_id"}
        from nameko.exceptions import RemoteError

        with pytest.raises(RemoteError, match="UnknownPurpose"):
            residents.get_contact(resident_id, "marketing")
    audit = list(mongo_client[config["MONGO_DB_PREFIX"] + "residents"]["contact_audit"].find())
    assert [(a["purpose"], a["granted"]) for a in audit] == [("notify", True), ("marketing", False)]


def test_get_contacts_answers_many_in_one_call_sealed_and_audited_as_get_contact(api, config, mongo_client):
    marie = register(api, {**MARIE, "email": "marie.dubois@example.fr"})
    wang = register(api, WANG)
    assert api()("POST", f"/residents/{wang}/departure", json={"reason": "moved_away"}).status_code == 200
    unknown = "0123456789abcdef01234567"
    database = mongo_client[config["MONGO_DB_PREFIX"] + "residents"]
    with ServiceRpcProxy("residents", config) as residents:
        replies = residents.get_contacts([marie, wang, unknown, marie, "not-an-id"], "notify")
        from nameko.exceptions import RemoteError

        with pytest.raises(RemoteError, match="UnknownPurpose"):
            residents.get_contacts([marie], "marketing")
    wire = json.dumps(replies).lower()
    assert not [value for value in ("marie", "dubois", "+33 6", "example.fr", "13800001111") if value in wire]
    by_id = {reply["resident_id"]: reply for reply in replies}
    assert sorted(by_id) == sorted([marie, wang])  # the unknown left out, each once
    assert by_id[wang] == {"resident_id": wang, "reachable": False}  # departed
    assert by_id[marie]["sealed_for"] == "notifications"
    contact = open_sealed(by_id[marie], TEST_READER_PRIVATE_KEY)
    assert (contact["email"], contact["phone"], contact["reachable"]) == ("marie.dubois@example.fr", MARIE["phone"], True)
    assert set(contact) == {"resident_id", "reachable", "preferred_language", "consent", "phone", "email",
                            "community_id"}
    audit = sorted((a["resident_id"], a["purpose"], a["granted"]) for a in database["contact_audit"].find())
    assert audit == sorted([(marie, "notify", True), (wang, "notify", True), (unknown, "notify", True),
                            ("not-an-id", "notify", True), (marie, "marketing", False)])


def test_a_plain_rpc_client_reads_no_personal_value_in_any_reply(api, config):
    """Any broker user may call an RPC (or read its reply on nameko-rpc): the personal part of a contact or
    a partner's fields is sealed for its one reader (notifications, partners), and ``get`` and ``household``
    leave it out."""
    marie = {**MARIE, "email": "marie.dubois@example.fr"}
    resident_id = register(api, marie)
    personal = [marie[f] for f in ("name", "phone", "email", "document_number", "birth_date")] + ["marie dubois"]
    with ServiceRpcProxy("residents", config) as residents:
        replies = [residents.get_contact(resident_id, "notify"),
                   residents.get_for_partner(resident_id, "exit-entry",
                                             ["name", "name_romanised", "document_number", "birth_date", "phone"])]
        plain = [residents.get(resident_id), residents.household("tongzilin", marie["household_id"])]
    wire = json.dumps(replies + plain).lower()
    assert [value for value in personal if value.lower() in wire] == []
    assert [value for value in ("E1234", "****") if value.lower() in wire] == []  # not even a masked number
    assert [reply["resident_id"] for reply in replies] == [resident_id, resident_id]
    assert [reply["sealed_for"] for reply in replies] == ["notifications", "partners"]
    assert plain[0]["nationality"] == "FR" and [r["id"] for r in plain[1]["members"]] == [resident_id]
    contact, partner = (open_sealed(reply, TEST_READER_PRIVATE_KEY) for reply in replies)
    assert (contact["phone"], contact["email"]) == (marie["phone"], marie["email"])
    assert (partner["document_number"], partner["name_romanised"]) == ("E12345678", "marie dubois")


def test_permit_reminders_fire_once_per_threshold(api, bus_tap, config):
    today = date(2026, 11, 26)
    ids = {}
    for days in (31, 30, 7, 5, 1, -1):
        body = {**MARIE, "name": f"Resident {days}", "document_number": f"E{1000 + days + 10}",
                "phone": None, "permit_expires_on": (today + timedelta(days=days)).isoformat()}
        ids[days] = register(api, body)
    tap = bus_tap("residents")
    with ServiceRpcProxy("residents", config) as residents:
        assert residents.run_permit_reminders(today.isoformat()) == 4
        sent = {m["data"]["resident_id"]: m["data"]["threshold_days"] for m in tap.messages()}
        assert sent == {ids[30]: 30, ids[7]: 7, ids[5]: 7, ids[1]: 1}
        assert residents.run_permit_reminders(today.isoformat()) == 0  # once per resident per threshold
        # Tomorrow only the permit that was 31 days out reaches a new threshold.
        assert residents.run_permit_reminders((today + timedelta(days=1)).isoformat()) == 1
        assert [m["data"]["resident_id"] for m in tap.messages()] == [ids[31]]


def test_the_operations_without_personal_fields_are_also_rpcs(api, config):
    from nameko.exceptions import MethodNotFound, RemoteError

    resident_id = register(api, MARIE)
    with ServiceRpcProxy("residents", config) as rpc:
        assert rpc.get(resident_id)["document_type"] == "passport"  # the number is personal: never in a reply
        assert [m["id"] for m in rpc.household("tongzilin", "h-17")["members"]] == [resident_id]
        rpc.move(resident_id, {"community_id": "yulin", "household_id": "h-2"})
        assert rpc.get(resident_id)["community_id"] == "yulin"
        rpc.depart(resident_id, {"reason": "moved_away"})
        assert rpc.get(resident_id)["status"] == "departed"
        for taking_personal_fields in ("register", "update", "search"):  # a request crosses the broker in clear
            with pytest.raises(MethodNotFound):
                getattr(rpc, taking_personal_fields)({"name": MARIE["name"]})
        with pytest.raises(RemoteError, match="NotFound"):
            rpc.get("0123456789abcdef01234567")
