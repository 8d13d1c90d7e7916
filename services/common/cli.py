"""``linli``: the command line for people who run the platform."""
from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta

from services.common import platform
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


def _import_form(args) -> int:
    """Upload a collection form, then follow the import with a progress bar."""
    import time

    import requests
    from tqdm import tqdm

    token = args.token or os.environ.get("LINLI_TOKEN") or issue_token(
        dev_secret(platform.var_dir()), subject="linli-cli",
        scopes=["residents:read", "residents:write"], communities=["*"],
    )
    headers = {"Authorization": f"Bearer {token}"}
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

    args = parser.parse_args(argv)
    if args.command == "residents":
        return _import_form(args)
    if args.command == "up":
        return platform.up()
    if args.command == "down":
        return platform.down()
    return _token(args)


if __name__ == "__main__":
    sys.exit(main())
