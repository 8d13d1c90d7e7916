"""Who is told what, on which channel, and when: preferences, quiet hours, digest, critical."""
from datetime import datetime, time, timezone

from services.notifications import policy
from services.notifications.compose import Composer, Recipient, preferences_from, quiet_hours_from

SHANGHAI_NOON = datetime(2026, 12, 1, 4, 0, tzinfo=timezone.utc)  # 12:00 in Chengdu
SHANGHAI_23H = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)  # 23:00 in Chengdu
BOTH = {"inapp": True, "email": True, "sms": True}


def plans(kind, prefs, now, consent=BOTH, category=None):
    k = policy.KINDS[kind]
    return {p.channel: p for p in policy.plan_push(k, category or k.category, consent, prefs, now)}


def test_push_channels_need_consent_even_for_critical_messages():
    assert plans("welcome", policy.Preferences(), SHANGHAI_NOON, consent={"inapp": True}) == {}
    assert plans("permit_expiring", policy.Preferences(), SHANGHAI_NOON, consent={"sms": True}).keys() == {"sms"}


def test_opt_out_per_category_and_channel():
    prefs = policy.Preferences(opt_outs=frozenset({("food", "sms"), ("lecture", "*")}))
    assert plans("event_announced", prefs, SHANGHAI_NOON, category="food").keys() == {"email"}
    assert plans("event_announced", prefs, SHANGHAI_NOON, category="lecture") == {}
    assert not policy.wants_inbox(policy.KINDS["event_announced"], "lecture", prefs)
    assert policy.wants_inbox(policy.KINDS["event_announced"], "food", prefs)


def test_critical_messages_ignore_opt_outs_quiet_hours_and_digest():
    prefs = policy.Preferences(opt_outs=frozenset({("permit", "*")}), digest=True)
    planned = plans("permit_expiring", prefs, SHANGHAI_23H)
    assert {c: (p.due_at, p.held_for_digest) for c, p in planned.items()} == {
        "email": (SHANGHAI_23H, False), "sms": (SHANGHAI_23H, False)}
    assert policy.wants_inbox(policy.KINDS["permit_expiring"], "permit", prefs)


def test_quiet_hours_hold_non_urgent_messages_until_morning_in_the_residents_time_zone():
    assert plans("welcome", policy.Preferences(), SHANGHAI_NOON)["email"].due_at == SHANGHAI_NOON
    due = plans("welcome", policy.Preferences(), SHANGHAI_23H)["email"].due_at
    assert due == datetime(2026, 12, 2, 0, 0, tzinfo=timezone.utc)  # 08:00 next day in Chengdu
    # 23:00 in Chengdu is 16:00 in Paris: not quiet there.
    paris = policy.Preferences(time_zone="Europe/Paris")
    assert plans("welcome", paris, SHANGHAI_23H)["email"].due_at == SHANGHAI_23H
    assert plans("welcome", policy.Preferences(quiet_hours=None), SHANGHAI_23H)["email"].due_at == SHANGHAI_23H


def test_quiet_hours_within_one_day():
    quiet = policy.QuietHours(time(13, 0), time(14, 30))
    assert quiet.contains(time(13, 0)) and quiet.contains(time(14, 29)) and not quiet.contains(time(14, 30))
    assert not quiet.contains(time(12, 59))


def test_digest_holds_until_the_next_digest_time():
    prefs = policy.Preferences(digest=True, digest_at=time(19, 0))
    plan = plans("event_announced", prefs, SHANGHAI_NOON, category="food")["email"]
    assert plan.held_for_digest and plan.due_at == datetime(2026, 12, 1, 11, 0, tzinfo=timezone.utc)
    late = plans("event_announced", prefs, SHANGHAI_23H, category="food")["email"]
    assert late.due_at == datetime(2026, 12, 2, 11, 0, tzinfo=timezone.utc)


def test_retry_delay_grows_and_is_capped():
    assert [policy.retry_delay(n, 30, 300) for n in (1, 2, 3, 4, 5, 6)] == [30, 60, 120, 240, 300, 300]


def test_stored_preferences_are_read_back():
    prefs = preferences_from({"time_zone": "Europe/Paris", "opt_outs": [{"category": "food", "channel": "sms"}],
                              "quiet_hours": None, "digest": True, "digest_at": "19:30"}, policy.Preferences())
    assert prefs == policy.Preferences(time_zone="Europe/Paris", opt_outs=frozenset({("food", "sms")}),
                                       quiet_hours=None, digest=True, digest_at=time(19, 30))
    community = policy.Preferences(time_zone="Asia/Shanghai", quiet_hours=quiet_hours_from("21:00-07:30"))
    assert preferences_from(None, community) == community
    assert preferences_from({"opt_outs": []}, community).quiet_hours == policy.QuietHours(time(21), time(7, 30))
    assert quiet_hours_from("off") is None


def test_one_notification_id_per_fact_and_recipient_and_each_language_rendered_once():
    composer = Composer("welcome", "fact-1", {"community": {"en": "Tongzilin", "zh-CN": "桐梓林"}}, SHANGHAI_NOON)
    a = composer.records(Recipient("r1", "tongzilin", "en", consent={"inapp": True, "email": True}))
    b = composer.records(Recipient("r2", "tongzilin", "en"))
    again = composer.records(Recipient("r1", "tongzilin", "en", consent={"inapp": True, "email": True}))
    assert a[0]["_id"] == again[0]["_id"] == "welcome:fact-1:r1" and b[0]["_id"] == "welcome:fact-1:r2"
    assert [d["_id"] for d in a[1]] == ["welcome:fact-1:r1:email"] and b[1] == []
    assert len(composer._rendered) == 1


def test_a_resident_who_opted_out_of_everything_for_a_category_gets_no_record():
    prefs = policy.Preferences(opt_outs=frozenset({("food", "*")}))
    composer = Composer("event_announced", "f", {"event": {"title": "x", "starts_at": "2026-12-12T10:00:00+08:00",
                                                            "venue": "", "capacity": 1}}, SHANGHAI_NOON,
                        category="food")
    assert composer.records(Recipient("r1", "tongzilin", "en", consent=BOTH, prefs=prefs)) is None
