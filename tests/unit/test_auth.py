from datetime import timedelta

import pytest

from services.common.auth import (
    AuthError, Forbidden, OutsideTokenCommunities, decode_token, issue_token, principal_from_header,
)

SECRET = "unit-test-secret"


def test_a_token_round_trips_scopes_and_communities():
    token = issue_token(SECRET, subject="worker-7", scopes=["residents:read"], communities=["tongzilin"])
    principal = decode_token(SECRET, token)
    assert principal.subject == "worker-7"
    principal.require_scope("residents:read")
    principal.require_community("tongzilin")
    with pytest.raises(Forbidden):
        principal.require_scope("residents:write")
    with pytest.raises(Forbidden):
        principal.require_community("yulin")


def test_the_committee_sees_every_community():
    principal = decode_token(SECRET, issue_token(SECRET, subject="c", scopes=[], communities=["*"]))
    assert principal.may_see("tongzilin") and principal.may_see("yulin")


def test_an_expired_token_is_refused():
    token = issue_token(SECRET, subject="s", scopes=[], communities=[], ttl=timedelta(seconds=-1))
    with pytest.raises(AuthError, match="expired"):
        decode_token(SECRET, token)


def test_a_token_signed_with_another_secret_is_refused():
    token = issue_token("another-secret", subject="s", scopes=[], communities=[])
    with pytest.raises(AuthError, match="not valid"):
        decode_token(SECRET, token)


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "token"])
def test_a_missing_or_malformed_header_is_refused(header):
    with pytest.raises(AuthError):
        principal_from_header(SECRET, header)


def test_what_a_token_reaches_is_one_rule():
    local = decode_token(SECRET, issue_token(SECRET, subject="l", scopes=[], communities=["tongzilin"]))
    city = decode_token(SECRET, issue_token(SECRET, subject="c", scopes=[], communities=["*"]))
    assert local.communities_beyond(["tongzilin"]) == [] and city.communities_beyond(["*", "yulin"]) == []
    assert local.communities_beyond(["*"]) == ["*"]  # every community is reached only by a '*' token
    assert local.communities_beyond(["yulin", "tongzilin", "wuhou"]) == ["wuhou", "yulin"]
    with pytest.raises(OutsideTokenCommunities) as refused:
        local.require_communities(["tongzilin", "yulin"], "the partner")
    assert refused.value.status == 403 and refused.value.code == "outside_token_communities"
    assert refused.value.details == {"communities": ["yulin"], "token_communities": ["tongzilin"]}
    city.require_communities(["*"], "a rebuild")
