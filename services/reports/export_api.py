"""Downloads of the reports: every table as CSV or XLSX, charts as PNG, the monthly report as HTML.

``ReportExports`` is a mixin of ``ReportsService`` (nameko finds entrypoints on
base classes); it uses the service's ``store``, ``config``, ``_today()`` and
``scorecard(month)``. Access is checked as for the JSON routes.
"""
from __future__ import annotations

from urllib.parse import quote

from werkzeug.wrappers import Response

from services.common.web import NotFound, api
from services.reports import activity, charts, exports, figures, monthly_report


def _download(table: exports.Table, fmt: str, filename_stem: str) -> Response:
    if fmt not in exports.FORMATS:
        raise NotFound(f"no export as {fmt!r}; known formats: {', '.join(exports.FORMATS)}",
                       {"format": fmt}, code="unknown_format")
    encode, content_type = exports.FORMATS[fmt]
    return Response(encode(table), status=200, content_type=content_type,
                    headers={"Content-Disposition": _disposition("attachment", f"{filename_stem}.{fmt}")})


def _disposition(kind: str, filename: str) -> str:
    """Both forms (RFC 6266): an ASCII ``filename`` for old clients, ``filename*`` for the exact name."""
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in filename)
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


class ReportExports:
    """HTTP entrypoints for files: ``.csv``/``.xlsx`` beside each JSON table, ``.png`` charts, ``.html`` report."""

    @api("GET", "/communities/<community_id>/profile.<fmt>", scope="reports:read")
    def profile_export_over_http(self, request, community_id, fmt):
        request.principal.require_community(community_id)
        today = self._today()
        table = exports.profile_table(figures.profile_of(self.store, community_id, today))
        return _download(table, fmt, f"{community_id}-profile-{today:%Y-%m}")

    @api("GET", "/communities/<community_id>/activity.<fmt>", scope="reports:read",
         query_schema=figures.MonthRangeQuery)
    def activity_export_over_http(self, request, community_id, fmt):
        request.principal.require_community(community_id)
        first, last = figures.month_range(request.args.get("from"), request.args.get("to"), self._today())
        figures.require_community(self.store, community_id)
        table = exports.activity_table(community_id, figures.activity_months(self.store, community_id, first, last))
        return _download(table, fmt, f"{community_id}-activity-{first}-to-{last}")

    @api("GET", "/city/overview.<fmt>", scope="reports:read", query_schema=figures.MonthQuery)
    def overview_export_over_http(self, request, fmt):
        month = figures.parse_month(request.args.get("month"), "month", self._today())
        overview = figures.city_overview(self.store, month, self._today(), request.principal.may_see)
        return _download(exports.overview_table(overview), fmt, f"city-overview-{month}")

    @api("GET", "/scorecard.<fmt>", scope="reports:read", query_schema=figures.MonthQuery)
    def scorecard_export_over_http(self, request, fmt):
        month = figures.parse_month(request.args.get("month"), "month", self._today())
        ranking = self.scorecard(month)
        visible = {**ranking, "communities": [c for c in ranking["communities"]
                                              if request.principal.may_see(c["community_id"])]}
        return _download(exports.scorecard_table(visible), fmt, f"scorecard-{month}")

    @api("GET", "/communities/<community_id>/charts/<name>.png", scope="reports:read",
         query_schema=figures.MonthQuery)
    def chart_over_http(self, request, community_id, name):
        request.principal.require_community(community_id)
        month = figures.parse_month(request.args.get("month"), "month", self._today())
        if name not in charts.CHART_NAMES:
            raise NotFound(f"no chart {name!r}; known charts: {', '.join(charts.CHART_NAMES)}",
                           {"chart": name}, code="unknown_chart")
        profile = figures.profile_of(self.store, community_id, self._today())  # 404 for an unknown community
        png = charts.chart(name, profile, self._trend_months(community_id, month))
        return Response(png, status=200, content_type="image/png",
                        headers={"Content-Disposition": _disposition("inline", f"{community_id}-{name}-{month}.png")})

    @api("GET", "/communities/<community_id>/reports/<month>.html", scope="reports:read")
    def monthly_report_over_http(self, request, community_id, month):
        request.principal.require_community(community_id)
        today = self._today()
        month = figures.parse_month(month, "month", today)
        profile = figures.profile_of(self.store, community_id, today)  # 404 for an unknown community
        ranking = self.scorecard(month)
        page = monthly_report.render(
            community_id=community_id, month=month, this_month=figures.month_of(self.store, community_id, month),
            months=self._trend_months(community_id, month), profile=profile,
            scorecard_entry=next((c for c in ranking["communities"] if c["community_id"] == community_id), None),
            demonstration_threshold=ranking["demonstration_threshold"], today=today)
        return Response(page, status=200, content_type=monthly_report.HTML_CONTENT_TYPE,
                        headers={"Content-Disposition": _disposition("inline", f"{community_id}-report-{month}.html")})

    def _trend_months(self, community_id: str, month: str) -> list[dict]:
        """The twelve months up to ``month``, each present (an empty month is zeros, not missing)."""
        first, last = figures.month_range(None, month, self._today())
        held = {m["month"]: m for m in figures.activity_months(self.store, community_id, first, last)}
        return [held.get(m) or activity.view({"month": m}) for m in _months_between(first, last)]


def _months_between(first: str, last: str) -> list[str]:
    start, end = int(first[:4]) * 12 + int(first[5:]) - 1, int(last[:4]) * 12 + int(last[5:]) - 1
    return [f"{index // 12:04d}-{index % 12 + 1:02d}" for index in range(start, end + 1)]
