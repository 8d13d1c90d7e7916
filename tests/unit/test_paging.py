"""The cursor of a page: it round-trips its sort key, and anything else is a 400 naming ``after``."""
from datetime import datetime, timezone

import pytest
from bson import ObjectId

from services.common import paging
from services.common.web import ValidationFailed

ORDER = [("starts_at", 1), ("_id", 1)]


def test_a_cursor_names_the_position_after_its_sort_key():
    key = (datetime(2026, 11, 29, 6, 0, tzinfo=timezone.utc), ObjectId())
    assert paging.after_filter(ORDER, paging.encode(key)) == {"$or": [
        {"starts_at": {"$gt": key[0]}}, {"starts_at": key[0], "_id": {"$gt": key[1]}}]}
    assert paging.after_filter([("created_at", -1), ("_id", -1)], paging.encode(("t", "n")))["$or"][0] == {
        "created_at": {"$lt": "t"}}
    assert paging.after_filter(ORDER, None) == {}


def test_a_page_says_whether_more_follow():
    assert paging.page(iter(range(3)), 3, key=lambda n: (n,)) == ([0, 1, 2], None)
    items, after = paging.page(iter(range(4)), 3, key=lambda n: (n, n))
    assert items == [0, 1, 2] and paging.decode(after, 2) == [2, 2]


@pytest.mark.parametrize("cursor", ["", "%%%", "not-a-cursor", paging.encode((1,)), paging.encode((1, 2, 3)),
                                    paging.encode(({"$ne": None}, 1)), paging.encode(([1], 1))])
def test_anything_but_a_cursor_of_the_list_is_400_naming_after(cursor):
    with pytest.raises(ValidationFailed) as refused:
        paging.after_filter(ORDER, cursor)
    assert "after" in refused.value.details["fields"]
