"""Residents told what concerns them: every rule, every channel against a real server, preferences.

Residents, events and notifications run as real services on a real broker
and database; email goes to a real SMTP server (aiosmtpd), SMS to an HTTP
gateway on loopback.
"""
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests
from nameko.standalone.rpc import ServiceRpcProxy

from services.events.service import EventsService
from services.notifications.service import NotificationsService
from services.residents.service import ResidentsService
from tests.integration.channel_servers import SmsGateway, SmtpServer
from tests.waiting import until

pytestmark = pytest.mark.integration
SCOPES = ["events:read", "events:write", "residents:read", "residents:write", "notifications:read",
          "notifications:write"]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def text(mail) -> str:
    return mail.get_payload(decode=True).decode()


@pytest.fixture
def smtp(tmp_path, free_port):
    server = SmtpServer(free_port(), tmp_path / "maildir")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sms(free_port):
    gateway = SmsGateway(free_port())
    gateway.start()
    yield gateway
    gateway.stop()


def notifications_config(config, free_port, smtp, sms, **extra):
    return {**config, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}", "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": smtp.port, "SMTP_SENDER": "tongzilin@linli.test",
            "SMS_GATEWAY_URL": f"http://127.0.0.1:{sms.port}/messages", "DEFAULT_QUIET_HOURS": "off",
            "DELIVERY_RETRY_BASE_SECONDS": 0.2, "DELIVERY_MAX_ATTEMPTS": 3,
            "SERVICE_CENTRE_EMAILS": {"tongzilin": "centre@tongzilin.linli.test"},
            "COMMUNITY_NAMES": {"tongzilin": {"zh-CN": "桐梓林", "en": "Tongzilin"}}, **extra}


class Platform:
    def __init__(self, urls, headers, config, smtp, sms):
        self.urls, self.headers, self.config, self.smtp, self.sms = urls, headers, config, smtp, sms

    def call(self, service, method, path, **kwargs):
        return requests.request(method, self.urls[service] + path, headers=self.headers, **kwargs)

    def resident(self, name, language="zh-CN", email=None, phone=None, consent=None, **overrides):
        body = {"community_id": "tongzilin", "name": name, "residence_type": "registered", "nationality": "CN",
                "preferred_language": language, "email": email, "phone": phone,
                "consent": consent or {"inapp": True, "email": bool(email), "sms": bool(phone)}, **overrides}
        response = self.call("residents", "POST", "/residents", json=body)
        assert response.status_code == 201, response.text
        resident_id = response.json()["id"]
        self.inbox_where(resident_id, lambda items: any(i["kind"] == "welcome" for i in items))
        return resident_id

    def inbox(self, resident_id):
        response = self.call("notifications", "GET", f"/residents/{resident_id}/inbox")
        assert response.status_code == 200, response.text
        return response.json()["items"]

    def inbox_where(self, resident_id, check, what="the inbox"):
        def items_if_ready():
            response = self.call("notifications", "GET", f"/residents/{resident_id}/inbox")
            items = response.json()["items"] if response.status_code == 200 else []  # 404 until projected
            return items if items and check(items) else None

        return until(items_if_ready, what=what)

    def kinds(self, resident_id):
        return sorted(i["kind"] for i in self.inbox(resident_id))

    def event(self, starts_at=None, capacity=10, **overrides):
        starts_at = starts_at or datetime.now(timezone.utc) + timedelta(days=10)
        body = {"community_id": "tongzilin", "organiser": "foreign_resident_service_centre", "category": "food",
                "title": {"zh-CN": "国际美食节", "en": "International Food Festival"}, "venue": "桐梓林社区广场",
                "starts_at": starts_at.isoformat(), "ends_at": (starts_at + timedelta(hours=3)).isoformat(),
                "capacity": capacity, "audience": "community", **overrides}
        [event_id] = self.call("events", "POST", "/events", json=body).json()["ids"]
        assert self.call("events", "POST", f"/events/{event_id}/schedule").status_code == 200
        return event_id

    def register(self, event_id, resident_id):
        response = self.call("events", "POST", f"/events/{event_id}/registrations", json={"resident_id": resident_id})
        assert response.status_code in (200, 201), response.text
        return response.json()

    def rpc(self, service):
        return ServiceRpcProxy(service, self.config)

    def preferences(self, resident_id, **prefs):
        response = self.call("notifications", "PUT", f"/residents/{resident_id}/preferences", json=prefs)
        assert response.status_code == 200, response.text


@pytest.fixture
def platform(container_factory, config, free_port, token, smtp, sms):
    return start_platform(container_factory, config, free_port, token, smtp, sms)


def start_platform(container_factory, config, free_port, token, smtp, sms, **notifications_extra):
    """Residents, events and notifications in containers, with real SMTP and SMS servers."""
    urls = {}
    for service_cls, extra in ((ResidentsService, {}), (EventsService, {"PROMOTION_CONFIRM_MINUTES": 60}),
                               (NotificationsService, None)):
        service_config = (notifications_config(config, free_port, smtp, sms, **notifications_extra) if extra is None
                          else {**config, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}", **extra})
        container_factory(service_cls, service_config).start()
        urls[service_cls.name] = f"http://{service_config['WEB_SERVER_ADDRESS']}"
    return Platform(urls, {"Authorization": f"Bearer {token(SCOPES)}"}, config, smtp, sms)


def test_welcome_in_the_residents_language_with_english_then_chinese_as_fallback(platform):
    chinese, english, korean = (platform.resident(n, language=lang)
                                for n, lang in (("王芳", "zh-CN"), ("John Smith", "en"), ("Kim Minji", "ko-KR")))
    [welcome] = platform.inbox(chinese)
    assert welcome["language"] == "zh-CN" and welcome["title"] == "欢迎加入桐梓林社区" and not welcome["read"]
    assert platform.inbox(english)[0]["title"] == "Welcome to Tongzilin"
    assert platform.inbox(korean)[0]["language"] == "en"


def test_an_event_is_announced_to_its_community_and_registrants_hear_about_their_registration(platform):
    wang, john, marie = (platform.resident(n, language=lang) for n, lang in
                         (("王芳", "zh-CN"), ("John Smith", "en"), ("Marie Dubois", "fr")))
    opted_out = platform.resident("李雷")
    platform.preferences(opted_out, opt_outs=[{"category": "food", "channel": "*"}])
    event_id = platform.event(capacity=1)
    for resident_id in (wang, john, marie):
        platform.inbox_where(resident_id, lambda items: any(i["kind"] == "event_announced" for i in items))
    announced = next(i for i in platform.inbox(marie) if i["kind"] == "event_announced")
    assert announced["title"] == "New event: International Food Festival" and announced["category"] == "food"
    assert "桐梓林社区广场" in announced["body"]

    platform.register(event_id, wang)
    platform.register(event_id, john)
    platform.inbox_where(wang, lambda items: "registration_confirmed" in [i["kind"] for i in items])
    waitlisted = platform.inbox_where(john, lambda items: "registration_waitlisted" in [i["kind"] for i in items])
    assert "number 1 on the waitlist" in next(i for i in waitlisted if i["kind"] == "registration_waitlisted")["body"]

    assert platform.call("events", "DELETE", f"/events/{event_id}/registrations/{wang}").status_code == 200
    promoted = platform.inbox_where(john, lambda items: "registration_promoted" in [i["kind"] for i in items])
    offer = platform.call("events", "GET", f"/events/{event_id}/registrations/{john}").json()
    confirm_by = datetime.fromisoformat(offer["confirm_by"]).astimezone(SHANGHAI)
    body = next(i for i in promoted if i["kind"] == "registration_promoted")["body"]
    assert f"confirm by {confirm_by:%b} {confirm_by.day}, {confirm_by.year}" in body

    later = datetime.now(timezone.utc) + timedelta(days=12)
    change = {"starts_at": later.isoformat(), "ends_at": (later + timedelta(hours=3)).isoformat()}
    assert platform.call("events", "PATCH", f"/events/{event_id}", json=change).status_code == 200
    platform.inbox_where(john, lambda items: "event_changed" in [i["kind"] for i in items])
    assert platform.call("events", "POST", f"/events/{event_id}/cancel").status_code == 200
    platform.inbox_where(john, lambda items: "event_cancelled" in [i["kind"] for i in items])

    assert platform.kinds(opted_out) == ["welcome"]
    assert platform.kinds(marie) == ["event_announced", "welcome"]  # never registered
    # wang cancelled before the change: no longer a registrant.
    assert platform.kinds(wang) == ["event_announced", "registration_confirmed", "welcome"]


def test_registrants_are_reminded_the_day_before_once(platform):
    resident = platform.resident("王芳")
    tomorrow = datetime.now(SHANGHAI).date() + timedelta(days=1)
    event_id = platform.event(starts_at=datetime(tomorrow.year, tomorrow.month, tomorrow.day, 10, tzinfo=SHANGHAI))
    platform.register(event_id, resident)
    platform.inbox_where(resident, lambda items: "registration_confirmed" in [i["kind"] for i in items])
    with platform.rpc("notifications") as notifications:
        assert notifications.run_event_reminders() == 1
        assert notifications.run_event_reminders() == 0
    reminder = next(i for i in platform.inbox(resident) if i["kind"] == "event_reminder")
    assert reminder["title"] == "明天:国际美食节" and "10:00" in reminder["body"]


def test_permit_expiry_reaches_the_resident_and_the_service_centre_whatever_their_preferences(platform):
    today = datetime.now(SHANGHAI).date()
    marie = platform.resident("Marie Dubois", language="fr", email="marie@example.test", residence_type="foreign",
                              nationality="FR", permit_type="residence_permit_work",
                              permit_expires_on=(today + timedelta(days=30)).isoformat())
    refused = platform.call("notifications", "PUT", f"/residents/{marie}/preferences",
                            json={"opt_outs": [{"category": "permit", "channel": "*"}]})
    assert refused.status_code == 400 and "critical" in refused.text
    platform.preferences(marie, opt_outs=[{"category": "account", "channel": "*"}], digest=True,
                         quiet_hours={"start": "00:00", "end": "23:59"})
    with platform.rpc("residents") as residents:
        assert residents.run_permit_reminders(today.isoformat()) == 1
    [permit] = [i for i in platform.inbox_where(marie, lambda items: len(items) == 2) if i["kind"] == "permit_expiring"]
    assert permit["critical"] and permit["title"] == "Your residence permit expires in 30 days"
    centre = until(lambda: platform.call("notifications", "GET", "/communities/tongzilin/inbox").json()["items"])
    assert centre[0]["kind"] == "permit_expiring_centre" and marie in centre[0]["title"]
    mails = until(lambda: len(platform.smtp.messages()) >= 3 and platform.smtp.messages(), what="3 emails")
    assert sorted(m["To"] for m in mails) == ["centre@tongzilin.linli.test", "marie@example.test",
                                              "marie@example.test"]  # welcome (before opt-out) + permit
    assert "Marie" not in centre[0]["body"] and "Dubois" not in "".join(text(m) for m in mails
                                                                        if m["To"].startswith("centre"))


def test_email_arrives_over_smtp_with_an_unsubscribe_link_that_works(platform):
    resident = platform.resident("John Smith", language="en", email="john@example.test")
    [welcome] = until(lambda: platform.smtp.messages(), what="the welcome email")
    assert welcome["To"] == "john@example.test" and welcome["Subject"] == "Welcome to Tongzilin"
    assert welcome["List-Unsubscribe"].startswith("<http://")
    url = welcome["List-Unsubscribe"].strip("<>")
    assert url in text(welcome)
    assert platform.inbox(resident)[0]["deliveries"][0]["status"] == "sent"

    assert requests.post(url.replace("token=", "token=x"), timeout=5).status_code == 401
    answer = requests.post(url, timeout=5)
    assert answer.status_code == 200 and answer.json()["unsubscribed"] == {"category": "account", "channel": "email"}
    prefs = platform.call("notifications", "GET", f"/residents/{resident}/preferences").json()
    assert {"category": "account", "channel": "email"} in prefs["opt_outs"]


def test_sms_failures_are_retried_with_backoff_and_end_as_failed_with_the_reason(platform):
    platform.sms.answers = [503, 503]  # then 200
    patient = platform.resident("王芳", phone="13800000001")
    delivered = until(lambda: platform.sms.delivered, what="an SMS")
    assert delivered[0]["to"] == "13800000001" and "欢迎加入桐梓林社区" in delivered[0]["text"]
    [sms] = platform.inbox_where(patient, lambda items: items[0]["deliveries"][0]["status"] == "sent")[0]["deliveries"]
    assert sms["attempts"] == 3 and sms["last_error"] is None

    platform.sms.answers = [503] * 3
    unlucky = platform.resident("李雷", phone="13800000002")
    [sms] = platform.inbox_where(unlucky, lambda items: items[0]["deliveries"][0]["status"] == "failed")[0]["deliveries"]
    assert sms["attempts"] == 3 and sms["last_error"] == "SMS gateway answered 503 (gave up after 3 attempts)"

    platform.sms.answers = [400]
    refused = platform.resident("韩梅梅", phone="13800000003")
    [sms] = platform.inbox_where(refused, lambda items: items[0]["deliveries"][0]["status"] == "failed")[0]["deliveries"]
    assert sms["attempts"] == 1 and sms["last_error"] == "SMS gateway answered 400"


def test_an_email_server_that_is_down_is_retried_until_it_is_back(container_factory, config, free_port, token,
                                                                   smtp, sms):
    # Tries 1 s, 2 s, 4 s … apart: the server is back long before the last, however slow this machine is.
    platform = start_platform(container_factory, config, free_port, token, smtp, sms,
                              DELIVERY_RETRY_BASE_SECONDS=1.0, DELIVERY_MAX_ATTEMPTS=8)
    platform.smtp.stop()
    resident = platform.resident("John Smith", language="en", email="john@example.test")
    retried = platform.inbox_where(resident, lambda items: items[0]["deliveries"][0]["last_error"])
    assert "SMTP server unreachable" in retried[0]["deliveries"][0]["last_error"]
    platform.smtp.start()
    until(lambda: platform.smtp.messages(), what="the email once the server is back")
    # The delivery is recorded as sent after the server took it: wait for the record, not just the email.
    platform.inbox_where(resident, lambda items: items[0]["deliveries"][0]["status"] == "sent", what="sent recorded")
    assert len(platform.smtp.messages()) == 1


def test_quiet_hours_hold_email_until_they_end_and_the_digest_groups_what_came_in(platform):
    now = datetime.now(SHANGHAI)
    quiet = {"start": (now - timedelta(hours=1)).strftime("%H:%M"), "end": (now + timedelta(hours=1)).strftime("%H:%M")}
    night_owl = platform.resident("John Smith", language="en", email="john@example.test")
    digester = platform.resident("Marie Dubois", language="en", email="marie@example.test", residence_type="foreign",
                                 nationality="FR")
    until(lambda: len(platform.smtp.messages()) == 2, what="two welcome emails")
    platform.preferences(night_owl, quiet_hours=quiet)
    platform.preferences(digester, digest=True, digest_at="07:00")
    platform.event(category="food")
    platform.event(category="lecture", title={"zh-CN": "英语讲座", "en": "English Lecture"}, venue="社区活动室")

    def pushes(resident_id):
        items = platform.inbox_where(resident_id, lambda items: len(items) == 3)
        return [d for i in items if i["kind"] == "event_announced" for d in i["deliveries"]]

    held = pushes(night_owl)
    assert [d["status"] for d in held] == ["pending", "pending"]
    assert {datetime.fromisoformat(d["due_at"]).astimezone(SHANGHAI).strftime("%H:%M") for d in held} == {quiet["end"]}
    digest_due = pushes(digester)
    assert [d["status"] for d in digest_due] == ["held", "held"]
    due_at = max(datetime.fromisoformat(d["due_at"]) for d in digest_due)
    assert due_at.astimezone(SHANGHAI).strftime("%H:%M") == "07:00"

    with platform.rpc("notifications") as notifications:
        assert notifications.run_digests((due_at - timedelta(minutes=1)).isoformat()) == 0
        assert notifications.run_digests(due_at.isoformat()) == 1
        assert notifications.run_digests(due_at.isoformat()) == 0
    digest = until(lambda: [m for m in platform.smtp.messages() if m["Subject"].startswith("Your community")])
    assert len(digest) == 1 and digest[0]["To"] == "marie@example.test"
    assert "New event: International Food Festival" in text(digest[0])
    assert "New event: English Lecture" in text(digest[0])
    assert [d["status"] for d in pushes(digester)] == ["digested", "digested"]
    assert len(platform.smtp.messages()) == 3  # the night owl's emails still wait for the morning


def test_bad_preferences_and_unknown_residents_get_specific_errors(platform):
    resident = platform.resident("王芳")
    bad = platform.call("notifications", "PUT", f"/residents/{resident}/preferences",
                        json={"time_zone": "Mars/Olympus", "quiet_hours": {"start": "25:00", "end": "08:00"}})
    assert bad.status_code == 400
    fields = bad.json()["details"]["fields"]
    assert "time_zone" in fields and "quiet_hours" in fields
    assert platform.call("notifications", "GET", "/residents/nobody/inbox").status_code == 404
    assert platform.call("notifications", "GET", f"/residents/{resident}/inbox?limit=0").status_code == 400
    [welcome] = platform.inbox(resident)
    marked = platform.call("notifications", "POST", f"/residents/{resident}/inbox/{welcome['id']}/read")
    assert marked.status_code == 200 and platform.inbox(resident)[0]["read"]
    assert platform.call("notifications", "POST", f"/residents/{resident}/inbox/nope/read").status_code == 404


def test_one_notification_and_one_email_per_fact_with_redelivery_and_two_instances(
        container_factory, config, free_port, token, smtp, sms, bus_tap):
    """Two notifications instances compete for the same queues; every message is delivered three times."""
    from kombu import Connection, Exchange

    tap = bus_tap("residents")
    addresses = {}
    for service_cls in (ResidentsService, EventsService):
        addresses[service_cls.name] = f"127.0.0.1:{free_port()}"
        container_factory(service_cls, {**config, "WEB_SERVER_ADDRESS": addresses[service_cls.name]}).start()
    instances = [notifications_config(config, free_port, smtp, sms) for _ in range(2)]
    for instance in instances:
        container_factory(NotificationsService, instance).start()
    platform = Platform({"residents": f"http://{addresses['residents']}",
                         "notifications": f"http://{instances[0]['WEB_SERVER_ADDRESS']}"},
                        {"Authorization": f"Bearer {token(SCOPES)}"}, config, smtp, sms)
    ids = [platform.call("residents", "POST", "/residents", json={
        "community_id": "tongzilin", "name": f"居民{n}", "residence_type": "registered", "nationality": "CN",
        "preferred_language": "zh-CN", "email": f"r{n}@example.test", "consent": {"email": True}}).json()["id"]
        for n in range(20)]
    published = [m for m in tap.messages() if m["type"] == "resident.registered"]
    assert len(published) == 20
    with Connection(config["AMQP_URI"]) as connection:
        producer = connection.Producer()
        exchange = Exchange("residents.events", type="topic", durable=True)
        for _ in range(2):
            for envelope in published:
                producer.publish(envelope, exchange=exchange, routing_key="resident.registered", serializer="json")
    until(lambda: len(platform.smtp.messages()) >= 20, what="20 emails")
    time.sleep(3)  # let any duplicate that was going to happen, happen
    assert sorted(m["To"] for m in platform.smtp.messages()) == sorted(f"r{n}@example.test" for n in range(20))
    for resident_id in ids:
        assert platform.kinds(resident_id) == ["welcome"]


def test_a_large_announcement_is_worked_through_in_pages_without_doubles(platform):
    residents = [platform.resident(f"居民{n}") for n in range(7)]
    platform.event()
    with platform.rpc("notifications") as notifications:
        # Small pages here, while the service's own timer works through the same job in large ones.
        notifications.run_fan_outs(2)
        notifications.run_fan_outs(2)
    for resident_id in residents:
        platform.inbox_where(resident_id, lambda items: "event_announced" in [i["kind"] for i in items])
        assert platform.kinds(resident_id) == ["event_announced", "welcome"]


def test_outcomes_are_counted_for_reports_without_personal_data(platform, bus_tap):
    tap = bus_tap("notifications")
    platform.sms.answers = [400]
    platform.resident("Marie Dubois", language="fr", phone="13800000009", residence_type="foreign",
                      nationality="FR")
    until(lambda: platform.sms.received, what="the SMS attempt")
    outcomes = [m for m in tap.messages(until=lambda found: sum(
        m["type"] == "notification.outcomes" for m in found) >= 2) if m["type"] == "notification.outcomes"]
    counted = sorted((m["data"]["channel"], m["data"]["outcome"], m["data"]["count"], m["data"]["in_own_language"])
                     for m in outcomes)
    # French falls back to English: reached, but not in her own language.
    assert counted == [("inapp", "sent", 1, 0), ("sms", "failed", 1, 0)]
    assert "13800000009" not in str(outcomes) and "Marie" not in str(outcomes)
