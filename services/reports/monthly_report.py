"""The monthly community report: one self-contained HTML page (charts embedded as PNG data URIs)."""
from __future__ import annotations

import base64
from datetime import date

from jinja2 import Environment, PackageLoader, StrictUndefined

from services.reports import charts, exports

TEMPLATE = "monthly_report.html.j2"
HTML_CONTENT_TYPE = "text/html; charset=utf-8"

_environment = Environment(loader=PackageLoader("services.reports", "templates"), autoescape=True,
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _number(value) -> str:
    """``1,234`` for a count, ``8.5`` for a figure (at most two decimals), a dash for no value."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


_environment.filters["percent"] = lambda share: "—" if share is None else f"{share * 100:.1f}%"
_environment.filters["number"] = _number


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render(*, community_id: str, month: str, this_month: dict, months: list[dict], profile: dict,
           scorecard_entry: dict | None, demonstration_threshold: float, today: date) -> str:
    """The page for ``community_id`` and ``month``.

    ``this_month`` is ``figures.month_of`` for the month; ``months`` the activity of the months up
    to it (the trend charts); ``profile`` is as of ``today`` (the registry keeps no past states).
    """
    images = {name: png_data_uri(charts.chart(name, profile, months)) for name in charts.CHART_NAMES}
    return _environment.get_template(TEMPLATE).render(
        community_id=community_id, month=month, this_month=this_month, profile=profile,
        profile_sections=exports.profile_breakdowns(profile), scorecard_entry=scorecard_entry,
        criteria_labels=exports.CRITERIA, demonstration_threshold=demonstration_threshold,
        today=today.isoformat(), images=images)
