"""``linli``: the command line for people who run the platform."""
from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta

from platform_tools import platform
from services.common.auth import dev_secret, issue_token


def _token(args) -> int:
    token = issue_token(
        dev_secret(platform.var_dir()),
        subject=args.subject,
        scopes=[s for s in args.scopes.split(",") if s],
        communities=[c for c in args.communities.split(",") if c],
        ttl=timedelta(minutes=args.minutes),
    )
    print(token)
    return 0


def _headers(args, scopes: list[str]) -> dict:
    """``--token``, else ``$LINLI_TOKEN``, else a token minted from the local dev secret."""
    token = args.token or os.environ.get("LINLI_TOKEN") or issue_token(
        dev_secret(platform.var_dir()), subject="linli-cli", scopes=scopes, communities=["*"],
    )
    return {"Authorization": f"Bearer {token}"}


def _import_form(args) -> int:
    """Upload a collection form, then follow the import with a progress bar."""
    import time

    import requests
    from tqdm import tqdm

    headers = _headers(args, ["residents:read", "residents:write"])
    with open(args.file, "rb") as form:
        response = requests.post(f"{args.url}/residents/imports", data=form.read(), headers=headers,
                                 params={"filename": os.path.basename(args.file)}, timeout=300)
    if response.status_code >= 400:
        print(f"refused ({response.status_code}): {response.json().get('message', response.text)}", file=sys.stderr)
        return 1
    job = response.json()
    if job.get("repeat"):
        print(f"this file was imported before (import {job['id']}); showing that import")
    with tqdm(total=job["rows_total"], unit="row", desc="importing") as bar:
        while True:
            job = requests.get(f"{args.url}/residents/imports/{job['id']}", headers=headers, timeout=30).json()
            bar.update(job["rows_done"] - bar.n)
            if job["status"] in ("completed", "failed"):
                break
            time.sleep(0.5)
    print(f"{job['status']}: {job['registered']} registered, {job['already_registered']} already registered, "
          f"{job['rejected']} rejected")
    for error in job["errors"]:
        print(f"  {error}")
    if job["errors_truncated"]:
        print("  (more errors than shown; fix these and import again)")
    return 0 if job["status"] == "completed" else 1


def _rebuild_reports(args) -> int:
    """Drop reports' projections and rebuild them from its history; prints how long it took."""
    import requests

    response = requests.post(f"{args.url}/projections/rebuild", headers=_headers(args, ["reports:admin"]),
                             timeout=3600)
    body = response.json()
    if response.status_code >= 400:
        print(f"refused ({response.status_code}): {body.get('message')}", file=sys.stderr)
        return 1
    print(f"rebuilt from {body['messages']} messages in {body['seconds']} s")
    return 0


def _dead_letters(args) -> int:
    """``linli dlq list|show|replay``: the dead-letter queues of every service's consumers."""
    from platform_tools import dlq
    from platform_tools.contract_docs import consumed, service_classes

    amqp_uri = os.environ.get("LINLI_AMQP_URI", "amqp://guest:guest@localhost:5672/")
    if args.dlq_command == "list":
        queues = sorted({queue + dlq.SUFFIX for cls in service_classes().values() for *_, queue in consumed(cls)})
        for queue, depth in dlq.depths(amqp_uri, queues).items():
            print(f"{depth:>8}  {queue}")
        return 0
    if args.dlq_command == "show":
        for parked in dlq.peek(amqp_uri, args.queue, args.limit):
            print(f"{parked.message_id}  {parked.type}  attempts={parked.attempts}  {parked.dead_lettered_at}\n"
                  f"    {parked.consumer}: {parked.error}")
        return 0
    count = dlq.replay(amqp_uri, args.queue, args.id)
    print(f"replayed {count} message(s) from {args.queue}")
    return 0


EVENT_ACTIONS = {
    # action: (HTTP method, path template, JSON body from args)
    "list": ("GET", "/events", None),
    "show": ("GET", "/events/{event_id}", None),
    "schedule": ("POST", "/events/{event_id}/schedule", None),
    "cancel": ("POST", "/events/{event_id}/cancel", None),
    "complete": ("POST", "/events/{event_id}/complete", None),
    "register": ("POST", "/events/{event_id}/registrations", lambda a: {"resident_id": a.resident_id}),
    "unregister": ("DELETE", "/events/{event_id}/registrations/{resident_id}", None),
    "check-in": ("POST", "/events/{event_id}/check-ins",
                 lambda a: {"code": a.code} if a.code else {"resident_id": a.resident_id}),
}


def _event_action(args) -> int:
    """One request to the events service; prints the JSON answer, or the refusal and exits 1."""
    import json

    import requests

    method, path, body = EVENT_ACTIONS[args.events_command]
    listing = args.events_command == "list"
    params = {"community_id": getattr(args, "community", None), "limit": 500 if listing else None}
    items = []
    while True:  # a list is read page by page (``next``) to its end; any other answer is one page
        response = requests.request(
            method, args.url + path.format(**vars(args)), headers=_headers(args, ["events:read", "events:write"]),
            json=body(args) if body else None, params=params, timeout=30,
        )
        answer = response.json()
        if response.status_code >= 400:
            print(f"refused ({response.status_code} {answer.get('error')}): {answer.get('message')}", file=sys.stderr)
            return 1
        if not listing:
            break
        items += answer["items"]
        if answer["next"] is None:
            answer = {"items": items, "next": None}
            break
        params = {**params, "after": answer["next"]}
    print(json.dumps(answer, ensure_ascii=False, indent=2))
    return 0


def _events_parser(commands) -> None:
    events = commands.add_parser("events", help="community events: the common actions")
    actions = events.add_subparsers(dest="events_command", required=True)
    listing = actions.add_parser("list", help="a community's events")
    listing.add_argument("--community", required=True)
    for name in ("show", "schedule", "cancel", "complete"):
        actions.add_parser(name, help=f"{name} an event").add_argument("event_id")
    for name in ("register", "unregister"):
        action = actions.add_parser(name, help=f"{name} a resident")
        action.add_argument("event_id")
        action.add_argument("resident_id")
    check_in = actions.add_parser("check-in", help="check a resident in at the door")
    check_in.add_argument("event_id")
    who = check_in.add_mutually_exclusive_group(required=True)
    who.add_argument("--code", help="the code on the resident's QR image")
    who.add_argument("--resident-id", dest="resident_id")
    for action in actions.choices.values():
        action.add_argument("--url", default=f"http://{platform.http_address('events', 8002)}")
        action.add_argument("--token", help="a bearer token (default: $LINLI_TOKEN, else one minted locally)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="linli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("up", help="start the whole platform in the foreground (make run)")
    commands.add_parser("down", help="stop a running platform (make stop)")

    token = commands.add_parser("token", help="print a bearer token for local use")
    token.add_argument("--scopes", required=True, help="comma-separated, e.g. residents:read,residents:write")
    token.add_argument("--communities", required=True, help="comma-separated community ids, or *")
    token.add_argument("--subject", default="local-operator")
    token.add_argument("--minutes", type=int, default=8 * 60)

    residents = commands.add_parser("residents", help="the resident registry")
    residents_commands = residents.add_subparsers(dest="residents_command", required=True)
    form = residents_commands.add_parser("import", help="import a collection form (CSV or XLSX)")
    form.add_argument("file")
    form.add_argument("--url", default=f"http://{platform.http_address('residents', 8001)}")
    form.add_argument("--token", help="a bearer token (default: $LINLI_TOKEN, else one minted locally)")

    _events_parser(commands)

    reports = commands.add_parser("reports", help="the committee's figures")
    reports_commands = reports.add_subparsers(dest="reports_command", required=True)
    rebuild = reports_commands.add_parser("rebuild", help="rebuild every projection from the history")
    rebuild.add_argument("--url", default=f"http://{platform.http_address('reports', 8004)}")
    rebuild.add_argument("--token", help="a bearer token (default: $LINLI_TOKEN, else one minted locally)")

    dead_letters = commands.add_parser("dlq", help="dead-letter queues: what is parked, why; replay it")
    dlq_commands = dead_letters.add_subparsers(dest="dlq_command", required=True)
    dlq_commands.add_parser("list", help="every dead-letter queue and how many messages wait there")
    show = dlq_commands.add_parser("show", help="the parked messages of one queue, with their errors")
    show.add_argument("queue")
    show.add_argument("--limit", type=int, default=20)
    replay = dlq_commands.add_parser("replay", help="send parked messages back where they were published")
    replay.add_argument("queue")
    replay.add_argument("--id", help="only the message with this envelope id")

    args = parser.parse_args(argv)
    if args.command == "dlq":
        return _dead_letters(args)
    if args.command == "reports":
        return _rebuild_reports(args)
    if args.command == "events":
        return _event_action(args)
    if args.command == "residents":
        return _import_form(args)
    if args.command == "up":
        return platform.up()
    if args.command == "down":
        return platform.down()
    return _token(args)


if __name__ == "__main__":
    sys.exit(main())
