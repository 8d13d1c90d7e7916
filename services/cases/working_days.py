"""SLA arithmetic for cases: calendar hours, and working days on the Chinese calendar.

A *working day* is a date the State Council's yearly schedule (国务院办公厅关于…部分节假日安排的通知)
makes a working day: Monday to Friday unless a public holiday or a day of its bridge, plus the
make-up working days (调休) it puts on a Saturday or Sunday. The schedule comes from the
``chinesecalendar`` package (pinned in pyproject.toml); its 1.11.0 holds the years 2004 to 2026.

**Years the data does not cover.** The schedule is published a year at a time (each November), so
no rule can guess the next one. A date outside the covered years raises ``CalendarNotCovered``;
it never falls back to a plain Monday-to-Friday week. A deadline whose count runs past the last
covered year raises it too, until a release of the package with that year is pinned.

**Counting.** Working days are counted on the local dates of ``zone`` (the community's zone). A
working day counts as one whole day of wall-clock time, midnight to midnight, whatever its length
in real hours (a DST change makes it 23 or 25); time on any other date does not count.

- ``add_working_days(start, n, zone)``: started on a working day, the deadline is the same wall
  time n working days later (Monday 15:00 + 1 → Tuesday 15:00, or Wednesday 15:00 when Tuesday is
  a holiday). Started on a weekend or holiday, counting starts at 00:00 of the next working day, so
  Saturday 10:00 + 1 → Tuesday 00:00, i.e. the end of Monday. The deadline is always on a working
  day: a count that completes at midnight before a non-working day is due at 00:00 of the next
  working day, the same amount of working time. n is a whole number: half a "working day" would
  read as office hours to staff and as 12 hours here, so fractions are refused.
- ``working_days_between(start, end, zone)``: the working time between two instants, in days (a
  float, for averages): ``working_days_between(s, add_working_days(s, n, z), z) == n``.
- ``add_calendar_hours(start, hours)``: elapsed real time, the same across a DST change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Literal, Mapping

import chinese_calendar

DAY = timedelta(days=1)
FIRST_COVERED_YEAR = min(chinese_calendar.holidays).year
LAST_COVERED_YEAR = max(chinese_calendar.holidays).year
UNITS = ("hours", "working_days")
Unit = Literal["hours", "working_days"]


class WorkingDaysError(ValueError):
    """Base of this module's errors."""


class CalendarNotCovered(WorkingDaysError):
    """The date's year has no State Council schedule in the data: it cannot be known to be a working day."""

    def __init__(self, day: date):
        self.day = day
        super().__init__(f"{day.isoformat()}: the Chinese holiday schedule is known only for "
                         f"{FIRST_COVERED_YEAR}–{LAST_COVERED_YEAR}")


class InvalidAmount(WorkingDaysError):
    """An argument of the arithmetic is not of its form (naive datetime, negative or fractional count…)."""


class InvalidLimit(WorkingDaysError):
    """A catalogue limit that cannot be used; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def is_working_day(day: date) -> bool:
    """Whether ``day`` (a local date) is a working day; ``CalendarNotCovered`` outside the data's years."""
    if isinstance(day, datetime):  # its date depends on a zone: the caller must choose it
        raise InvalidAmount("is_working_day takes a date, not a datetime")
    if not FIRST_COVERED_YEAR <= day.year <= LAST_COVERED_YEAR:
        raise CalendarNotCovered(day)
    return chinese_calendar.is_workday(day)


def next_working_day(day: date) -> date:
    """The first working day after ``day``."""
    day += DAY
    while not is_working_day(day):
        day += DAY
    return day


def add_working_days(start: datetime, n: int | float, zone: tzinfo) -> datetime:
    """The deadline ``n`` whole working days after the aware ``start``, in ``zone`` (see the module doc).

    n = 0 gives ``start`` itself on a working day, else 00:00 of the next working day. A wall time that
    does not exist on the due day (a DST gap) is moved forward by the gap."""
    count = _whole_count(n)
    local = _wall_clock(start, zone)
    if not is_working_day(local.date()):
        local = datetime.combine(next_working_day(local.date()), time())
    day = local.date()
    for _ in range(count):
        day = next_working_day(day)
    return _aware(datetime.combine(day, local.time()), zone)


def working_days_between(start: datetime, end: datetime, zone: tzinfo) -> float:
    """The working time from ``start`` to ``end`` (aware, ``end`` not before ``start``), in working days."""
    first, last = _wall_clock(start, zone), _wall_clock(end, zone, "end")
    if _aware_instant(end, "end") < _aware_instant(start, "start"):
        raise InvalidAmount("end is before start")
    worked = timedelta()
    day = first.date()
    while day <= last.date():
        if is_working_day(day):
            midnight = datetime.combine(day, time())
            # max(0, …): in a repeated (fall-back) hour the later instant can have the earlier wall time
            worked += max(timedelta(), min(last, midnight + DAY) - max(first, midnight))
        day += DAY
    return worked / DAY


def add_calendar_hours(start: datetime, hours: int | float) -> datetime:
    """``hours`` of real elapsed time after the aware ``start``, in ``start``'s zone (DST changes count
    as the hours they are: 24 hours across a spring-forward night end at the next day's wall time + 1)."""
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not math.isfinite(hours) or hours < 0:
        raise InvalidAmount(f"hours must be a finite number >= 0, not {hours!r}")
    instant = _aware_instant(start, "start")
    return (instant + timedelta(hours=hours)).astimezone(start.tzinfo)


@dataclass(frozen=True)
class Limit:
    """An SLA limit of the catalogue: ``amount`` calendar hours or ``amount`` working days.

    Hours may be fractional (1.5); working days are whole (see the module doc). Both are positive."""

    amount: int | float
    unit: Unit

    def __post_init__(self):
        if self.unit not in UNITS:
            raise InvalidLimit("unit", f"must be one of {', '.join(UNITS)}, not {self.unit!r}")
        amount = self.amount
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
            raise InvalidLimit("amount", f"must be a number, not {amount!r}")
        if amount <= 0:
            raise InvalidLimit("amount", f"must be positive, not {amount!r}")
        if self.unit == "working_days" and not float(amount).is_integer():
            raise InvalidLimit("amount", f"working days must be a whole number, not {amount!r}")

    @classmethod
    def parse(cls, entry: Mapping) -> Limit:
        """A limit from its catalogue entry, e.g. ``{amount: 3, unit: working_days}``; exactly those keys."""
        if not isinstance(entry, Mapping):
            raise InvalidLimit("limit", f"must be a mapping with amount and unit, not {entry!r}")
        unknown = sorted(map(str, entry.keys() - {"amount", "unit"}))
        if unknown:
            raise InvalidLimit(unknown[0], "unknown field (a limit has amount and unit)")
        for key in ("amount", "unit"):
            if key not in entry:
                raise InvalidLimit(key, "missing")
        return cls(amount=entry["amount"], unit=entry["unit"])

    def deadline(self, start: datetime, zone: tzinfo) -> datetime:
        """When a clock started at ``start`` runs out, in ``zone``."""
        if self.unit == "hours":
            return add_calendar_hours(start, self.amount).astimezone(zone)
        return add_working_days(start, self.amount, zone)


def _whole_count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) or n < 0:
        raise InvalidAmount(f"the number of working days must be a number >= 0, not {n!r}")
    if not float(n).is_integer():
        raise InvalidAmount(f"the number of working days must be whole, not {n!r}")
    return int(n)


def _aware_instant(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise InvalidAmount(f"{name} must be a datetime with a time zone, not {moment!r}")
    return moment.astimezone(timezone.utc)


def _wall_clock(moment: datetime, zone: tzinfo, name: str = "start") -> datetime:
    """``moment``'s local wall time in ``zone``, naive (wall-clock arithmetic, one day = 24 hours)."""
    return _aware_instant(moment, name).astimezone(zone).replace(tzinfo=None)


def _aware(wall: datetime, zone: tzinfo) -> datetime:
    """The instant a local wall time names, normalised (a time in a DST gap moves forward by the gap)."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(timezone.utc).astimezone(zone)
