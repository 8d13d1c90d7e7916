"""Name search folds accents (issue #14, item 9): ``zoe`` finds Zoë, as ``wang xiuying`` finds 王秀英 —
for residents registered now and for those stored before folding existed (rewritten at start)."""
import pytest

from services.residents.service import ResidentsService
from tests.integration.test_residents import MARIE, WANG, api, register, residents  # noqa: F401

pytestmark = pytest.mark.integration

ZOE = {**MARIE, "name": "Zoë Lefèvre", "document_number": "E20000001", "phone": "+33 6 00 00 00 01"}
JOSE = {**MARIE, "name": "José Núñez", "nationality": "ES", "document_number": "E20000002", "phone": "+34 600 000 002"}
MULLER = {**MARIE, "name": "Jürgen Müller", "nationality": "DE", "document_number": "E20000003",
          "phone": "+49 151 0000003"}


def names_found(api, name):
    response = api()("GET", "/residents", params={"community_id": "tongzilin", "name": name})
    assert response.status_code == 200, response.text
    return sorted(item["name"] for item in response.json()["items"])


def test_a_search_without_accents_finds_the_accented_name(api):
    for body in (ZOE, JOSE, MULLER, WANG):
        register(api, body)
    assert names_found(api, "zoe") == ["Zoë Lefèvre"]
    assert names_found(api, "lefevre") == ["Zoë Lefèvre"]
    assert names_found(api, "Jose") == ["José Núñez"]
    assert names_found(api, "nunez") == ["José Núñez"]
    assert names_found(api, "muller") == ["Jürgen Müller"]
    assert names_found(api, "MÜLLER") == ["Jürgen Müller"]  # an accented query finds it too
    assert names_found(api, "wang xiuying") == ["王秀英"]     # pinyin still folds as before


def test_residents_stored_before_folding_are_found_after_a_restart(residents, api, container_factory, config,
                                                                     mongo_client, db_prefix):
    resident_id = register(api, ZOE)
    database = mongo_client[f"{db_prefix}residents"]
    # As a resident registered before issue #14 was stored: its search text with the accents kept.
    from bson import ObjectId
    database["residents"].update_one({"_id": ObjectId(resident_id)},
                                     {"$set": {"name_search": "zoë lefèvre | zoë lefèvre | zoëlefèvre"}})
    database["migrations"].delete_many({})
    assert names_found(api, "zoe") == []
    residents.stop()
    container_factory(ResidentsService, config).start()
    assert names_found(api, "zoe") == ["Zoë Lefèvre"]
    assert database["migrations"].find_one({"_id": "name_search_folded"})
