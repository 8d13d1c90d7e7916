"""What every door checks before a schema sees the input (services.common.inputs)."""
import pytest
from marshmallow import Schema, ValidationError

from services.common.inputs import MAX_PAGE, TimeZone, page_number, paths, unstorable_text


class Query(Schema):
    time_zone = TimeZone()
    page = page_number()


@pytest.mark.parametrize("zone", ["A" * 300, "Asia/" + "x" * 255, "../etc/passwd", "/etc/passwd", "Asia/Shanghai\x00",
                                  "Nowhere/Town", "", "bad \ud800"])
def test_anything_zoneinfo_cannot_load_is_a_validation_error(zone):
    with pytest.raises(ValidationError) as raised:
        Query().load({"time_zone": zone})
    assert list(raised.value.messages) == ["time_zone"]


def test_a_real_time_zone_and_a_page_in_range_load():
    assert Query().load({"time_zone": "Europe/Paris", "page": "3"}) == {"time_zone": "Europe/Paris", "page": 3}
    assert Query().load({}) == {"page": 1}


@pytest.mark.parametrize("page", ["0", "-1", str(MAX_PAGE + 1), str(2**62), "9" * 30, "9" * 5000, "1.5", "x"])
def test_a_page_out_of_range_is_a_validation_error(page):
    with pytest.raises(ValidationError) as raised:
        Query().load({"page": page})
    assert list(raised.value.messages) == ["page"]


def test_unstorable_text_names_every_path_keys_included():
    value = {"name": "ok", "title": {"en": "a \ud800"}, "tags": ["x", "\udfff"], "\ud800": 1, "n": 7}
    problems = unstorable_text(value)
    assert sorted(paths(problems)) == ["\\ud800", "tags.1", "title.en"]
    assert unstorable_text({"name": "居民 👩‍👩‍👧", "nested": [{"a": None}]}) == {}
