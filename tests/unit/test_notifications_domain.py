import pytest

from services.notifications.domain import language_chain, render


def test_language_chain_falls_back_to_english_then_chinese():
    assert language_chain("fr-FR") == ["fr-FR", "fr", "en", "zh-CN"]
    assert language_chain("zh-CN") == ["zh-CN", "zh", "en"]
    assert language_chain("en") == ["en", "zh-CN"]


@pytest.mark.parametrize(
    "preferred, language, needle",
    [("zh-CN", "zh-CN", "欢迎"), ("en", "en", "Welcome"), ("ko-KR", "en", "Welcome"), ("en-GB", "en", "Welcome")],
)
def test_welcome_is_rendered_in_the_best_available_language(preferred, language, needle):
    message = render("welcome", preferred, community_id="tongzilin")
    assert message.language == language
    assert needle in message.title and "tongzilin" in message.body
    assert "{{" not in message.body and "{%" not in message.title


def test_a_missing_variable_is_an_error_not_an_empty_string():
    with pytest.raises(Exception, match="community_id"):
        render("welcome", "en")


def test_an_unknown_kind_is_an_error():
    with pytest.raises(LookupError):
        render("no-such-kind", "en")
