"""The cases' SLA clocks: working days on the Chinese calendar, with its make-up working days (调休).

The 2026 dates below are those of the State Council's notice on the 2026 holidays
(国务院办公厅关于2026年部分节假日安排的通知, 4 November 2025, published by Xinhua), as the notice
states them; the first test checks them against the data the module reads (chinesecalendar 1.11.0):
元旦 1–3 Jan, 4 Jan (Sun) worked; 春节 15–23 Feb, 14 Feb (Sat) and 28 Feb (Sat) worked; 清明 4–6 Apr;
劳动节 1–5 May, 9 May (Sat) worked; 端午 19–21 Jun; 中秋 25–27 Sep; 国庆 1–7 Oct, 20 Sep (Sun) and
10 Oct (Sat) worked.
"""
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from services.cases.working_days import (
    CalendarNotCovered, InvalidAmount, InvalidLimit, Limit, add_calendar_hours, add_working_days,
    is_working_day, working_days_between)

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")  # has DST: 29 Mar 2026 02:00 → 03:00


def days(first: date, last: date) -> set[date]:
    return {first + timedelta(days=i) for i in range((last - first).days + 1)}


HOLIDAYS_2026 = (days(date(2026, 1, 1), date(2026, 1, 3)) | days(date(2026, 2, 15), date(2026, 2, 23))
                 | days(date(2026, 4, 4), date(2026, 4, 6)) | days(date(2026, 5, 1), date(2026, 5, 5))
                 | days(date(2026, 6, 19), date(2026, 6, 21)) | days(date(2026, 9, 25), date(2026, 9, 27))
                 | days(date(2026, 10, 1), date(2026, 10, 7)))
MAKE_UP_DAYS_2026 = {date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9),
                     date(2026, 9, 20), date(2026, 10, 10)}


def at(year, month, day, hour=0, minute=0, zone=SHANGHAI) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone)


def test_the_2026_calendar_is_the_state_councils():
    year = days(date(2026, 1, 1), date(2026, 12, 31))
    working = {day for day in year if is_working_day(day)}
    assert not working & HOLIDAYS_2026
    assert MAKE_UP_DAYS_2026 <= working
    assert all(day.weekday() >= 5 for day in MAKE_UP_DAYS_2026)  # each a Saturday or Sunday that is worked
    ordinary = {day for day in year if day.weekday() < 5 and day not in HOLIDAYS_2026}
    assert working == ordinary | MAKE_UP_DAYS_2026
    assert len(working) == 248  # 261 weekdays − 19 holidays on weekdays + 6 make-up days


def test_a_working_day_ends_at_the_same_wall_time_on_the_next_one():
    assert add_working_days(at(2026, 3, 10, 15), 1, SHANGHAI) == at(2026, 3, 11, 15)
    assert add_working_days(at(2026, 3, 13, 15), 1, SHANGHAI) == at(2026, 3, 16, 15)  # Friday → Monday


def test_deadlines_across_the_spring_festival():
    friday = at(2026, 2, 13, 15)
    assert add_working_days(friday, 1, SHANGHAI) == at(2026, 2, 14, 15)  # the make-up Saturday
    assert add_working_days(friday, 2, SHANGHAI) == at(2026, 2, 24, 15)  # after 15–23 Feb
    # Submitted during the holiday: counting starts at 00:00 on Tuesday 24 Feb, so due at the end of it.
    assert add_working_days(at(2026, 2, 17, 11), 1, SHANGHAI) == at(2026, 2, 25)
    assert working_days_between(at(2026, 2, 17, 11), at(2026, 2, 25), SHANGHAI) == 1


def test_deadlines_across_labour_day_and_national_day():
    assert add_working_days(at(2026, 4, 30, 15), 3, SHANGHAI) == at(2026, 5, 8, 15)
    assert add_working_days(at(2026, 4, 30, 15), 4, SHANGHAI) == at(2026, 5, 9, 15)  # make-up Saturday
    assert add_working_days(at(2026, 9, 24, 15), 1, SHANGHAI) == at(2026, 9, 28, 15)  # over 中秋 25–27 Sep
    assert add_working_days(at(2026, 9, 30, 15), 1, SHANGHAI) == at(2026, 10, 8, 15)  # over 国庆 1–7 Oct
    assert add_working_days(at(2026, 10, 9, 15), 1, SHANGHAI) == at(2026, 10, 10, 15)  # make-up Saturday


def test_a_make_up_sunday_is_worked_and_a_weekend_waits_for_it():
    assert is_working_day(date(2026, 9, 20)) and not is_working_day(date(2026, 9, 19))
    assert add_working_days(at(2026, 9, 20, 10), 1, SHANGHAI) == at(2026, 9, 21, 10)
    assert add_working_days(at(2026, 9, 18, 9), 1, SHANGHAI) == at(2026, 9, 20, 9)  # Friday → the Sunday
    assert add_working_days(at(2026, 9, 19, 10), 1, SHANGHAI) == at(2026, 9, 21)  # counting from Sunday 00:00
    assert add_working_days(at(2026, 1, 3, 10), 1, SHANGHAI) == at(2026, 1, 5)  # a holiday, then Sunday 4 Jan
    assert add_working_days(at(2026, 1, 4, 10), 1, SHANGHAI) == at(2026, 1, 5, 10)


def test_a_plain_weekend_counts_from_monday_and_a_deadline_is_never_on_a_holiday():
    assert add_working_days(at(2026, 3, 7, 10), 1, SHANGHAI) == at(2026, 3, 10)  # Saturday → end of Monday
    assert add_working_days(at(2026, 3, 7, 10), 0, SHANGHAI) == at(2026, 3, 9)
    assert add_working_days(at(2026, 3, 10, 10), 0, SHANGHAI) == at(2026, 3, 10, 10)
    # A count completing at midnight before 国庆 is due at the start of the next working day.
    assert add_working_days(at(2026, 9, 30), 1, SHANGHAI) == at(2026, 10, 8)
    assert working_days_between(at(2026, 9, 30), at(2026, 10, 8), SHANGHAI) == 1


def test_the_community_zone_decides_the_date():
    start = datetime(2026, 2, 13, 20, tzinfo=timezone.utc)  # Sat 14 Feb 04:00 in Shanghai, Fri 21:00 in Berlin
    assert add_working_days(start, 1, SHANGHAI) == at(2026, 2, 24, 4)
    assert add_working_days(start, 1, BERLIN) == at(2026, 2, 14, 21, zone=BERLIN)
    assert add_working_days(start, 1, SHANGHAI).tzinfo is SHANGHAI


def test_working_days_keep_the_wall_time_across_dst_and_hours_do_not():
    friday = at(2026, 3, 27, 15, zone=BERLIN)  # CET; Sunday 29 Mar moves to CEST
    due = add_working_days(friday, 1, BERLIN)
    assert due == at(2026, 3, 30, 15, zone=BERLIN) and due.utcoffset() == timedelta(hours=2)
    assert due.astimezone(timezone.utc) - friday.astimezone(timezone.utc) == timedelta(hours=71)
    assert working_days_between(friday, due, BERLIN) == 1
    assert add_calendar_hours(at(2026, 3, 28, 12, zone=BERLIN), 24) == at(2026, 3, 29, 13, zone=BERLIN)
    assert add_calendar_hours(at(2026, 3, 28, 12), 24) == at(2026, 3, 29, 12)  # Shanghai has no DST
    assert add_calendar_hours(at(2026, 2, 13, 15), 1.5) == at(2026, 2, 13, 16, 30)  # holidays don't stop hours


def test_working_days_between_counts_only_working_dates():
    assert working_days_between(at(2026, 2, 13), at(2026, 2, 27), SHANGHAI) == 5  # 13, 14, 24, 25, 26 Feb
    assert working_days_between(at(2026, 2, 13, 12), at(2026, 2, 14, 6), SHANGHAI) == 0.75
    assert working_days_between(at(2026, 2, 15), at(2026, 2, 24), SHANGHAI) == 0
    assert working_days_between(at(2026, 3, 10, 9), at(2026, 3, 10, 9), SHANGHAI) == 0
    with pytest.raises(InvalidAmount, match="before"):
        working_days_between(at(2026, 3, 10, 9), at(2026, 3, 10, 8), SHANGHAI)


def test_a_year_without_data_is_refused_not_guessed():
    # chinesecalendar 1.11.0 ends with 2026; 2 Jan 2027 is a Saturday, 4 Jan a Monday: neither is guessed.
    for day in (date(2027, 1, 2), date(2027, 1, 4), date(2003, 12, 31)):
        with pytest.raises(CalendarNotCovered, match="2004–2026") as refused:
            is_working_day(day)
        assert refused.value.day == day
    assert add_working_days(at(2026, 12, 30, 15), 1, SHANGHAI) == at(2026, 12, 31, 15)
    with pytest.raises(CalendarNotCovered):
        add_working_days(at(2026, 12, 30, 15), 2, SHANGHAI)
    with pytest.raises(CalendarNotCovered):
        working_days_between(at(2026, 12, 31), at(2027, 1, 4), SHANGHAI)


@pytest.mark.parametrize("call", [
    lambda: add_working_days(datetime(2026, 3, 10, 15), 1, SHANGHAI),  # naive
    lambda: add_working_days(at(2026, 3, 10), -1, SHANGHAI),
    lambda: add_working_days(at(2026, 3, 10), 1.5, SHANGHAI),
    lambda: add_working_days(at(2026, 3, 10), True, SHANGHAI),
    lambda: add_working_days(at(2026, 3, 10), float("nan"), SHANGHAI),
    lambda: add_calendar_hours(datetime(2026, 3, 10), 1),
    lambda: add_calendar_hours(at(2026, 3, 10), -1),
    lambda: add_calendar_hours(at(2026, 3, 10), float("inf")),
    lambda: working_days_between(at(2026, 3, 10), datetime(2026, 3, 11), SHANGHAI),
    lambda: is_working_day(datetime(2026, 3, 10, 12)),  # its date would depend on a zone
])
def test_bad_arguments_are_refused(call):
    with pytest.raises(InvalidAmount):
        call()


def test_a_whole_float_is_a_whole_count():
    assert add_working_days(at(2026, 3, 10, 15), 2.0, SHANGHAI) == at(2026, 3, 12, 15)


def test_a_catalogue_limit():
    limit = Limit.parse(yaml.safe_load("{amount: 3, unit: working_days}"))
    assert limit == Limit(3, "working_days")
    assert limit.deadline(at(2026, 2, 12, 15), SHANGHAI) == at(2026, 2, 24, 15)  # Thursday + 13, 14 (Sat), 24 Feb
    hours = Limit.parse({"amount": 48, "unit": "hours"})
    assert hours.deadline(datetime(2026, 2, 14, 7, tzinfo=timezone.utc), SHANGHAI) == at(2026, 2, 16, 15)
    assert Limit.parse({"amount": 1.5, "unit": "hours"}).deadline(at(2026, 2, 16), SHANGHAI) == at(2026, 2, 16, 1, 30)


@pytest.mark.parametrize("entry, field", [
    ({"amount": 3, "unit": "days"}, "unit"),
    ({"amount": 3, "unit": "calendar_days"}, "unit"),
    ({"amount": 0, "unit": "hours"}, "amount"),
    ({"amount": -2, "unit": "working_days"}, "amount"),
    ({"amount": "3", "unit": "hours"}, "amount"),
    ({"amount": True, "unit": "hours"}, "amount"),
    ({"amount": float("nan"), "unit": "hours"}, "amount"),
    ({"amount": 1.5, "unit": "working_days"}, "amount"),
    ({"amount": 3}, "unit"),
    ({"unit": "hours"}, "amount"),
    ({"amount": 3, "unit": "hours", "units": "hours"}, "units"),
    ("3 working days", "limit"),
])
def test_a_limit_that_cannot_be_used_is_refused(entry, field):
    with pytest.raises(InvalidLimit) as refused:
        Limit.parse(entry)
    assert refused.value.field == field


ZONES = st.sampled_from([SHANGHAI, BERLIN, ZoneInfo("America/New_York")])
# Starts that keep 20 working days inside 2026, the last year the data covers.
STARTS = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 11, 15),
                      timezones=st.just(timezone.utc))


@settings(max_examples=200, deadline=None)
@given(start=STARTS, n=st.integers(min_value=0, max_value=19), zone=ZONES)
def test_a_deadline_is_on_a_working_day_after_the_start_and_grows_with_n(start, n, zone):
    due, later = add_working_days(start, n, zone), add_working_days(start, n + 1, zone)
    assert start <= due < later
    assert is_working_day(due.astimezone(zone).date())
    assert working_days_between(start, due, zone) == n
    assert working_days_between(start, later, zone) == n + 1
