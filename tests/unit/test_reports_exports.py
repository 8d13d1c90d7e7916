"""Exports, charts and the monthly report from known figures: no broker, no database."""
import csv
import io
import logging
import warnings
from datetime import date

import pytest
from openpyxl import load_workbook

from services.reports import activity, charts, exports, monthly_report, profile, scorecard

TODAY = date(2026, 11, 26)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

PROFILE = profile.view({
    "_id": "tongzilin", "residents_total": 5, "by_residence_type": {"registered": 3, "foreign": 2},
    "by_nationality": {"CN": 3, "FR": 1, "KR": 1}, "by_birth_year": {"1950": 2, "1990": 2, "2015": 1},
    "by_tag": {"elderly": 2, "volunteer": 1}, "arrivals": {"2026-11": 5}, "departures": {"2026-11": 1}}, TODAY)

OCTOBER = activity.view({"month": "2026-10", "events_held": 2, "held_by_category": {"food": 1, "lecture": 1},
                         "registered": 40, "attended": 30, "attended_of_registered": 30, "waitlisted": 8,
                         "ratings": 2, "rating_sum": 17, "rating_distribution": {"10": 1, "7": 1},
                         "ratings_9_plus": 1, "notifications": {"inapp": {"sent": 3}, "email": {"failed": 1}},
                         "notified": 3, "notified_in_own_language": 3})
NOVEMBER = activity.view({"month": "2026-11", "events_held": 1, "held_by_category": {"culture": 1},
                          "registered": 10, "attended": 10, "attended_of_registered": 10})
MONTHS = [OCTOBER, NOVEMBER]

OVERVIEW = {"month": "2026-10", "communities": [
    {"community_id": "tongzilin", "residents_total": 5, "foreign_share": 0.4,
     **{k: OCTOBER[k] for k in ("events_held", "registrations", "attendance_rate", "no_show_rate", "waitlist_pressure",
                                "average_satisfaction", "notification_failure_rate",
                                "notified_in_own_language_share")}}]}

CARD = scorecard.load()
RANKING = {"month": "2026-10", "demonstration_threshold": CARD.demonstration_threshold,
           "communities": scorecard.rank({"tongzilin": scorecard.score(CARD, OCTOBER, PROFILE),
                                          "yulin": scorecard.score(CARD, activity.view({"month": "2026-10"}),
                                                                   profile.view({"_id": "yulin"}, TODAY))})}


def read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "a byte-order mark, so Excel reads UTF-8"
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def read_xlsx(data: bytes) -> list[list]:
    sheet = load_workbook(io.BytesIO(data)).active
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def as_dicts(rows):
    header, *body = rows
    return [dict(zip(header, row)) for row in body]


def test_the_profile_table_in_both_formats():
    table = exports.profile_table(PROFILE)
    assert table.header == ["社区 / Community", "维度 / Dimension", "类别 / Category", "人数 / Residents"]
    for rows in (read_csv(exports.to_csv(table)), read_xlsx(exports.to_xlsx(table))):
        cells = {(r["维度 / Dimension"], r["类别 / Category"] or ""): int(r["人数 / Residents"]) for r in as_dicts(rows)}
        assert cells[("总人口 / Total", "")] == 5
        assert cells[("居住类型 / Residence type", "境外 / foreign")] == 2
        assert cells[("居住类型 / Residence type", "户籍 / registered")] == 3
        assert cells[("国籍 / Nationality", "FR")] == 1
        assert cells[("年龄段 / Age band", "60+")] == 2 and cells[("年龄段 / Age band", "0-14")] == 1
        assert cells[("标签 / Tag", "elderly")] == 2
        assert cells[("迁入 / Arrivals", "2026-11")] == 5 and cells[("迁出 / Departures", "2026-11")] == 1
        assert {r["社区 / Community"] for r in as_dicts(rows)} == {"tongzilin"}


def test_the_activity_table_has_a_row_per_month_and_columns_for_what_occurs():
    table = exports.activity_table("tongzilin", MONTHS)
    csv_rows, xlsx_rows = read_csv(exports.to_csv(table)), read_xlsx(exports.to_xlsx(table))
    assert csv_rows[0] == xlsx_rows[0] == table.header
    assert "举办·美食 / Held: food" in table.header and "通知·邮件·失败 / Notifications: email failed" in table.header
    october, november = as_dicts(xlsx_rows)
    assert october["月份 / Month"] == "2026-10" and october["举办活动 / Events held"] == 2
    assert october["出席率 / Attendance rate"] == 0.75 and october["平均满意度 / Average satisfaction"] == 8.5
    assert october["评分10 / Rated 10"] == 1 and october["举办·美食 / Held: food"] == 1
    assert october["通知·站内·已发送 / Notifications: inapp sent"] == 3
    assert november["举办·文化 / Held: culture"] == 1 and november["平均满意度 / Average satisfaction"] is None
    october_csv, november_csv = as_dicts(csv_rows)
    assert october_csv["出席率 / Attendance rate"] == "0.75" and november_csv["平均满意度 / Average satisfaction"] == ""
    sheet = load_workbook(io.BytesIO(exports.to_xlsx(table))).active
    rate_column = table.header.index("出席率 / Attendance rate") + 1
    assert sheet.cell(row=2, column=rate_column).number_format == "0.0%"


def test_the_city_overview_table():
    table = exports.overview_table(OVERVIEW)
    for rows in (read_csv(exports.to_csv(table)), read_xlsx(exports.to_xlsx(table))):
        [row] = as_dicts(rows)
        assert row["社区 / Community"] == "tongzilin" and row["月份 / Month"] == "2026-10"
        assert float(row["境外人员占比 / Foreign share"]) == 0.4 and int(row["举办活动 / Events held"]) == 2


def test_the_scorecard_table_ranks_with_criteria():
    table = exports.scorecard_table(RANKING)
    assert "9分以上占比 / Rated 9+ · 数值 value" in table.header
    for rows in (read_csv(exports.to_csv(table)), read_xlsx(exports.to_xlsx(table))):
        first, second = as_dicts(rows)
        assert (first["社区 / Community"], int(first["排名 / Rank"])) == ("tongzilin", 1)
        assert float(first["得分 / Score"]) == RANKING["communities"][0]["score"]
        assert float(first["9分以上占比 / Rated 9+ · 数值 value"]) == 0.5
        assert second["社区 / Community"] == "yulin" and second["示范社区 / Demonstration"] == "否 / no"


def test_empty_tables_still_have_their_header():
    table = exports.scorecard_table({"month": "2026-10", "communities": []})
    assert read_csv(exports.to_csv(table)) == [table.header]
    assert read_xlsx(exports.to_xlsx(exports.activity_table("tongzilin", [])))[0][:2] == ["社区 / Community",
                                                                                           "月份 / Month"]


@pytest.fixture
def no_missing_glyphs(caplog):
    """Fails the test if matplotlib could not find a glyph (it warns, and may log, instead of failing)."""
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="matplotlib"):
        warnings.simplefilter("always")
        yield
    problems = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    problems += [r.getMessage() for r in caplog.records if r.name.startswith("matplotlib")]
    assert not problems, problems


def test_the_glyph_check_catches_a_font_without_chinese(no_missing_glyphs):
    """The check above is real: DejaVu Sans alone cannot draw 人口."""
    from matplotlib.figure import Figure

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure = Figure()
        figure.subplots().set_title("人口", family="DejaVu Sans")
        figure.savefig(io.BytesIO(), format="png")
    assert any("missing from font" in str(w.message) for w in caught)


@pytest.mark.parametrize("name", charts.CHART_NAMES)
@pytest.mark.parametrize("months", [MONTHS, []], ids=["with-data", "empty"])
def test_each_chart_is_a_png_with_every_chinese_glyph(name, months, no_missing_glyphs):
    png = charts.chart(name, PROFILE if months else profile.view({"_id": "empty"}, TODAY), months)
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (800, 420)


def test_an_unknown_chart_is_refused():
    with pytest.raises(charts.UnknownChart):
        charts.chart("pie", PROFILE, MONTHS)


def test_the_monthly_report_embeds_the_charts_and_key_figures(no_missing_glyphs):
    page = monthly_report.render(
        community_id="tongzilin", month="2026-10", this_month=OCTOBER, months=MONTHS, profile=PROFILE,
        scorecard_entry=RANKING["communities"][0], demonstration_threshold=80, today=TODAY)
    assert page.count('src="data:image/png;base64,iVBORw0KGgo') == 3  # the PNG signature, base64
    for chart_id in ("chart-population", "chart-events", "chart-satisfaction"):
        assert f'id="{chart_id}"' in page
    assert "社区月报" in page and "Monthly community report" in page
    assert ">2<" in page and "75.0%" in page and "8.5" in page  # events held, attendance, satisfaction
    assert "境外 / foreign" in page and "第 <strong>1</strong> 名" in page


def test_the_monthly_report_escapes_and_copes_with_no_ranking():
    page = monthly_report.render(
        community_id="<script>x</script>", month="2026-10", this_month=activity.view({"month": "2026-10"}),
        months=[], profile=profile.view({"_id": "<script>x</script>"}, TODAY), scorecard_entry=None,
        demonstration_threshold=80, today=TODAY)
    assert "<script>x" not in page and "&lt;script&gt;" in page
    assert "Not ranked this month" in page


FORMULAS = ['=HYPERLINK("http://evil.example","click")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def test_formula_looking_cells_are_exported_inert():
    table = exports.Table("t", (exports.Column("=header"), exports.Column("n")),
                          tuple((text, -3) for text in FORMULAS) + (("plain", 1.5),))
    expected = [["'=header", "n"]] + [["'" + text, -3] for text in FORMULAS] + [["plain", 1.5]]
    assert read_csv(exports.to_csv(table)) == [[str(cell) for cell in row] for row in expected]
    workbook = load_workbook(io.BytesIO(exports.to_xlsx(table)))
    cells = list(workbook.active.iter_rows())
    as_xml = [[cell.replace("\r", "\n") if isinstance(cell, str) else cell for cell in row] for row in expected]
    assert [[cell.value for cell in row] for row in cells] == as_xml  # XML keeps a CR as a line feed
    assert all(cell.data_type != "f" for row in cells for cell in row)  # no cell is stored as a formula
