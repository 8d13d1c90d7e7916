"""The generated contract documents: current, valid, and guarded against breaking changes."""
import copy
import json

import jsonschema
import pytest
import yaml

from contracts import compat, documents
from contracts.registry import registry
from platform_tools import contract_docs

TYPES = documents.all_types()


def test_the_checked_in_documents_are_what_the_contracts_generate():
    stale = [str(path.relative_to(contract_docs.ROOT)) for path, content in contract_docs.generated().items()
             if not path.exists() or path.read_text(encoding="utf-8") != content]
    assert stale == [], "run `make contracts` and commit the result"
    extra = {p.name for p in contract_docs.SCHEMAS.glob("*.json")} - {p.name for p in contract_docs.generated()}
    assert extra == set(), "schemas of types that no longer exist"


@pytest.mark.parametrize("message_type", TYPES, ids=lambda t: f"{t.name}.v{t.version}")
def test_every_example_validates_against_its_json_schema(message_type):
    schema = json.loads((contract_docs.SCHEMAS / documents.file_name(message_type)).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for example in schema["examples"]:
        validator.validate(example)
    broken = copy.deepcopy(message_type.example)
    broken.pop(sorted(schema["required"])[0])
    assert not validator.is_valid(broken), "the schema must refuse an example missing a required field"


def test_the_envelope_schema_accepts_a_real_envelope():
    from contracts import build_envelope

    schema = json.loads((contract_docs.SCHEMAS / "envelope.json").read_text(encoding="utf-8"))
    example = TYPES[0]
    wire = build_envelope(example.name, example.example, source="linli/test", community="tongzilin").to_wire()
    jsonschema.Draft202012Validator(schema).validate(wire)


def test_every_reference_in_the_asyncapi_document_resolves():
    document = yaml.safe_load(contract_docs.ASYNCAPI.read_text(encoding="utf-8"))
    assert document["asyncapi"].startswith("3.")

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(document):
        target = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
    published = {message["name"] for message in document["components"]["messages"].values()}
    assert {"resident.registered", "event.scheduled", "notification.outcomes", "community.assessed"} <= published


PUBLISH_NOTHING = {"partners"}


def test_every_type_a_service_publishes_or_handles_is_in_the_registry():
    known = list(registry)
    for service, service_cls in contract_docs.service_classes().items():
        # partners sends partner departments their feeds (their queues, webhooks), no platform message.
        assert bool(contract_docs.published_types(service)) == (service not in PUBLISH_NOTHING), service
        for _, handled, _ in contract_docs.consumed(service_cls):
            assert handled is None or handled in known, f"{service} handles {handled}, not in contracts/"


def test_publishing_an_unregistered_constant_is_caught(tmp_path, monkeypatch):
    package = tmp_path / "services" / "rogue"
    package.mkdir(parents=True)
    (package / "service.py").write_text("def handler(publish):\n    publish(RESIDENT_TELEPORTED, {})\n")
    monkeypatch.setattr(contract_docs, "ROOT", tmp_path)
    with pytest.raises(LookupError, match="RESIDENT_TELEPORTED"):
        contract_docs.published_types("rogue")


def test_the_repository_is_compatible_with_its_released_set(capsys):
    assert contract_docs.check() == 0


def _schemas():
    return {documents.file_name(mt): json.loads((contract_docs.SCHEMAS / documents.file_name(mt)).read_text(
        encoding="utf-8")) for mt in TYPES}


REGISTERED = "resident.registered.v1.json"


def _with_change(tmp_path, change):
    released, current = tmp_path / "released", tmp_path / "current"
    released.mkdir()
    current.mkdir()
    for name, schema in _schemas().items():
        (released / name).write_text(json.dumps(schema))
        if name == REGISTERED:
            schema = copy.deepcopy(schema)
            change(schema)
        (current / name).write_text(json.dumps(schema))
    return compat.check_directory(released, current)


@pytest.mark.parametrize("change, complaint", [
    (lambda s: s["properties"].pop("nationality"), "nationality: removed"),
    (lambda s: s["properties"]["birth_year"].update(type="string"), "birth_year: type changed"),
    (lambda s: s["required"].append("grid_id"), "grid_id: newly required"),
    (lambda s: s["properties"]["residence_type"]["enum"].remove("foreign"), "allowed values changed"),
    (lambda s: s["properties"]["tags"]["items"].update(type="integer"), "tags[]: type changed"),
])
def test_each_kind_of_breaking_change_fails_the_check(tmp_path, change, complaint):
    problems = _with_change(tmp_path, change)
    assert len(problems) == 1 and complaint in problems[0] and problems[0].startswith("resident.registered.v1")


def test_an_added_optional_field_passes_the_check(tmp_path):
    assert _with_change(tmp_path, lambda s: s["properties"].update(household_size={"type": "integer"})) == []


def test_removing_a_released_version_fails_the_check(tmp_path):
    released, current = tmp_path / "released", tmp_path / "current"
    released.mkdir()
    current.mkdir()
    (released / "resident.registered.v1.json").write_text(json.dumps(_schemas()[REGISTERED]))
    assert compat.check_directory(released, current) == ["resident.registered.v1: a released version was removed"]
