"""The catalogue of case types, read from catalogue.yaml: who is responsible for what, with which SLA limits.

Each type's extra attributes have the shape of an Open311 GeoReport v2 service definition (code, datatype,
required, order, description, values), with bilingual names. A catalogue that breaks a rule is refused as a
whole by ``CatalogueError``, whose messages name the type (its code, or its position when it has none) and
the field. Pure Python: the working-day arithmetic behind ``working_days`` lives elsewhere.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from services.cases.working_days import UNITS  # the units the SLA arithmetic knows

DEFAULT_CATALOGUE = Path(__file__).parent / "catalogue.yaml"
COMMUNITY = "community"  # the community committee handles the type itself
PARTY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,47}$")  # the partners service's rule for a partner id
CODE = re.compile(r"^[a-z][a-z0-9_]{1,47}$")
DATATYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")  # Open311's
LIST_DATATYPES = ("singlevaluelist", "multivaluelist")
STAGES = ("acknowledge", "first_contact", "resolve", "call_back")
PRIORITIES = ("urgent", "high", "normal", "low")


class CatalogueError(ValueError):
    """A catalogue that cannot be used; ``errors`` maps a type (code or ``#position``) to its field errors."""

    def __init__(self, errors: dict):
        self.errors = errors
        super().__init__("; ".join(f"case type {where}: {field}: {message}"
                                   for where, messages in errors.items()
                                   for field, message in _flatten(messages)))


def _flatten(messages, prefix=""):
    if isinstance(messages, dict):
        for key, value in messages.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(messages, list) and all(isinstance(item, str) for item in messages):
        yield prefix or "_schema", " ".join(messages)
    else:
        yield prefix or "_schema", str(messages)


class Strict(Schema):
    class Meta:
        unknown = RAISE


class Bilingual(Strict):
    @post_load
    def _language_tags(self, data, **_):
        return {("zh-CN" if key == "zh_CN" else key): value for key, value in data.items()}


class Text(Bilingual):
    """A name or description in both languages: foreign residents read the English one."""

    zh_CN = fields.String(data_key="zh-CN", required=True, validate=validate.Length(min=1, max=2000))
    en = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class Keywords(Bilingual):
    zh_CN = fields.List(fields.String(validate=validate.Length(min=1)), data_key="zh-CN", load_default=list)
    en = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)


class AttributeValue(Strict):
    key = fields.String(required=True, validate=validate.Regexp(CODE))
    name = fields.Nested(Text, required=True)


class Attribute(Strict):
    """An Open311 attribute: ``values`` are given for the list datatypes and only for them."""

    code = fields.String(required=True, validate=validate.Regexp(CODE))
    datatype = fields.String(required=True, validate=validate.OneOf(DATATYPES))
    required = fields.Boolean(required=True)
    order = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    description = fields.Nested(Text, required=True)
    values = fields.List(fields.Nested(AttributeValue), validate=validate.Length(min=1))

    @validates_schema
    def _values_for_lists(self, data, **_):
        if (data.get("datatype") in LIST_DATATYPES) != ("values" in data):
            raise ValidationError(f"values are given for {list(LIST_DATATYPES)} and only for them", "values")
        keys = [value["key"] for value in data.get("values", [])]
        if len(set(keys)) != len(keys):
            raise ValidationError("value keys are distinct", "values")


class Limit(Strict):
    amount = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2000))
    unit = fields.String(required=True, validate=validate.OneOf(UNITS))


class Limits(Strict):
    acknowledge = fields.Nested(Limit, required=True)
    first_contact = fields.Nested(Limit, required=True)
    resolve = fields.Nested(Limit, required=True)
    call_back = fields.Nested(Limit, required=True)


class CaseType(Strict):
    code = fields.String(required=True, validate=validate.Regexp(CODE))
    name = fields.Nested(Text, required=True)
    group = fields.String(required=True, validate=validate.Regexp(CODE))
    keywords = fields.Nested(Keywords, load_default=lambda: {"zh-CN": [], "en": []})
    description = fields.Nested(Text, required=True)
    attributes = fields.List(fields.Nested(Attribute), load_default=list)
    department = fields.String(required=True, validate=validate.Regexp(PARTY_ID))
    co_handlers = fields.List(fields.String(validate=validate.Regexp(PARTY_ID)), load_default=list)
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    sla = fields.Nested(Limits, required=True)

    @validates_schema
    def _attributes_in_order(self, data, **_):
        orders = [attribute["order"] for attribute in data.get("attributes", [])]
        if orders != sorted(set(orders)):
            raise ValidationError("attributes are listed by their order, each order once", "attributes")
        codes = [attribute["code"] for attribute in data.get("attributes", [])]
        if len(set(codes)) != len(codes):
            raise ValidationError("attribute codes are distinct", "attributes")

    @validates_schema
    def _co_handlers(self, data, **_):
        co_handlers = data.get("co_handlers", [])
        if len(set(co_handlers)) != len(co_handlers) or {data.get("department"), COMMUNITY} & set(co_handlers):
            raise ValidationError("co-handlers are distinct partner ids, neither the department nor the "
                                  "community", "co_handlers")


@dataclass(frozen=True)
class Catalogue:
    types: dict[str, dict]  # by code, in the file's order

    def type(self, code: str) -> dict:
        return self.types[code]


def load(path: Path | str | None = None) -> Catalogue:
    return parse(yaml.safe_load(Path(path or DEFAULT_CATALOGUE).read_text(encoding="utf-8")))


def parse(raw) -> Catalogue:
    """The catalogue from its YAML document, or ``CatalogueError`` naming every broken type and field."""
    if not isinstance(raw, dict) or set(raw) != {"case_types"} or not isinstance(raw["case_types"], list):
        raise CatalogueError({"(file)": {"case_types": ["the file holds one key, case_types: a list"]}})
    errors, types = {}, {}
    for position, item in enumerate(raw["case_types"], start=1):
        code = item.get("code") if isinstance(item, dict) else None
        where = code if isinstance(code, str) and code else f"#{position}"
        try:
            loaded = CaseType().load(item)
        except ValidationError as error:
            errors[where] = error.normalized_messages()
            continue
        if loaded["code"] in types:
            errors[where] = {"code": [f"duplicate code (also case type #{list(types).index(code) + 1})"]}
        else:
            types[loaded["code"]] = loaded
    if not types and not errors:
        errors["(file)"] = {"case_types": ["the catalogue has no case type"]}
    if errors:
        raise CatalogueError(errors)
    return Catalogue(types)
