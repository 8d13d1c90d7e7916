"""A RabbitMQ user per service, with the least permissions its code needs.

The permissions are read from the services' code, as ``broker_definitions`` reads
the topology: a service may configure and write its own ``<service>.events``
exchange; declare, bind and read its own queues (with their dead-letter and
retry queues); declare and bind to (read) the exchanges of the services it
consumes, never publish to them; use nameko's RPC exchange with its own
``rpc-<service>`` queue and ``rpc.reply-<service>-*`` reply queues; and, where it
has them, the ingest door and the partner feeds. ``deploy/rabbitmq/permissions.json``
is the generated result (no passwords), checked for drift by a test.

How deploy uses it, once per vhost, after importing ``definitions.json``::

    LINLI_AMQP_PASSWORD_RESIDENTS=... LINLI_AMQP_PASSWORD_EVENTS=... \\
    LINLI_AMQP_PASSWORD_NOTIFICATIONS=... LINLI_AMQP_PASSWORD_REPORTS=... LINLI_AMQP_PASSWORD_PARTNERS=... \\
    LINLI_AMQP_PASSWORD_CASES=... \\
        python -m platform_tools.broker_users apply --vhost /linli

creates or updates ``linli-residents`` … ``linli-cases`` (``rabbitmqctl``; a
password goes in on standard input, never on a command line). With
``--password-dir DIR`` the passwords are read from ``DIR/<service>`` instead (a
mounted Kubernetes Secret). Each service then runs with ``LINLI_AMQP_URI`` naming
its own user ``linli-<service>`` and that password, in that vhost; ``guest`` is for
a developer's machine only.

RabbitMQ cannot do better than this in three places: publishing through the
default exchange (retries, ingest rejections and replies) is one permission on
``amq.default`` for every queue; ``nameko-rpc`` write lets a service call any
service's RPC; and a consumer must be allowed to *configure* its sources'
exchanges, because nameko declares them before binding.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from platform_tools.broker_definitions import ROOT
from platform_tools.contract_docs import OUTSIDE, consumed, service_classes

PERMISSIONS = ROOT / "deploy" / "rabbitmq" / "permissions.json"
DEFAULT_PREFIX = "linli-"
RPC_EXCHANGE = "nameko-rpc"
DEFAULT_EXCHANGE = "amq.default"  # the resource RabbitMQ checks for a publish to ""


@dataclass
class Access:
    """Regex alternatives per permission; names go in escaped, patterns as they are."""

    configure: set[str] = field(default_factory=set)
    write: set[str] = field(default_factory=set)
    read: set[str] = field(default_factory=set)

    def grant(self, pattern: str, *, configure=False, write=False, read=False) -> None:
        for wanted, granted in ((configure, self.configure), (write, self.write), (read, self.read)):
            if wanted:
                granted.add(pattern)

    def exchange(self, name: str, *, declare=True, publish=False, bind=False) -> None:
        self.grant(_name(name), configure=declare, write=publish, read=bind)

    def queue(self, pattern: str, *, declare=True, bind=False, consume=False) -> None:
        """``pattern`` is a regex: escape names. Binding needs write on the queue; a queue with a
        dead-letter exchange needs read on the queue to be declared."""
        self.grant(pattern, configure=declare, write=bind, read=consume)

    def regexes(self) -> dict[str, str]:
        return {kind: _regex(getattr(self, kind)) for kind in ("configure", "write", "read")}


def _name(name: str) -> str:
    """A name as a regex alternative ("-" needs no escape outside a class, and reads better without one)."""
    return re.escape(name).replace("\\-", "-")


def _regex(alternatives: set[str]) -> str:
    return "^(" + "|".join(sorted(alternatives)) + ")$" if alternatives else "^$"


def _members(service_cls, kind) -> list:
    return [value for _, value in inspect.getmembers(service_cls) if isinstance(value, kind)]


def _entrypoints(service_cls) -> list:
    return [entrypoint for _, method in inspect.getmembers(service_cls, inspect.isfunction)
            for entrypoint in getattr(method, "nameko_entrypoints", ())]


def access_of(service_cls) -> Access:
    """What ``service_cls`` declares, binds, publishes and consumes, as permissions."""
    from nameko.rpc import Rpc, RpcProxy

    from services.common.ingest import INGEST_EXCHANGE, REJECTED_QUEUE, UNROUTED_EXCHANGE, UNROUTED_QUEUE, queue_for
    from services.common.ingest_entrypoints import IngestConsumer, IngestDoor
    from services.common.messaging import DEAD_LETTER_EXCHANGE
    from services.partners.broker_admin import FEEDS_EXCHANGE, QUEUE_PREFIX, PartnerBroker
    from services.partners.feed_delivery import FeedConfig

    name, access = service_cls.name, Access()
    access.exchange(f"{name}.events", publish=True)  # the outbox
    for source, _, queue in consumed(service_cls):
        if source == OUTSIDE:
            continue
        access.exchange(f"{source}.events", bind=True)
        access.queue(_name(queue), bind=True, consume=True)
        access.queue(_name(f"{queue}.dead-letter"), bind=True)
        access.queue(_name(f"{queue}.retry.") + r"\d+ms", consume=True)  # its dead-letter exchange is ""
        access.exchange(DEAD_LETTER_EXCHANGE.name, publish=True, bind=True)
        access.exchange(DEFAULT_EXCHANGE, declare=False, publish=True)  # retries go by the default exchange
    entrypoints = _entrypoints(service_cls)
    ingest_consumers = [e for e in entrypoints if isinstance(e, IngestConsumer)]
    ingest_door = _members(service_cls, IngestDoor)
    if ingest_consumers or ingest_door:  # ingest.declare_topology
        # Declaring linli.ingest with its alternate exchange: read on it, write on the alternate.
        access.exchange(INGEST_EXCHANGE.name, bind=True, publish=bool(ingest_door))
        access.exchange(UNROUTED_EXCHANGE.name, publish=True, bind=True)
        access.queue(_name(UNROUTED_QUEUE.name), bind=True)
        access.queue(_name(REJECTED_QUEUE.name))
    for consumer in ingest_consumers:
        access.exchange(DEFAULT_EXCHANGE, declare=False, publish=True)  # rejections and replies
        if consumer.message_type is None:  # the unrouted gate
            access.queue(_name(UNROUTED_QUEUE.name), bind=True, consume=True)
        else:
            access.queue(_name(queue_for(name, consumer.message_type).name), bind=True, consume=True)
    if any(isinstance(e, Rpc) for e in entrypoints):
        access.exchange(RPC_EXCHANGE, publish=True, bind=True)  # requests in, replies out
        access.queue(_name(f"rpc-{name}"), bind=True, consume=True)
    if _members(service_cls, RpcProxy):
        access.exchange(RPC_EXCHANGE, publish=True, bind=True)
        access.queue(_name(f"rpc.reply-{name}-") + ".+", bind=True, consume=True)
    if _members(service_cls, FeedConfig) or _members(service_cls, PartnerBroker):
        access.exchange(FEEDS_EXCHANGE.name, publish=True, bind=True)
        access.queue(_name(QUEUE_PREFIX) + ".+", bind=True)  # partners read them, with users of their own
    return access


def permissions(prefix: str = DEFAULT_PREFIX) -> dict:
    users = [{"user": f"{prefix}{name}", "service": name, "password_env": password_variable(name),
              **access_of(cls).regexes()} for name, cls in service_classes().items()]
    return {"description": "One RabbitMQ user per service with the least permissions, generated from the "
                           "services' code by `python -m platform_tools.broker_users write`; `... apply --vhost V` "
                           "creates the users (passwords from password_env, never here). Do not edit.",
            "users": users}


def password_variable(service: str) -> str:
    return f"LINLI_AMQP_PASSWORD_{service.upper()}"


def render(prefix: str = DEFAULT_PREFIX) -> str:
    return json.dumps(permissions(prefix), indent=2, ensure_ascii=False) + "\n"


class BrokerUsersError(Exception):
    pass


def _password(service: str, password_dir: Path | None) -> str:
    if password_dir is not None:
        path = password_dir / service
        if not path.is_file():
            raise BrokerUsersError(f"no password for {service}: {path} is missing")
        password = path.read_text(encoding="utf-8").strip()
    else:
        password = os.environ.get(password_variable(service), "")
    if not password:
        raise BrokerUsersError(f"no password for {service}: set {password_variable(service)} or --password-dir")
    return password


def _rabbitmqctl(*args: str, stdin: str | None = None, rabbitmqctl: str = "rabbitmqctl") -> str:
    result = subprocess.run([rabbitmqctl, "-q", *args], input=stdin, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise BrokerUsersError(f"rabbitmqctl {args[0]} failed: {result.stderr.strip()[:300]}")
    return result.stdout


def apply(vhost: str, prefix: str = DEFAULT_PREFIX, password_dir: Path | None = None,
          services: list[str] | None = None, rabbitmqctl: str = "rabbitmqctl") -> list[str]:
    """Create each service's user (or set its password) and its permissions in ``vhost``; returns the users.
    Every password is looked up before anything changes, so a missing one changes nothing."""
    wanted = [u for u in permissions(prefix)["users"] if services is None or u["service"] in services]
    passwords = {u["user"]: _password(u["service"], password_dir) for u in wanted}
    existing = {line.split("\t")[0] for line in _rabbitmqctl("list_users", rabbitmqctl=rabbitmqctl).splitlines()}
    for user in wanted:
        name, password = user["user"], passwords[user["user"]] + "\n"
        if name in existing:
            _rabbitmqctl("change_password", name, stdin=password, rabbitmqctl=rabbitmqctl)
        else:
            _rabbitmqctl("add_user", name, stdin=password, rabbitmqctl=rabbitmqctl)
        _rabbitmqctl("set_permissions", "-p", vhost, name, user["configure"], user["write"], user["read"],
                     rabbitmqctl=rabbitmqctl)
    return list(passwords)


def delete(prefix: str = DEFAULT_PREFIX, rabbitmqctl: str = "rabbitmqctl") -> list[str]:
    """Remove the services' users (all vhosts); returns those that existed."""
    existing = {line.split("\t")[0] for line in _rabbitmqctl("list_users", rabbitmqctl=rabbitmqctl).splitlines()}
    gone = [u["user"] for u in permissions(prefix)["users"] if u["user"] in existing]
    for name in gone:
        _rabbitmqctl("delete_user", name, rabbitmqctl=rabbitmqctl)
    return gone


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Per-service RabbitMQ users with least permissions.")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("write", help=f"write {PERMISSIONS.relative_to(ROOT)}")
    applying = actions.add_parser("apply", help="create or update the users and their permissions in a vhost")
    applying.add_argument("--vhost", required=True)
    applying.add_argument("--prefix", default=DEFAULT_PREFIX, help="user names are <prefix><service>")
    applying.add_argument("--password-dir", type=Path, help="read passwords from DIR/<service> (a mounted Secret)")
    applying.add_argument("--service", action="append", dest="services", help="only these (repeatable)")
    removing = actions.add_parser("delete", help="delete the users")
    removing.add_argument("--prefix", default=DEFAULT_PREFIX)
    args = parser.parse_args(argv)
    try:
        if args.action == "write":
            PERMISSIONS.write_text(render(), encoding="utf-8")
            print(f"wrote {PERMISSIONS.relative_to(ROOT)}")
        elif args.action == "apply":
            users = apply(args.vhost, args.prefix, args.password_dir, args.services)
            print(f"{len(users)} users with their permissions in vhost {args.vhost}: {', '.join(users)}")
        else:
            print(f"deleted: {', '.join(delete(args.prefix)) or 'none'}")
    except BrokerUsersError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
