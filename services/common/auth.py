"""Bearer tokens for the HTTP APIs: JWT (HS256) with scopes and communities.

A token says who may do what (``scopes``: ``residents:read``,
``residents:write``, …) and where (``communities``: community ids, or ``*``
for the city-wide committee).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt

from services.common.secrets import local_secret

ALGORITHM = "HS256"
ISSUER = "linli"
ALL_COMMUNITIES = "*"


class AuthError(Exception):
    status = 401
    code = "unauthorized"


class Forbidden(AuthError):
    status = 403
    code = "forbidden"


class OutsideTokenCommunities(Forbidden):
    """What a request touches reaches communities the token does not: ``details`` names them."""

    code = "outside_token_communities"

    def __init__(self, message: str, details: dict):
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]
    communities: frozenset[str]

    def require_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this token lacks the scope {scope!r}")

    def communities_beyond(self, communities) -> list[str]:
        """Of ``communities`` (ids, or ``*`` for all of them), those this token does not reach.
        The one rule: a ``*`` token reaches every community; ``*`` is reached only by a ``*`` token."""
        if ALL_COMMUNITIES in self.communities:
            return []
        return sorted(set(communities) - self.communities)

    def may_see(self, community_id: str) -> bool:
        return not self.communities_beyond([community_id])

    def require_communities(self, communities, what: str) -> None:
        """403 ``outside_token_communities`` unless this token reaches every one of ``communities``
        (a city-wide action: ``[ALL_COMMUNITIES]``); ``what`` names the object for the message."""
        beyond = self.communities_beyond(communities)
        if beyond:
            raise OutsideTokenCommunities(
                f"{what} reaches communities this token does not cover: {', '.join(beyond)}",
                {"communities": beyond, "token_communities": sorted(self.communities)})

    def require_community(self, community_id: str) -> None:
        if not self.may_see(community_id):
            raise Forbidden(f"this token does not cover community {community_id!r}")


def issue_token(
    secret: str,
    *,
    subject: str,
    scopes: list[str],
    communities: list[str],
    ttl: timedelta = timedelta(hours=8),
) -> str:
    now = datetime.now(timezone.utc)
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "iat": now,
        "exp": now + ttl,
        "scopes": sorted(set(scopes)),
        "communities": sorted(set(communities)),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "iss", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"the token is not valid: {exc}") from None
    return Principal(
        subject=claims["sub"],
        scopes=frozenset(claims.get("scopes", [])),
        communities=frozenset(claims.get("communities", [])),
    )


def principal_from_header(secret: str, authorization: str | None) -> Principal:
    if not authorization:
        raise AuthError("a bearer token is required (Authorization: Bearer <token>)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("the Authorization header must be 'Bearer <token>'")
    return decode_token(secret, token.strip())


def dev_secret(var_dir: Path) -> str:
    """The local signing secret: ``$LINLI_JWT_SECRET``, else one generated into var/."""
    return local_secret(var_dir, "jwt-secret", "LINLI_JWT_SECRET", lambda: secrets.token_urlsafe(48))
