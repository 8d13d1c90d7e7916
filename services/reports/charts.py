"""The reports' figures as PNG charts, with Chinese titles and labels.

Each chart is drawn on its own ``matplotlib.figure.Figure`` (never pyplot,
whose current-figure state is global and shared between workers), with the
Agg renderer. Chinese needs a CJK font: Noto Sans SC comes from the
``pylopdf-fonts-zh-cn`` wheel and is registered here by file path, so no
system font is needed; DejaVu Sans (bundled with matplotlib) is the fallback
for the odd symbol Noto Sans SC lacks.
"""
from __future__ import annotations

import io

import pylopdf_fonts_zh_cn
from matplotlib import font_manager
from matplotlib.figure import Figure

from services.reports.exports import EVENT_CATEGORIES, RESIDENCE_TYPES

CJK_FONT_PATH = str(pylopdf_fonts_zh_cn.sans_path())
font_manager.fontManager.addfont(CJK_FONT_PATH)
FONT_FAMILY = [font_manager.FontProperties(fname=CJK_FONT_PATH).get_name(), "DejaVu Sans"]
FONT = font_manager.FontProperties(family=FONT_FAMILY)
TITLE_FONT = font_manager.FontProperties(family=FONT_FAMILY, size=13)

AGE_BAND_LABELS = {"0-14": "0-14岁", "15-34": "15-34岁", "35-59": "35-59岁", "60+": "60岁以上", "unknown": "未知"}
PALETTE = ("#3b7dd8", "#e4572e", "#f3a712", "#29bf12", "#a846a0", "#4c5b61", "#17becf", "#bcbd22", "#8c564b")


class UnknownChart(KeyError):
    """A chart name that is not one of ``CHART_NAMES``."""


def _figure() -> Figure:
    return Figure(figsize=(8, 4.2), dpi=100, layout="constrained")


def _style(ax, title: str, xlabel: str = "", ylabel: str = "") -> None:
    ax.set_title(title, fontproperties=TITLE_FONT)
    ax.set_xlabel(xlabel, fontproperties=FONT)
    ax.set_ylabel(ylabel, fontproperties=FONT)
    ax.tick_params(labelfontfamily=FONT_FAMILY)
    ax.spines[["top", "right"]].set_visible(False)


def _no_data(ax) -> None:
    ax.text(0.5, 0.5, "暂无数据 No data", ha="center", va="center", transform=ax.transAxes,
            fontproperties=FONT, color="#888888")


def _png(figure: Figure) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def population_chart(profile: dict) -> bytes:
    """Residents by age band (horizontal bars, youngest at the bottom) and by residence type."""
    figure = _figure()
    by_age, by_type = figure.subplots(1, 2, width_ratios=(3, 2))
    bands = profile["residents_by_age_band"]
    if not bands.get("unknown"):
        bands = {band: n for band, n in bands.items() if band != "unknown"}
    labels = [AGE_BAND_LABELS.get(band, band) for band in bands]
    bars = by_age.barh(labels, list(bands.values()), color=PALETTE[0])
    by_age.bar_label(bars, padding=3, fontfamily=FONT_FAMILY)
    by_age.xaxis.get_major_locator().set_params(integer=True)
    _style(by_age, f"年龄结构 Age bands · 共{profile['residents_total']}人", xlabel="人数 Residents")
    types = profile["residents_by_residence_type"]
    if types:
        bars = by_type.bar([RESIDENCE_TYPES.get(t, t) for t in types], list(types.values()),
                           color=PALETTE[1:1 + len(types)])
        by_type.bar_label(bars, padding=3, fontfamily=FONT_FAMILY)
    else:
        _no_data(by_type)
    by_type.yaxis.get_major_locator().set_params(integer=True)
    _style(by_type, "居住类型 Residence type", ylabel="人数 Residents")
    return _png(figure)


def events_chart(months: list[dict]) -> bytes:
    """Events held per month, stacked by category."""
    figure = _figure()
    ax = figure.subplots()
    labels = [m["month"] for m in months]
    categories = sorted({c for m in months for c in m["events_held_by_category"]})
    bottoms = [0] * len(months)
    for colour_index, category in enumerate(categories):
        counts = [m["events_held_by_category"].get(category, 0) for m in months]
        ax.bar(labels, counts, bottom=bottoms, label=EVENT_CATEGORIES.get(category, category),
               color=PALETTE[colour_index % len(PALETTE)])
        bottoms = [b + c for b, c in zip(bottoms, counts)]
    if categories:
        ax.legend(prop=FONT, frameon=False, loc="upper left", ncols=min(len(categories), 5))
        ax.set_ylim(0, max(bottoms) * 1.3 + 1)
    else:
        _no_data(ax)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.tick_params(axis="x", labelrotation=45)
    _style(ax, "每月举办活动 Events held per month", ylabel="场次 Events")
    return _png(figure)


def satisfaction_chart(months: list[dict]) -> bytes:
    """Average satisfaction (1-10) per month; a month without ratings is a gap, not a zero."""
    figure = _figure()
    ax = figure.subplots()
    positions = range(len(months))  # numeric, so a month without ratings keeps its place on the axis
    averages = [m["average_satisfaction"] for m in months]
    ax.plot(positions, [float("nan") if a is None else a for a in averages], marker="o", color=PALETTE[0])
    for position, average in zip(positions, averages):
        if average is not None:
            ax.annotate(f"{average:.1f}", (position, average), textcoords="offset points", xytext=(0, 7),
                        ha="center", fontfamily=FONT_FAMILY)
    ax.set_xticks(positions, [m["month"] for m in months])
    ax.set_xlim(-0.5, max(len(months) - 0.5, 0.5))
    if all(a is None for a in averages):
        _no_data(ax)
    ax.set_ylim(0, 10.8)
    ax.tick_params(axis="x", labelrotation=45)
    _style(ax, "满意度趋势 Satisfaction trend", ylabel="平均评分 Average rating (1-10)")
    return _png(figure)


CHART_NAMES = ("population", "events", "satisfaction")


def chart(name: str, profile: dict, months: list[dict]) -> bytes:
    """The chart called ``name`` as PNG bytes; raises ``UnknownChart`` for any other name."""
    if name == "population":
        return population_chart(profile)
    if name == "events":
        return events_chart(months)
    if name == "satisfaction":
        return satisfaction_chart(months)
    raise UnknownChart(name)
