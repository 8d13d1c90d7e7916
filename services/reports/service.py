"""The reports service: projections the committee and each community read."""
from contracts import RESIDENT_REGISTERED
from services.common.base import ServiceBase
from services.common.messaging import message_handler
from services.common.mongo import MongoDatabase
from services.common.web import NotFound, api
from services.reports import projections


class ReportsService(ServiceBase):
    name = "reports"

    db = MongoDatabase("reports")

    @message_handler("residents", RESIDENT_REGISTERED, batch=True)
    def on_resident_registered(self, envelopes):
        projections.record(self.db, envelopes)
        projections.count_registered_residents(self.db, [envelope.data for envelope in envelopes])

    @api("GET", "/communities/<community_id>/summary", scope="reports:read")
    def summary(self, request, community_id):
        request.principal.require_community(community_id)
        summary = projections.community_summary(self.db, community_id)
        if summary is None:
            raise NotFound(f"no community {community_id!r} is known to reports")
        return summary
