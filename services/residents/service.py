"""The residents service: the community's resident registry."""
from bson import ObjectId
from bson.errors import InvalidId
from marshmallow import ValidationError
from nameko.rpc import rpc

from contracts import RESIDENT_REGISTERED
from services.common.base import ServiceBase
from services.common.messaging import MessageDispatcher
from services.common.mongo import MongoDatabase
from services.common.web import NotFound, ValidationFailed, api, read_json
from services.residents.documents import Resident
from services.residents.domain import RegisterResident, registered_facts


class ResidentsService(ServiceBase):
    name = "residents"

    db = MongoDatabase("residents")
    publish = MessageDispatcher()

    @api("POST", "/residents", scope="residents:write")
    def register_over_http(self, request):
        try:
            command = RegisterResident().load(read_json(request))
        except ValidationError as exc:
            raise ValidationFailed("the resident is not valid", {"fields": exc.messages}) from None
        request.principal.require_community(command["community_id"])
        return 201, {"id": self._register(command)}

    @api("GET", "/residents/<resident_id>", scope="residents:read")
    def get_over_http(self, request, resident_id):
        resident = _find(resident_id)
        request.principal.require_community(resident.community_id)
        return resident.to_view()

    @rpc
    def register(self, resident: dict) -> str:
        return self._register(RegisterResident().load(resident))

    def _register(self, command: dict) -> str:
        resident = Resident(**command).save()
        resident_id = str(resident.id)
        self.publish(
            RESIDENT_REGISTERED,
            registered_facts(resident_id, command),
            subject=resident_id,
            community=command["community_id"],
        )
        return resident_id


def _find(resident_id: str) -> Resident:
    try:
        resident = Resident.objects(id=ObjectId(resident_id)).first()
    except InvalidId:
        resident = None
    if resident is None:
        raise NotFound(f"no resident with id {resident_id}")
    return resident
