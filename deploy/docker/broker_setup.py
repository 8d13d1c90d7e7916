"""Prepare a deployed RabbitMQ for Linli: its topology and one user per service (in the image:
/app/deploy/broker_setup.py, run with the service image so the code decides what is declared).

  users-file PATH   (docker compose) write a definitions file with the admin user and the
                    per-service users, for the broker to load at boot next to
                    deploy/rabbitmq/definitions.json (a node that loads definitions at boot
                    creates no default user, so the users must be in a file too).
  import            (Kubernetes Job) wait until the cluster has --nodes running nodes, then
                    import the topology (--queue-type quorum) and the per-service users through
                    the management API. After the nodes have joined, so every quorum queue gets
                    a replica on each of them.

Passwords come from the environment, never from a file in git: LINLI_RABBITMQ_ADMIN_USER and
LINLI_RABBITMQ_ADMIN_PASSWORD, and LINLI_AMQP_PASSWORD_<SERVICE> for each service
(``platform_tools.broker_users``, which also decides each user's least permissions).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
import time
import urllib.request
from pathlib import Path

from platform_tools.broker_definitions import definitions
from platform_tools.broker_users import permissions
from services.common.messaging import retry_delays


def password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode()


def _user(name: str, password: str, tags: str = "") -> dict:
    return {"name": name, "password_hash": password_hash(password),
            "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": tags}


def _required(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise SystemExit(f"{variable} is not set")
    return value


def users(vhost: str, with_admin: bool) -> dict:
    """The per-service users with their permissions in ``vhost`` (and the admin user)."""
    found, granted = [], []
    if with_admin:
        admin = _required("LINLI_RABBITMQ_ADMIN_USER")
        found.append(_user(admin, _required("LINLI_RABBITMQ_ADMIN_PASSWORD"), "administrator"))
        granted.append({"user": admin, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"})
    for user in permissions()["users"]:
        found.append(_user(user["user"], _required(user["password_env"])))
        granted.append({"user": user["user"], "vhost": vhost, "configure": user["configure"],
                        "write": user["write"], "read": user["read"]})
    return {"users": found, "vhosts": [{"name": vhost}], "permissions": granted}


def _api(url: str, path: str, body: dict | None = None):
    credentials = f"{_required('LINLI_RABBITMQ_ADMIN_USER')}:{_required('LINLI_RABBITMQ_ADMIN_PASSWORD')}"
    request = urllib.request.Request(
        f"{url.rstrip('/')}{path}", data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def wait_for_nodes(url: str, nodes: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            running = [node["name"] for node in _api(url, "/api/nodes") if node.get("running")]
            if len(running) >= nodes:
                print(f"{len(running)} nodes running: {', '.join(running)}", flush=True)
                return
            print(f"{len(running)} of {nodes} nodes running; waiting", flush=True)
        except OSError as exc:
            print(f"the management API does not answer yet: {exc}", flush=True)
        if time.monotonic() > deadline:
            raise SystemExit(f"fewer than {nodes} RabbitMQ nodes running after {timeout_s:.0f} s")
        time.sleep(5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vhost", default=os.environ.get("LINLI_RABBITMQ_VHOST", "/"))
    actions = parser.add_subparsers(dest="action", required=True)
    users_file = actions.add_parser("users-file")
    users_file.add_argument("path", type=Path)
    importing = actions.add_parser("import")
    importing.add_argument("--url", default=os.environ.get("LINLI_RABBITMQ_MANAGEMENT_URL", "http://rabbitmq:15672"))
    importing.add_argument("--queue-type", choices=("classic", "quorum"), default="quorum")
    importing.add_argument("--nodes", type=int, default=1, help="wait until this many nodes run")
    importing.add_argument("--timeout", type=float, default=600)
    importing.add_argument("--definitions", type=Path,
                           help="the topology file to import (default: generated from this image's code)")
    args = parser.parse_args(argv)
    if args.action == "users-file":
        args.path.write_text(json.dumps(users(args.vhost, with_admin=True), indent=2), encoding="utf-8")
        args.path.chmod(0o644)  # read by the broker's own user; the volume is the broker's alone
        print(f"wrote the users of vhost {args.vhost} to {args.path}")
        return 0
    wait_for_nodes(args.url, args.nodes, args.timeout)
    if args.definitions:
        document = json.loads(args.definitions.read_text(encoding="utf-8"))
    else:
        delays = retry_delays({"MESSAGE_RETRY_DELAYS_S": os.environ.get("LINLI_MESSAGE_RETRY_DELAYS_S")})
        document = definitions(args.vhost, delays, queue_type=args.queue_type)
    document.update({key: value for key, value in users(args.vhost, with_admin=False).items() if key != "vhosts"})
    _api(args.url, "/api/definitions", document)
    print(f"imported {len(document['queues'])} queues and {len(document['users'])} users "
          f"into vhost {args.vhost}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
