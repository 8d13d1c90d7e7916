"""What to tell a resident, in which language. Pure Python.

Templates are Jinja2 files ``<kind>.<language>.j2`` whose body is the
message and whose ``title`` block variable is its subject. Dates, times and
numbers are formatted by Babel in the language of the template chosen and in
the reader's time zone, so a French reader who gets the English text also
gets English dates, never a mixture.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, pass_context

from services.common.community_time import DEFAULT_TIME_ZONE

TEMPLATES = Path(__file__).parent / "templates"
FALLBACK_LANGUAGES = ("en", "zh-CN")


@dataclass(frozen=True)
class Message:
    kind: str
    language: str
    title: str
    body: str


def _locale(context) -> Locale:
    return Locale.parse(context["language"], sep="-")


def _zone(context) -> ZoneInfo:
    return ZoneInfo(context.get("time_zone") or DEFAULT_TIME_ZONE)


def _as_datetime(value) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


@pass_context
def _datetime(context, value, width="medium"):
    return format_datetime(_as_datetime(value), width, tzinfo=_zone(context), locale=_locale(context))


@pass_context
def _time(context, value, width="short"):
    return format_time(_as_datetime(value), width, tzinfo=_zone(context), locale=_locale(context))


@pass_context
def _date(context, value, width="long"):
    value = date.fromisoformat(value) if isinstance(value, str) else value
    return format_date(value, width, locale=_locale(context))


@pass_context
def _number(context, value):
    return format_decimal(value, locale=_locale(context))


@pass_context
def _pick(context, texts):
    """The text of a {language: text} mapping (an event title) in the reader's language."""
    if isinstance(texts, str):
        return texts
    for language in language_chain(context["language"]):
        if texts.get(language):
            return texts[language]
    return next(iter(texts.values()), "")


_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    undefined=StrictUndefined,  # a missing variable is a bug, not an empty string
    autoescape=False,
    keep_trailing_newline=False,
)
_env.filters.update(datetime=_datetime, time=_time, date=_date, number=_number, pick=_pick)


def language_chain(preferred: str) -> list[str]:
    """Languages to try, best first: the tag, its base language, then en, then zh-CN."""
    chain = [preferred]
    base = preferred.split("-")[0]
    if base != preferred:
        chain.append(base)
    for fallback in FALLBACK_LANGUAGES:
        if fallback not in chain:
            chain.append(fallback)
    return chain


def render(kind: str, preferred_language: str, **variables) -> Message:
    """Render notification ``kind`` in the first language of the chain that has a template."""
    for language in language_chain(preferred_language):
        try:
            template = _env.get_template(f"{kind}.{language}.j2")
        except TemplateNotFound:
            continue
        module = template.make_module({**variables, "language": language})
        return Message(kind=kind, language=language, title=str(getattr(module, "title", "")).strip(), body=str(module).strip())
    raise LookupError(f"no template for notification kind {kind!r} in any language")
