"""Who acts on a case, and whether a token reaches it: the per-object check of every case route.

A token whose subject is ``partner:<id>`` is that partner department's, and acts only with the scope
``cases:department`` (never as the committee); any other token with the route's scope is a community
worker's (the committee of the communities it names). Either must reach the case's community; a
department sees only the cases routed to it (as lead or co-handler), and any other is "not found".
"""
from __future__ import annotations

from services.cases.lifecycle import Actor
from services.common.auth import Forbidden
from services.common.web import NotFound

DEPARTMENT_SCOPE = "cases:department"
PARTNER_SUBJECT_PREFIX = "partner:"  # the partners service's subject for a partner's tokens


def actor_of(principal) -> Actor:
    if principal.subject.startswith(PARTNER_SUBJECT_PREFIX):
        if DEPARTMENT_SCOPE not in principal.scopes:
            raise Forbidden(f"a partner's token acts on cases only with the scope {DEPARTMENT_SCOPE!r}")
        return Actor("department", principal.subject[len(PARTNER_SUBJECT_PREFIX):])
    return Actor("committee")


def require_committee(actor: Actor, what: str) -> None:
    if actor.kind != "committee":
        raise Forbidden(f"{what} is for the community committee, not a department")


def require_reach(principal, actor: Actor, record: dict | None, case_id: str) -> dict:
    """The case, if the token reaches it: 404 if there is none (or the department is not on it), 403
    ``outside_token_communities`` if its community is beyond the token."""
    if record is None:
        raise NotFound(f"no case with id {case_id}")
    principal.require_communities([record["community_id"]], f"case {case_id}")
    if actor.kind == "department" and actor.party != record.get("lead") and \
            actor.party not in (record.get("co_handlers") or ()):
        raise NotFound(f"no case with id {case_id}")  # a department does not learn of others' cases
    return record
