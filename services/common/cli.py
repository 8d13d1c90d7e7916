"""``linli``: the command line for people who run the platform."""
from __future__ import annotations

import argparse
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

    args = parser.parse_args(argv)
    if args.command == "up":
        return platform.up()
    if args.command == "down":
        return platform.down()
    return _token(args)


if __name__ == "__main__":
    sys.exit(main())
