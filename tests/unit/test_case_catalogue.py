"""The catalogue of case types: the shipped file loads, and a broken one is refused naming the type and field."""
import copy

import pytest
import yaml

from services.cases import catalogue
from services.cases.catalogue import CatalogueError

SHIPPED = yaml.safe_load(catalogue.DEFAULT_CATALOGUE.read_text(encoding="utf-8"))


def test_the_shipped_catalogue_has_the_issues_types_routed_to_their_departments():
    loaded = catalogue.load()
    assert list(loaded.types) == ["streetlight", "construction_noise_night", "sanitation", "property_management",
                                  "neighbour_dispute", "residence_permit_visa", "other"]
    assert loaded.type("residence_permit_visa")["department"] == "exit-entry"
    assert loaded.type("residence_permit_visa")["name"] == {"zh-CN": "签证及居留许可咨询",
                                                            "en": "Visa and residence permit help"}
    assert loaded.type("other")["department"] == catalogue.COMMUNITY
    assert loaded.type("construction_noise_night")["co_handlers"] == ["ecology-environment"]
    for case_type in loaded.types.values():
        assert set(case_type["sla"]) == set(catalogue.STAGES)
        assert [attribute["order"] for attribute in case_type["attributes"]] == sorted(
            attribute["order"] for attribute in case_type["attributes"])


def test_an_attribute_has_the_shape_of_an_open311_attribute():
    fault = catalogue.load().type("streetlight")["attributes"][0]
    assert fault["datatype"] == "singlevaluelist" and fault["required"] is True and fault["order"] == 1
    assert fault["values"][0] == {"key": "not_lit", "name": {"zh-CN": "不亮", "en": "Not lit"}}


def broken(change) -> CatalogueError:
    raw = copy.deepcopy(SHIPPED)
    change(raw["case_types"])
    with pytest.raises(CatalogueError) as raised:
        catalogue.parse(raw)
    return raised.value


def _set(index, path, value):
    def change(types):
        target = types[index]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


@pytest.mark.parametrize("change, where, field", [
    (_set(0, ["colour"], "red"), "streetlight", "colour"),
    (_set(0, ["sla", "resolve", "unit"], "days"), "streetlight", "sla.resolve.unit"),
    (_set(0, ["sla", "resolve", "amount"], 0), "streetlight", "sla.resolve.amount"),
    (_set(0, ["sla", "resolve", "amount"], 1.5), "streetlight", "sla.resolve.amount"),
    (_set(0, ["sla", "resolve", "minutes"], 5), "streetlight", "sla.resolve.minutes"),
    (lambda types: types[2]["sla"].pop("call_back"), "sanitation", "sla.call_back"),
    (_set(0, ["attributes", 1, "order"], 1), "streetlight", "attributes"),
    (lambda types: types[0]["attributes"].reverse(), "streetlight", "attributes"),
    (_set(0, ["attributes", 0, "datatype"], "boolean"), "streetlight", "attributes.0.datatype"),
    (_set(0, ["attributes", 1, "datatype"], "singlevaluelist"), "streetlight", "attributes.1.values"),
    (_set(0, ["attributes", 0, "datatype"], "string"), "streetlight", "attributes.0.values"),
    (_set(0, ["attributes", 0, "validate"], True), "streetlight", "attributes.0.validate"),
    (_set(1, ["department"], "Urban Management"), "construction_noise_night", "department"),
    (_set(1, ["co_handlers"], ["urban-management"]), "construction_noise_night", "co_handlers"),
    (_set(1, ["priority"], "whenever"), "construction_noise_night", "priority"),
    (_set(3, ["name"], {"zh-CN": "物业管理"}), "property_management", "name.en"),
    (lambda types: types[4].pop("code"), "#5", "code"),
])
def test_a_broken_type_is_named_with_its_field(change, where, field):
    error = broken(change)
    assert list(error.errors) == [where]
    assert f"case type {where}: {field}" in str(error)


def test_a_duplicate_code_is_refused():
    error = broken(lambda types: types.append(copy.deepcopy(types[0])))
    assert list(error.errors) == ["streetlight"] and "duplicate code" in str(error)


@pytest.mark.parametrize("raw", [None, [], {"case_types": []}, {"case_types": {}}, {"types": [], "case_types": []}])
def test_a_file_without_a_list_of_types_is_refused(raw):
    with pytest.raises(CatalogueError, match="case_types"):
        catalogue.parse(raw)


def test_load_reads_a_given_file(tmp_path):
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump({"case_types": [SHIPPED["case_types"][-1]]}, allow_unicode=True),
                    encoding="utf-8")
    assert list(catalogue.load(path).types) == ["other"]
