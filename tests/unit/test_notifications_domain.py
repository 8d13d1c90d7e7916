

import pytest

from services.notifications.domain import language_chain, render
from services.notifications.policy import KINDS

TONGZILIN = {"zh-CN": "桐梓林", "en": "Tongzilin"}
EVENT = {"title": {"zh-CN": "国际美食节", "en": "International Food Festival"}, "venue": "桐梓林社区广场",
         "starts_at": "2026-12-12T10:00:00+08:00", "capacity": 1200}


def test_language_chain_falls_back_to_english_then_chinese():
    assert language_chain("fr-FR") == ["fr-FR", "fr", "en", "zh-CN"]
    assert language_chain("zh-CN") == ["zh-CN", "zh", "en"]
    assert language_chain("en") == ["en", "zh-CN"]


@pytest.mark.parametrize(
    "preferred, language, needle",
    [("zh-CN", "zh-CN", "欢迎"), ("en", "en", "Welcome"), ("ko-KR", "en", "Welcome"), ("en-GB", "en", "Welcome")],
)
def test_welcome_is_rendered_in_the_best_available_language(preferred, language, needle):
    message = render("welcome", preferred, community=TONGZILIN)
    assert message.language == language
    assert needle in message.title
    assert ("桐梓林" if language == "zh-CN" else "Tongzilin") in message.body
    assert "{{" not in message.body and "{%" not in message.title


def test_dates_times_and_numbers_follow_the_readers_locale_and_time_zone():
    english = render("event_announced", "en", event=EVENT, time_zone="Asia/Shanghai")
    assert "Dec 12, 2026, 10:00:00" in english.body and "1,200 places" in english.body
    chinese = render("event_announced", "zh-CN", event=EVENT, time_zone="Asia/Shanghai")
    assert "2026年12月12日 10:00:00" in chinese.body and "1,200个名额" in chinese.body
    # The same instant read by someone in Paris.
    paris = render("event_announced", "fr", event=EVENT, time_zone="Europe/Paris")
    assert paris.language == "en" and "Dec 12, 2026, 3:00:00" in paris.body


def test_promotion_names_the_confirm_by_time_in_the_readers_time_zone():
    message = render("registration_promoted", "en", event=EVENT, confirm_by="2026-12-10T12:00:00+00:00",
                     time_zone="Asia/Shanghai")
    assert "confirm by Dec 10, 2026, 8:00:00" in message.body


ALL_VARIABLES = {
    "community": TONGZILIN, "event": EVENT, "waitlist_position": 3, "confirm_by": "2026-12-10T20:00:00+08:00",
    "permit_label": {"en": "residence permit", "zh-CN": "居留许可"}, "expires_on": "2026-12-26", "days_left": 30,
    "resident_id": "r1", "items": [{"title": "a"}, {"title": "b"}], "unsubscribe_url": "http://x/unsubscribe",
    "time_zone": "Asia/Shanghai",
}


@pytest.mark.parametrize("kind", [*KINDS, "email_footer"])
@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_every_kind_is_complete_in_chinese_and_english(kind, language):
    message = render(kind, language, **ALL_VARIABLES)
    assert message.language == language
    assert message.body and (message.title or kind == "email_footer")
    assert "{" not in message.body + message.title


def test_a_missing_variable_is_an_error_not_an_empty_string():
    with pytest.raises(Exception, match="community"):
        render("welcome", "en")


def test_an_unknown_kind_is_an_error():
    with pytest.raises(LookupError):
        render("no-such-kind", "en")




@pytest.mark.parametrize("value", [None, "", "off", False])  # False: how YAML reads a bare `off`
def test_quiet_hours_can_be_switched_off_in_config(value):
    from services.notifications.compose import quiet_hours_from

    assert quiet_hours_from(value) is None


def test_quiet_hours_from_config_text():
    from datetime import time

    from services.notifications.compose import quiet_hours_from

    hours = quiet_hours_from("22:30-07:00")
    assert (hours.start, hours.end) == (time(22, 30), time(7, 0))
