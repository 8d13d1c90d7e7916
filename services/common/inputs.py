"""Checks every door applies to input before a schema sees it, and the fields that need care (issue #14).

- ``unstorable_text(value)``: where a decoded JSON value holds text that is not
  Unicode scalar values (a lone UTF-16 surrogate such as ``"\\ud800"``, which JSON
  allows): no database or broker can store it, so it is refused where it enters.
- ``TimeZone``: an IANA time zone name; any failure of ``zoneinfo`` (unknown,
  malformed, a path, a name too long for the file system) is a validation error.
- ``page_number()`` and ``MAX_PAGE``: a page of a list, bounded so that the
  number of items skipped always fits the database's 64-bit integers.
"""
from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import fields, validate

MAX_PAGE = 1_000_000
MAX_TIME_ZONE_LENGTH = 64  # the longest IANA name is 32 characters
NOT_TEXT = "holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text and cannot be stored"


def storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_key(key) -> str:
    """A key as it may be echoed in an error (lone surrogates as ``\\udxxx``)."""
    return str(key).encode("utf-8", "backslashreplace").decode("utf-8")


def unstorable_text(value) -> dict:
    """``{field: [reason]}`` (nested as marshmallow nests its errors) for every string, key included,
    of a decoded JSON value that cannot be stored; ``{}`` when all is well."""
    problems: dict = {}
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(index), item) for index, item in enumerate(value))
    else:
        return {}
    for key, item in items:
        if not storable(str(key)) or (isinstance(item, str) and not storable(item)):
            problems[printable_key(key)] = [NOT_TEXT]
        elif inner := unstorable_text(item):
            problems[printable_key(key)] = inner
    return problems


def paths(problems: dict, prefix: str = ""):
    """``unstorable_text``'s nesting as dotted field paths (``title.en``)."""
    for key, value in problems.items():
        if isinstance(value, dict):
            yield from paths(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


class TimeZone(fields.String):
    """An IANA time zone name (``Asia/Shanghai``) that ``zoneinfo`` can load."""

    default_error_messages = {"zone": "not an IANA time zone such as Asia/Shanghai"}

    def _deserialize(self, value, attr, data, **kwargs):
        name = super()._deserialize(value, attr, data, **kwargs)
        if len(name) > MAX_TIME_ZONE_LENGTH:
            raise self.make_error("zone")
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: e.g. a name too long for a file
            raise self.make_error("zone") from None
        return name


def page_number(**kwargs) -> fields.Integer:
    """The page of a list a query asks for: 1 to ``MAX_PAGE``."""
    return fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE), **kwargs)

