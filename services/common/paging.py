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


def window(order: list[tuple[str, int]], cursor: str | None) -> tuple[dict, object]:
    """What comes after ``cursor`` in ``order`` ([(field, 1 or -1), ...], the last field unique):
    a query on the first field alone, an indexed range (no ``$or``, for which SecantusDB uses no
    index), and ``keep(key)``, which drops the few items of that range at or before the cursor
    (ties of the first field). Without a cursor: ``({}, keep-all)``."""
    if cursor is None:
        return {}, lambda key: True
    values = decode(cursor, len(order))
    field, direction = order[0]

    def keep(key) -> bool:
        for (_, way), mine, theirs in zip(order, key, values):
            if mine != theirs:
                return (mine > theirs) if way > 0 else (mine < theirs)
        return False  # the cursor's own item

    return {field: {"$gte" if direction > 0 else "$lte": values[0]}}, keep


def page(found, limit: int, key, keep=lambda key: True) -> tuple[list, str | None]:
    """The first ``limit`` of ``found`` (sorted in the window's order, not limited: ties at the
    window's start are dropped here) that ``keep``, and the cursor of the last one if more follow.
    ``key(item)`` is the item's sort key, in the query's order."""
    items = list(itertools.islice((item for item in found if keep(key(item))), limit + 1))
    if len(items) <= limit:
        return items, None
    return items[:limit], encode(key(items[limit - 1]))
