"""Partner queues and partner broker users: the adapter to RabbitMQ's administration.

Each partner gets a durable queue ``linli.feed.<partner>`` bound to the direct
exchange ``linli.feeds`` with its id as routing key, and a RabbitMQ user that
may read that queue and nothing else in the vhost. Users are managed with
``rabbitmqctl`` (the management plugin is not assumed); the password goes in on
standard input, never on a command line another process could read.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from eventlet.green import subprocess
from kombu import Connection, Exchange, Queue
from nameko.extensions import DependencyProvider

from services.common.queue_type import durable_queue

FEEDS_EXCHANGE = Exchange("linli.feeds", type="direct", durable=True)
QUEUE_PREFIX = "linli.feed."


class BrokerAdminError(Exception):
    pass


def partner_queue(partner_id: str) -> Queue:
    return durable_queue(Queue(f"{QUEUE_PREFIX}{partner_id}", exchange=FEEDS_EXCHANGE, routing_key=partner_id,
                               durable=True))


@dataclass(frozen=True)
class BrokerCredentials:
    username: str
    password: str
    vhost: str
    queue: str
    exchange: str = FEEDS_EXCHANGE.name

    def to_dict(self) -> dict:
        return {"username": self.username, "password": self.password, "vhost": self.vhost,
                "queue": self.queue, "exchange": self.exchange}


class BrokerAdmin:
    """Declares partner queues and manages partner users in one vhost."""

    def __init__(self, amqp_uri: str, vhost: str, user_prefix: str, rabbitmqctl: str = "rabbitmqctl"):
        self.amqp_uri = amqp_uri
        self.vhost = vhost
        self.user_prefix = user_prefix
        self.rabbitmqctl = rabbitmqctl

    def user_name(self, partner_id: str) -> str:
        return f"{self.user_prefix}{partner_id}"

    def declare_queue(self, partner_id: str) -> str:
        queue = partner_queue(partner_id)
        with Connection(self.amqp_uri) as connection:
            queue(connection.default_channel).declare()
        return queue.name

    def create_reader(self, partner_id: str) -> BrokerCredentials:
        """A user that can consume ``linli.feed.<partner>`` and do nothing else; a new password."""
        username = self.user_name(partner_id)
        password = secrets.token_urlsafe(24)
        queue_name = f"{QUEUE_PREFIX}{partner_id}"
        if username in self._users():
            self._run("delete_user", username)
        self._run("add_user", username, stdin=password + "\n")
        self._run("set_permissions", "-p", self.vhost, username, "^$", "^$", f"^{re.escape(queue_name)}$")
        return BrokerCredentials(username, password, self.vhost, queue_name)

    def delete_reader(self, partner_id: str) -> None:
        username = self.user_name(partner_id)
        if username in self._users():
            self._run("delete_user", username)

    def _users(self) -> set[str]:
        return {line.split("\t")[0] for line in self._run("list_users").splitlines() if line.strip()}

    def _run(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([self.rabbitmqctl, "-q", *args], input=stdin, capture_output=True,
                                text=True, timeout=60)
        if result.returncode != 0:
            raise BrokerAdminError(f"rabbitmqctl {args[0]} failed: {result.stderr.strip()[:300]}")
        return result.stdout


class PartnerBroker(DependencyProvider):
    """Provides the ``BrokerAdmin`` for ``FEED_BROKER_VHOST`` (default: the vhost of ``AMQP_URI``)
    and ``FEED_BROKER_USER_PREFIX``."""

    def setup(self):
        config = self.container.config
        amqp_uri = config["AMQP_URI"]
        with Connection(amqp_uri) as connection:
            default_vhost = connection.virtual_host
        self.admin = BrokerAdmin(amqp_uri, config.get("FEED_BROKER_VHOST") or default_vhost,
                                 config.get("FEED_BROKER_USER_PREFIX") or "linli-partner-")

    def get_dependency(self, worker_ctx):
        return self.admin
