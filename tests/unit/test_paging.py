"""The cursor of a page: it round-trips its sort key, and anything else is a 400 naming ``after``."""
from datetime import datetime, timezone

import pytest
from bson import ObjectId

from services.common import paging
from services.common.web import ValidationFailed

ORDER = [("starts_at", 1), ("_id", 1)]


def test_a_cursor_opens_an_indexed_range_and_drops_its_ties_up_to_itself():
    at = datetime(2026, 11, 29, 6, 0, tzinfo=timezone.utc)
    first, cursor_id, later = sorted(ObjectId() for _ in range(3))
    since, keep = paging.window(ORDER, paging.encode((at, cursor_id)))
    assert since == {"starts_at": {"$gte": at}}  # the first field alone: no $or, which would scan
    assert [keep(key) for key in [(at, first), (at, cursor_id), (at, later), (at.replace(hour=7), first)]] == [
        False, False, True, True]
    since, keep = paging.window([("created_at", -1), ("_id", -1)], paging.encode((5, 2)))
    assert since == {"created_at": {"$lte": 5}}
    assert [keep(key) for key in [(5, 3), (5, 2), (5, 1), (4, 9)]] == [False, False, True, True]
    assert paging.window(ORDER, None)[0] == {}


def test_a_page_after_ties_holds_neither_the_cursor_nor_what_came_before_it():
    rows = [(1, 1), (1, 2), (1, 3), (2, 1)]
    _, keep = paging.window(ORDER, paging.encode((1, 2)))
    assert paging.page(iter(rows), 5, key=lambda row: row, keep=keep) == ([(1, 3), (2, 1)], None)


def test_a_page_says_whether_more_follow():
    assert paging.page(iter(range(3)), 3, key=lambda n: (n,)) == ([0, 1, 2], None)
    items, after = paging.page(iter(range(4)), 3, key=lambda n: (n, n))
    assert items == [0, 1, 2] and paging.decode(after, 2) == [2, 2]


@pytest.mark.parametrize("cursor", ["", "%%%", "not-a-cursor", paging.encode((1,)), paging.encode((1, 2, 3)),
                                    paging.encode(({"$ne": None}, 1)), paging.encode(([1], 1))])
def test_anything_but_a_cursor_of_the_list_is_400_naming_after(cursor):
    with pytest.raises(ValidationFailed) as refused:
        paging.window(ORDER, cursor)
    assert "after" in refused.value.details["fields"]
