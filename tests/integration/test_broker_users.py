"""Each service connects as its own RabbitMQ user with the least permissions (issue #8), not as guest:
the platform works end to end, and a user cannot read another service's queue or publish as it."""
import os
import re
import secrets
from unittest import mock

import pika
import pytest
import requests
from pika.exceptions import ChannelClosedByBroker

from platform_tools import broker_users
from platform_tools.contract_docs import service_classes
from tests.conftest import RUN_ID, rabbitmqctl
from tests.integration.test_route_security import case_body
from tests.waiting import until
from tests.integration.test_broker_definitions import imported  # noqa: F401 - the deploy's topology first

pytestmark = pytest.mark.integration
ACCESS_REFUSED = 403
SERVICES = tuple(service_classes().values())  # every service the platform discovers


def test_the_checked_in_permissions_are_current():
    assert broker_users.PERMISSIONS.read_text(encoding="utf-8") == broker_users.render(), \
        "run `python -m platform_tools.broker_users write` and commit the result"


def test_a_service_user_matches_its_own_names_only():
    users = {user["service"]: user for user in broker_users.permissions()["users"]}
    for service, user in users.items():
        for kind in ("configure", "write", "read"):
            assert not re.fullmatch(user[kind], "anything-else"), f"{service} {kind}: {user[kind]}"
        for other in set(users) - {service}:
            assert not re.fullmatch(user["write"], f"{other}.events"), f"{service} may publish as {other}"
            assert not re.fullmatch(user["read"], f"rpc-{other}"), f"{service} may take {other}'s RPC requests"


def test_passwords_come_from_the_environment_or_a_secret_and_a_missing_one_changes_nothing(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(broker_users, "_rabbitmqctl", lambda *args, **kwargs: calls.append((args, kwargs)) or "")
    for cls in SERVICES:
        monkeypatch.delenv(broker_users.password_variable(cls.name), raising=False)
    monkeypatch.setenv("LINLI_AMQP_PASSWORD_RESIDENTS", "from-the-environment")
    with pytest.raises(broker_users.BrokerUsersError, match="LINLI_AMQP_PASSWORD_EVENTS"):
        broker_users.apply("/linli")
    assert calls == []
    for cls in SERVICES:  # a mounted Secret: one file per service
        (tmp_path / cls.name).write_text(f"secret-of-{cls.name}\n")
    broker_users.apply("/linli", password_dir=tmp_path)
    added = {args[1]: kwargs["stdin"] for args, kwargs in calls if args[0] == "add_user"}
    assert added["linli-events"] == "secret-of-events\n"
    assert all("secret" not in " ".join(args) for args, _ in calls), "a password on a command line"


@pytest.fixture
def service_users(imported):  # noqa: F811
    """The five users, created as deploy creates them (passwords from the environment), deleted afterwards."""
    vhost = imported
    prefix = f"linli-test-{RUN_ID}-{secrets.token_hex(3)}-"
    passwords = {cls.name: secrets.token_urlsafe(18) for cls in SERVICES}
    environment = {broker_users.password_variable(service): password for service, password in passwords.items()}
    try:
        with mock.patch.dict(os.environ, environment):
            broker_users.apply(vhost, prefix)
        yield {service: f"amqp://{prefix}{service}:{password}@127.0.0.1:5672/{vhost}"
               for service, password in passwords.items()}
    finally:
        broker_users.delete(prefix)


def refused(uri, action) -> int | None:
    """The reply code of the broker closing the channel on ``action(channel)``, or None if it did not."""
    connection = pika.BlockingConnection(pika.URLParameters(uri))
    try:
        channel = connection.channel()
        channel.confirm_delivery()  # a refused publish is then reported to the publisher, not lost
        try:
            action(channel)
        except ChannelClosedByBroker as closed:
            return closed.reply_code
        return None
    finally:
        if connection.is_open:
            connection.close()


def test_every_service_runs_as_its_own_user_end_to_end(service_users, config, container_factory, free_port,
                                                       mongo_client, amqp_uri, token, vhost):
    from contracts.client import Publisher

    urls = {}
    for service_cls in SERVICES:
        address = f"127.0.0.1:{free_port()}"
        container_factory(service_cls, {**config, "AMQP_URI": service_users[service_cls.name],
                                        "WEB_SERVER_ADDRESS": address, "DEFAULT_QUIET_HOURS": "off",
                                        "COMMUNITY_NAMES": {"tongzilin": {"zh-CN": "桐梓林", "en": "Tongzilin"}}}
                          ).start()
        urls[service_cls.name] = f"http://{address}"
    # An internal system (not a service: guest in this test's vhost) sends a form row through the ingest door;
    # residents ingests it, replies (default exchange), stores and announces the registration (its exchange).
    with Publisher(amqp_uri, "grid-system/tongzilin") as publisher:
        accepted = publisher.publish_and_wait("resident.form_submitted", {
            "community_id": "tongzilin", "row": {"name": "Marie Dubois", "residence_type": "foreign",
                                                 "nationality": "FR", "preferred_language": "fr"}}, timeout_s=30)
    assert accepted["outcome"] == "registered"
    # reports (every message of residents, one queue) and notifications (its evt- queue) each consume it.
    headers = {"Authorization": f"Bearer {token(['reports:read'])}"}
    processed = mongo_client[f"{config['MONGO_DB_PREFIX']}notifications"]["processed_messages"]
    until(lambda: requests.get(f"{urls['reports']}/communities/tongzilin/summary", headers=headers).status_code == 200
          and processed.count_documents({}) >= 1, "the registration in reports and notifications", timeout_s=30)
    summary = requests.get(f"{urls['reports']}/communities/tongzilin/summary", headers=headers).json()
    assert summary["residents_total"] == 1
    # cases consumes nothing: it connects as its user when it publishes, here the fact of a case taken in.
    case = requests.post(f"{urls['cases']}/cases", json=case_body(),
                         headers={"Authorization": f"Bearer {token(['cases:write'])}"})
    assert case.status_code == 201, case.text
    connected = set(rabbitmqctl("list_connections", "vhost", "user").split())
    users = {uri.split("//")[1].split(":")[0] for uri in service_users.values()}
    assert users <= connected, f"not every service connected as its own user: {users - connected}"


def test_a_service_user_cannot_read_or_publish_as_another_service(service_users, amqp_uri):
    residents_queue = "linli-residents.ingest.resident.form_submitted"
    body = b'{"type": "resident.registered"}'
    # The queues exist (the definitions were imported); guest in this vhost may do all of it.
    assert refused(amqp_uri, lambda ch: ch.basic_get(residents_queue, auto_ack=False)) is None
    assert refused(amqp_uri, lambda ch: ch.basic_publish("residents.events", "resident.registered", body)) is None

    events = service_users["events"]
    assert refused(events, lambda ch: ch.basic_get(residents_queue)) == ACCESS_REFUSED
    assert refused(events, lambda ch: ch.basic_get("linli-reports.on_message")) == ACCESS_REFUSED
    assert refused(events, lambda ch: ch.basic_publish("residents.events", "resident.registered", body)) \
        == ACCESS_REFUSED
    assert refused(events, lambda ch: ch.queue_purge("linli-reports.on_message")) == ACCESS_REFUSED
    assert refused(events, lambda ch: ch.queue_delete(residents_queue)) == ACCESS_REFUSED
    # reports reads what residents publishes, but may not publish it
    reports = service_users["reports"]
    assert refused(reports, lambda ch: ch.basic_publish("residents.events", "resident.registered", body)) \
        == ACCESS_REFUSED
    assert refused(reports, lambda ch: ch.basic_get("linli-reports.on_message")) is None
    # and what each may do, it may: events publishes on its own exchange; reports too, even what nobody
    # consumes (reports' queue takes everything else), which the definitions' policy parks in linli.unrouted:
    # the alternate exchange needs no permission of the publisher's.
    assert refused(events, lambda ch: ch.basic_publish("events.events", "event.scheduled", body)) is None
    assert refused(reports, lambda ch: ch.basic_publish("reports.events", "community.teleported", body)) is None
    parked = []
    assert refused(amqp_uri, lambda ch: parked.append(ch.basic_get("linli.unrouted", auto_ack=True))) is None
    assert parked[0][0] is not None and parked[0][0].routing_key == "community.teleported"
