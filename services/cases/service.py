"""The cases service (接诉即办): residents' cases, routed to the responsible department, through their lifecycle.

Entrypoints translate: load the request through a schema, check the token's reach (its community; a
department only the cases routed to it), call one use case. A case's description and reply stay in this
service's database: never in a message or a log line.
"""
from datetime import datetime, timezone

from nameko.dependency_providers import Config

from services.cases import access, catalogue, domain, handling, intake
from services.cases.documents import ensure_indexes
from services.cases.lifecycle import IllegalTransition
from services.cases.store import Store
from services.cases.working_days import Limit, WorkingDaysError
from services.common.base import ServiceBase
from services.common.community_time import community_zone
from services.common.mongo import MongoDatabase
from services.common.outbox import Outbox
from services.common.web import ApiError, NotFound, api, load, read_json

CATALOGUE = catalogue.load()


class TransitionRefused(ApiError):
    """lifecycle's ``IllegalTransition`` as an HTTP answer naming the rule."""

    status = 409

    def __init__(self, refused: IllegalTransition):
        offered = [action for action in refused.details["allowed_actions"] if action in domain.ACTIONS]
        super().__init__(refused.message, {**refused.details, "allowed_actions": offered}, code=refused.code)


def _type_view(case_type: dict) -> dict:
    return {key: case_type[key] for key in ("code", "name", "group", "keywords", "description", "attributes",
                                            "department", "co_handlers", "priority", "sla")}


class CasesService(ServiceBase):
    name = "cases"

    db = MongoDatabase("cases", prepare=ensure_indexes)
    outbox = Outbox("cases")
    store = Store()  # the use cases' repository (a CasesStore), handed to each (a fake one in unit tests)
    config = Config()

    # -- the catalogue ----------------------------------------------------------

    @api("GET", "/case-types", scope="cases:read")
    def case_types_over_http(self, request):
        return {"items": [_type_view(case_type) for case_type in CATALOGUE.types.values()]}

    @api("GET", "/case-types/<type_code>", scope="cases:read")
    def case_type_over_http(self, request, type_code):
        if type_code not in CATALOGUE.types:
            raise NotFound(f"no case type {type_code!r}", {"known": sorted(CATALOGUE.types)}, code="unknown_case_type")
        return _type_view(CATALOGUE.type(type_code))

    # -- cases ------------------------------------------------------------------

    @api("POST", "/cases", scope="cases:write", request_schema=domain.SubmitCase, body="the case")
    def submit_over_http(self, request):
        access.require_committee(access.actor_of(request.principal), "taking in a case")
        command = request.body
        request.principal.require_communities([command["community_id"]], "the case")
        intake.check(command, CATALOGUE)
        return 201, self._stored(intake.submit, command, CATALOGUE, _now())

    @api("GET", "/cases/<case_id>", scope="cases:read")
    def get_over_http(self, request, case_id):
        actor = access.actor_of(request.principal)
        record = access.require_reach(request.principal, actor, self.store.case(case_id), case_id)
        return domain.view(record, actor)

    @api("POST", "/cases/<case_id>/<action>", scope="cases:write")
    def act_over_http(self, request, case_id, action):
        actor = access.actor_of(request.principal)
        access.require_reach(request.principal, actor, self.store.case(case_id), case_id)
        if action not in domain.ACTIONS:
            raise NotFound(f"no action {action!r}; the actions are {sorted(domain.ACTIONS)}",
                           {"actions": sorted(domain.ACTIONS)}, code="unknown_action")
        body = read_json(request) if request.get_data() else {}
        arguments = load(domain.ACTIONS[action](), body, f"the arguments of {action}")
        try:
            return self._stored(handling.act, case_id, action, actor, arguments, _now(), self._resolve_deadline)
        except IllegalTransition as refused:
            raise TransitionRefused(refused) from None

    # -- helpers ------------------------------------------------------------------

    def _stored(self, use_case, *args):
        """``use_case(store, session, publish, *args)``, whose writes and messages commit together."""
        return self.outbox.transaction(lambda session, publish: use_case(self.store, session, publish, *args))

    def _resolve_deadline(self, record: dict):
        """When the case must be resolved, by its type's SLA from now; None where the working-day calendar
        does not reach (the holiday schedule of a year not yet published)."""
        limit = CATALOGUE.type(record["type_code"])["sla"]["resolve"]
        try:
            return Limit(limit["amount"], limit["unit"]).deadline(_now(), community_zone(self.config))
        except WorkingDaysError:
            return None


def _now() -> datetime:
    return datetime.now(timezone.utc)
