"""One paging shape for every list the platform serves: ``?limit=<n>&after=<cursor>`` in,
``{"items": [...], "next": cursor-or-null}`` out. ``next`` is null only when nothing follows;
pass it as ``after`` for the following page.

A cursor names the last item of a page by its sort key (e.g. ``(starts_at, _id)``), so the
next page is an indexed range (``after_filter``), not a skip over a growing collection, and
an item added or removed meanwhile neither repeats nor hides another.
"""
from __future__ import annotations

import base64
import binascii
import itertools
from datetime import timezone

from bson import json_util
from bson.json_util import JSONOptions
from marshmallow import Schema, fields, validate

from services.common.web import ValidationFailed

MAX_LIMIT = 500
_JSON = JSONOptions(tz_aware=True, tzinfo=timezone.utc)


class PageQuery(Schema):
    """The paging parameters; a list's query schema extends it (and may change ``limit``'s default)."""

    after = fields.String(validate=validate.Length(min=1, max=1000))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_LIMIT))


def encode(values: tuple) -> str:
    text = json_util.dumps(list(values), json_options=_JSON)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(cursor: str, arity: int) -> list:
    """The sort key a cursor names, or a 400 naming ``after``."""
    try:
        values = json_util.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)), json_options=_JSON)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        values = None
    # Only plain values: a document (``{"$ne": null}``) would be read as a query operator.
    if not isinstance(values, list) or len(values) != arity or any(isinstance(v, (dict, list)) for v in values):
        raise ValidationFailed("after is not a cursor this list gave (pass its `next`)",
                               {"fields": {"after": ["not a cursor of this list"]}})
    return values


def after_filter(order: list[tuple[str, int]], cursor: str | None) -> dict:
    """A query for what comes after ``cursor`` in ``order`` ([(field, 1 or -1), ...], the last
    field unique): {} without a cursor."""
    if cursor is None:
        return {}
    values = decode(cursor, len(order))
    clauses = []
    for position, (field, direction) in enumerate(order):
        clause = {name: value for (name, _), value in zip(order[:position], values[:position])}
        clause[field] = {"$gt" if direction > 0 else "$lt": values[position]}
        clauses.append(clause)
    return {"$or": clauses}


def page(found, limit: int, key) -> tuple[list, str | None]:
    """The first ``limit`` of ``found`` (a query asked for ``limit + 1``), and the cursor of the
    last one if more follow. ``key(item)`` is the item's sort key, in the query's order."""
    items = list(itertools.islice(found, limit + 1))
    if len(items) <= limit:
        return items, None
    return items[:limit], encode(key(items[limit - 1]))
