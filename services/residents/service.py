"""The residents service: the community's resident registry.

Entrypoints only translate: load the request through a schema, check the
token's community, call one use case in ``registry``/``imports``/``reminders``,
handing it the store (``store.ResidentsStore``) and the outbox.
"""
from contextlib import contextmanager
from datetime import date

from bson import ObjectId

from marshmallow import Schema, ValidationError, fields
from nameko.dependency_providers import Config
from nameko.rpc import RpcProxy, rpc
from nameko.timer import timer

from contracts import RESIDENT_FORM_SUBMITTED
from contracts.ingest import IngestEnvelopeSchema
from services.common.auth import Forbidden
from services.common.base import ServiceBase
from services.common.caller import Caller
from services.common.ingest_entrypoints import IngestDoor, ingest_handler, unrouted_gate
from services.common.mongo import MongoDatabase
from services.common.outbox import Outbox
from services.common.sealing import SealForReader
from services.common.community_time import community_today
from services.common.web import ApiError, NotFound, ValidationFailed, api
from services.residents import identity, imports, ingest, migrations, registry, reminders
from services.residents.documents import ALL_DOCUMENTS
from services.residents.domain import MoveResident, RecordDeparture, RegisterResident, SearchResidents, UpdateResident
from services.residents.forms import FormError
from services.residents.privacy import PII_SCOPE
from services.residents.store import Store
from services.residents.vault import ResidentsVault



# The collection form as uploaded: a file field, or the CSV/XLSX bytes as the body (?filename= names it).
FORM_UPLOAD = {"multipart/form-data": {"schema": {"type": "object", "properties": {
                   "file": {"type": "string", "format": "binary"}}}},
               "text/csv": {"schema": {"type": "string"}}}
IMPORT_QUERY = Schema.from_dict({"filename": fields.String(
    metadata={"description": "the file's name, for a form sent as the body (its ending says CSV or XLSX)"})},
    name="ImportQuery")


def _with_pii(request) -> bool:
    return PII_SCOPE in request.principal.scopes


@contextmanager
def _same_person_told_to(principal):
    """A same-person 409 names the other resident only to a token that reaches their community."""
    try:
        yield
    except identity.SamePersonConflict as exc:
        raise exc.seen_from(principal.may_see) from None


class ResidentsService(ServiceBase):
    name = "residents"

    db = MongoDatabase("residents", documents=ALL_DOCUMENTS, prepare=migrations.run_all)
    store = Store()
    vault = ResidentsVault()
    outbox = Outbox("residents")
    myself = RpcProxy("residents")
    caller = Caller()
    seal_for = SealForReader()  # personal fields of RPC replies, for their reader only
    config = Config()
    ingest_door = IngestDoor()

    # -- HTTP ---------------------------------------------------------------

    @api("POST", "/residents", scope="residents:write", request_schema=RegisterResident, body="the resident")
    def register_over_http(self, request):
        command = request.body
        request.principal.require_community(command["community_id"])
        with _same_person_told_to(request.principal):
            return 201, {"id": registry.register(self.store, self.vault, self.outbox, command)}

    @api("GET", "/residents", scope="residents:read", query_schema=SearchResidents, query="the search")
    def search_over_http(self, request):
        query = request.query
        request.principal.require_community(query["community_id"])
        return registry.search(self.store, self.vault, query, _with_pii(request))

    @api("GET", "/residents/<resident_id>", scope="residents:read")
    def get_over_http(self, request, resident_id):
        resident = self._visible(request, resident_id)
        return registry.view(self.vault, resident, _with_pii(request))

    @api("PATCH", "/residents/<resident_id>", scope="residents:write",
         request_schema=UpdateResident, body="the update")
    def update_over_http(self, request, resident_id):
        changes = request.body
        resident = self._visible(request, resident_id)
        try:
            with _same_person_told_to(request.principal):
                changed = registry.update(self.store, self.vault, self.outbox, resident, changes)
        except ValidationError as exc:
            raise ValidationFailed("the update is not valid", {"fields": exc.normalized_messages()}) from None
        return {"id": resident_id, "changed_fields": changed}

    @api("POST", "/residents/<resident_id>/move", scope="residents:write",
         request_schema=MoveResident, body="the move")
    def move_over_http(self, request, resident_id):
        command = request.body
        resident = self._visible(request, resident_id)
        request.principal.require_community(command["community_id"])
        with _same_person_told_to(request.principal):
            registry.move(self.store, self.vault, self.outbox, resident, command)
        return {"id": resident_id, "community_id": command["community_id"]}

    @api("POST", "/residents/<resident_id>/departure", scope="residents:write",
         request_schema=RecordDeparture, body="the departure")
    def depart_over_http(self, request, resident_id):
        command = request.body
        registry.depart(self.store, self.outbox, self._visible(request, resident_id), command)
        return {"id": resident_id, "status": "departed"}

    @api("DELETE", "/residents/<resident_id>/personal-data", scope=PII_SCOPE)
    def erase_over_http(self, request, resident_id):
        registry.erase(self.store, self.outbox, self._visible(request, resident_id))
        return {"id": resident_id, "erased": True}

    @api("GET", "/communities/<community_id>/households/<household_id>", scope="residents:read")
    def household_over_http(self, request, community_id, household_id):
        request.principal.require_community(community_id)
        return registry.household(self.store, self.vault, community_id, household_id, _with_pii(request))

    @api("POST", "/residents/imports", scope="residents:write", request_schema=FORM_UPLOAD, query_schema=IMPORT_QUERY)
    def import_over_http(self, request):
        upload = next(iter(request.files.values()), None)
        content = upload.read() if upload else request.get_data()
        filename = (upload.filename if upload else request.args.get("filename")) or ""
        try:
            job, created = imports.accept(self.store, content, filename, request.principal)
        except FormError as exc:
            raise ApiError(str(exc), exc.details, code=exc.code) from None
        if created:
            self.myself.run_import.call_async(str(job.id))
        return (202 if created else 200), {**imports.view(job), "repeat": not created}

    @api("GET", "/residents/imports/<import_id>", scope="residents:read")
    def import_status_over_http(self, request, import_id):
        job = self.store.import_job(import_id) if ObjectId.is_valid(import_id) else None
        if job is None:
            raise NotFound(f"no import with id {import_id}")
        if not all(request.principal.may_see(c) for c in job.communities):
            raise Forbidden("this token does not cover every community in this import")
        return imports.view(job)

    @api("POST", "/ingest", scope="ingest:write", request_schema=IngestEnvelopeSchema)
    def ingest_over_http(self, request):
        return self.ingest_door(request)

    def _visible(self, request, resident_id):
        resident = registry.find(self.store, resident_id)
        request.principal.require_community(resident.community_id)
        return resident

    # -- the ingest door (AMQP), for internal systems of the city --------------

    @ingest_handler(RESIDENT_FORM_SUBMITTED, batch=True)
    def ingest_form_rows(self, envelopes):
        return ingest.submit_form_rows(self.db, self.store, self.vault, self.outbox, envelopes)

    @unrouted_gate()
    def park_unrouted_ingest(self, envelope):
        """Never called: the gate parks every message with a routing key no service binds."""

    # -- RPC, for the other services ------------------------------------------
    # No RPC takes a person's fields (name, phone, document…): a request crosses the broker in clear.
    # People are registered, updated and searched for by name over HTTP, or through the ingest door.

    @rpc
    def get(self, resident_id: str) -> dict:
        return registry.view(self.vault, registry.find(self.store, resident_id), with_pii=False, personal=False)

    @rpc
    def membership(self, resident_id: str) -> dict:
        """Who may take part where: ids and categories only, no name, so nothing personal crosses
        the bus when another service checks a resident (events does, for every registration)."""
        return registry.membership(registry.find(self.store, resident_id))

    @rpc
    def move(self, resident_id: str, command: dict) -> None:
        registry.move(self.store, self.vault, self.outbox, registry.find(self.store, resident_id),
                      MoveResident().load(command))

    @rpc
    def depart(self, resident_id: str, command: dict) -> None:
        registry.depart(self.store, self.outbox, registry.find(self.store, resident_id),
                        RecordDeparture().load(command))

    @rpc
    def household(self, community_id: str, household_id: str) -> dict:
        return registry.household(self.store, self.vault, community_id, household_id, with_pii=False, personal=False)

    @rpc
    def get_contact(self, resident_id: str, purpose: str) -> dict:
        return registry.contact(self.store, self.vault, resident_id, purpose, self.caller, self.seal_for)

    @rpc
    def get_contacts(self, resident_ids: list, purpose: str) -> list:
        """``get_contact`` of many residents in one call (unknown ones left out), each answer sealed alike."""
        return registry.contacts(self.store, self.vault, resident_ids, purpose, self.caller, self.seal_for)

    @rpc
    def get_for_partner(self, resident_id: str, partner_id: str, fields: list) -> dict:
        """Personal fields for a partner department's feed; see ``registry.partner_fields``."""
        return registry.partner_fields(self.store, self.vault, resident_id, partner_id, fields, self.caller,
                                       self.seal_for)

    @rpc
    def run_permit_reminders(self, today: str | None = None) -> int:
        day = date.fromisoformat(today) if today else self._today()
        return reminders.send_permit_reminders(self.store, self.outbox, day)

    @rpc
    def run_import(self, import_id: str) -> dict:
        return imports.view(imports.run(self.store, self.vault, self.outbox, import_id))

    @timer(interval=3600)
    def daily_permit_reminders(self):
        reminders.run_daily(self.store, self.outbox, self._today())

    def _today(self) -> date:
        return community_today(self.config)
