"""The communities' time zone: what "today" and "this month" mean for a service (``COMMUNITY_TIME_ZONE``
in its config.yaml, from ``LINLI_TIME_ZONE``), and the one place its default is written."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

DEFAULT_TIME_ZONE = "Asia/Shanghai"


def community_time_zone(config=None) -> str:
    """The configured IANA name, or the default (Chengdu's, as the whole of China keeps)."""
    return (config or {}).get("COMMUNITY_TIME_ZONE") or DEFAULT_TIME_ZONE


def community_zone(config=None) -> ZoneInfo:
    return ZoneInfo(community_time_zone(config))


def community_today(config=None) -> date:
    return datetime.now(community_zone(config)).date()
