"""The reports' figures as tables, and tables as CSV or XLSX files. Pure: no database, no HTTP.

Every header and label is bilingual in one style, ``中文 / English``, so a
spreadsheet reads the same to the committee and to a foreign volunteer.
Codes that are data (nationality ``FR``, month ``2026-11``) stay as they are.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from openpyxl import Workbook
from openpyxl.styles import Font

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

RESIDENCE_TYPES = {"registered": "户籍", "non_registered": "非户籍", "foreign": "境外"}
EVENT_CATEGORIES = {"culture": "文化", "food": "美食", "lecture": "讲座", "photography": "摄影",
                    "banquet": "宴会", "volunteer": "志愿服务", "consultation": "咨询", "sport": "体育",
                    "other": "其他"}
CHANNELS = {"inapp": "站内", "email": "邮件", "sms": "短信"}
OUTCOMES = {"sent": "已发送", "failed": "失败", "skipped": "跳过"}
CRITERIA = {"events_per_month": "月活动数 / Events per month", "participation_rate": "参与率 / Participation",
            "satisfaction_9_plus": "9分以上占比 / Rated 9+", "average_satisfaction": "平均满意度 / Satisfaction",
            "own_language_reach": "母语通知 / Own-language reach", "attendance_rate": "出席率 / Attendance rate"}
OTHER_LABELS = {"other": "其他", "unknown": "未知"}


def bilingual(code: str, chinese: dict[str, str]) -> str:
    """``境外 / foreign`` for a code with a Chinese name, the code itself otherwise."""
    return f"{chinese[code]} / {code}" if code in chinese else code


@dataclass(frozen=True)
class Column:
    header: str
    ratio: bool = False  # a share in 0..1, shown as a percentage in XLSX


@dataclass(frozen=True)
class Table:
    """A header and rows; ``sheet`` names the XLSX sheet (at most 31 characters)."""

    sheet: str
    columns: tuple[Column, ...]
    rows: tuple[tuple, ...]

    @property
    def header(self) -> list[str]:
        return [column.header for column in self.columns]


COMMUNITY = Column("社区 / Community")
MONTH = Column("月份 / Month")

# -- figures -> tables ----------------------------------------------------------------------


def profile_breakdowns(profile: dict) -> list[tuple[str, str, dict]]:
    """``figures.profile_of`` as (Chinese, English, {category: residents}); the HTML report shows the same."""
    return [
        ("居住类型", "Residence type", {bilingual(k, RESIDENCE_TYPES): v
                                    for k, v in profile["residents_by_residence_type"].items()}),
        ("国籍", "Nationality", {bilingual(k, OTHER_LABELS): v for k, v in profile["residents_by_nationality"].items()}),
        ("年龄段", "Age band", {bilingual(k, OTHER_LABELS): v for k, v in profile["residents_by_age_band"].items()}),
        ("标签", "Tag", profile["residents_by_tag"]),
    ]


def profile_table(profile: dict) -> Table:
    """``figures.profile_of``: one row per (dimension, category) with its number of residents."""
    sections = [*profile_breakdowns(profile), ("迁入", "Arrivals", profile["arrivals_by_month"]),
                ("迁出", "Departures", profile["departures_by_month"])]
    community = profile["community_id"]
    rows = [(community, "总人口 / Total", "", profile["residents_total"])]
    rows += [(community, f"{chinese} / {english}", category, count)
             for chinese, english, counts in sections for category, count in counts.items()]
    return Table("profile", (COMMUNITY, Column("维度 / Dimension"), Column("类别 / Category"),
                             Column("人数 / Residents")), tuple(rows))


ACTIVITY_FIGURES = (
    ("events_scheduled", Column("已发布活动 / Events scheduled")),
    ("events_held", Column("举办活动 / Events held")),
    ("events_cancelled", Column("取消活动 / Events cancelled")),
    ("registrations", Column("报名 / Registrations")),
    ("attendance", Column("出席 / Attendance")),
    ("attendance_rate", Column("出席率 / Attendance rate", ratio=True)),
    ("no_show_rate", Column("缺席率 / No-show rate", ratio=True)),
    ("waitlisted", Column("候补 / Waitlisted")),
    ("waitlist_pressure", Column("候补压力 / Waitlist pressure", ratio=True)),
    ("ratings", Column("评分数 / Ratings")),
    ("average_satisfaction", Column("平均满意度 / Average satisfaction")),
    ("satisfaction_9_plus_share", Column("9分以上占比 / Rated 9+ share", ratio=True)),
    ("notification_failure_rate", Column("通知失败率 / Notification failure rate", ratio=True)),
    ("notified_in_own_language_share", Column("母语通知占比 / Own-language share", ratio=True)),
)


def activity_table(community_id: str, months: list[dict]) -> Table:
    """``figures.activity_months``: one row per month; categories and channels that occur get columns."""
    categories = sorted({c for m in months for c in m["events_held_by_category"]})
    channel_outcomes = sorted({(ch, out) for m in months for ch, outs in m["notifications_by_channel"].items()
                               for out in outs})
    columns = [COMMUNITY, MONTH, *(column for _, column in ACTIVITY_FIGURES)]
    columns += [Column(f"举办·{EVENT_CATEGORIES.get(c, c)} / Held: {c}") for c in categories]
    columns += [Column(f"评分{r} / Rated {r}") for r in range(1, 11)]
    columns += [Column(f"通知·{CHANNELS.get(ch, ch)}·{OUTCOMES.get(out, out)} / Notifications: {ch} {out}")
                for ch, out in channel_outcomes]
    rows = tuple(
        (community_id, m["month"], *(m[key] for key, _ in ACTIVITY_FIGURES),
         *(m["events_held_by_category"].get(c, 0) for c in categories),
         *(m["satisfaction_distribution"].get(str(r), 0) for r in range(1, 11)),
         *(m["notifications_by_channel"].get(ch, {}).get(out, 0) for ch, out in channel_outcomes))
        for m in months)
    return Table("activity", tuple(columns), rows)


OVERVIEW_FIGURES = (
    ("residents_total", Column("总人口 / Residents")),
    ("foreign_share", Column("境外人员占比 / Foreign share", ratio=True)),
    *((key, column) for key, column in ACTIVITY_FIGURES if key in (
        "events_held", "registrations", "attendance_rate", "no_show_rate", "waitlist_pressure",
        "average_satisfaction", "notification_failure_rate", "notified_in_own_language_share")),
)


def overview_table(overview: dict) -> Table:
    """``figures.city_overview``: one row per community for the month."""
    rows = tuple((overview["month"], c["community_id"], *(c[key] for key, _ in OVERVIEW_FIGURES))
                 for c in overview["communities"])
    return Table("city overview", (MONTH, COMMUNITY, *(column for _, column in OVERVIEW_FIGURES)), rows)


def scorecard_table(ranking: dict) -> Table:
    """``ReportsService.scorecard``: communities best first, with each criterion's value and points."""
    communities = ranking["communities"]
    criteria = [c["name"] for c in communities[0]["criteria"]] if communities else []
    columns = [MONTH, Column("排名 / Rank"), COMMUNITY, Column("得分 / Score"), Column("示范社区 / Demonstration")]
    for name in criteria:
        label = CRITERIA.get(name, name)
        columns += [Column(f"{label} · 数值 value"), Column(f"{label} · 得分 points")]
    rows = []
    for entry in communities:
        by_name = {c["name"]: c for c in entry["criteria"]}
        rows.append((ranking["month"], entry["rank"], entry["community_id"], entry["score"],
                     "是 / yes" if entry["demonstration"] else "否 / no",
                     *(part for name in criteria for part in (by_name[name]["value"], by_name[name]["points"]))))
    return Table("scorecard", tuple(columns), tuple(rows))


# -- tables -> files ------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(cell):
    """A text cell a spreadsheet would run as a formula (``=HYPERLINK(...)``, ``+``, ``-``, ``@``, tab, CR
    first) with a ``'`` before it, as OWASP advises against CSV injection; numbers and other text as they are.
    Tags and community ids come from collection forms, so any text may reach an export."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def to_csv(table: Table) -> bytes:
    """UTF-8 with a byte-order mark: without it Excel reads the Chinese as mojibake. Empty cell for None."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow([inert(cell) for cell in table.header])
    writer.writerows(["" if cell is None else inert(cell) for cell in row] for row in table.rows)
    return text.getvalue().encode("utf-8-sig")


def to_xlsx(table: Table) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = table.sheet[:31]
    sheet.append([inert(cell) for cell in table.header])  # openpyxl stores text starting with = as a formula
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in table.rows:
        sheet.append([inert(cell) for cell in row])
    for index, column in enumerate(table.columns, start=1):
        letter = sheet.cell(row=1, column=index).column_letter
        sheet.column_dimensions[letter].width = min(40, max(10, len(column.header) + 2))
        if column.ratio:
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                cell.number_format = "0.0%"
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


FORMATS = {"csv": (to_csv, CSV_CONTENT_TYPE), "xlsx": (to_xlsx, XLSX_CONTENT_TYPE)}
