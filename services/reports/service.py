"""The reports service: what the committee and each community see.

One consumer keeps every message the other services publish (``history``)
and moves the projections with it; reads come from the projections only.
"""
from datetime import date

from nameko.dependency_providers import Config
from nameko.rpc import rpc
from nameko.timer import timer
from pymongo.errors import DuplicateKeyError

from contracts import COMMUNITY_ASSESSED, registry
from services.common.auth import ALL_COMMUNITIES
from services.common.base import ServiceBase
from services.common.messaging import fact_id
from services.common.multi_source import every_message_handler
from services.common.mongo import MongoDatabase
from services.common.outbox import Outbox
from services.common.community_time import community_today, community_zone
from services.common.web import api
from services.reports import export_api, figures, history, scorecard
from services.reports.gauges import BusinessGauges
from services.reports.store import Store, ensure_indexes

# Every service that publishes on the bus but this one, as the contracts name their producers.
SOURCES = registry.producers(besides="reports")


class ReportsService(export_api.ReportExports, ServiceBase):
    name = "reports"

    db = MongoDatabase("reports", prepare=ensure_indexes)
    outbox = Outbox("reports")
    store = Store()  # the use cases' repository (a ReportsStore), handed to each (a fake one in unit tests)
    gauges = BusinessGauges()
    config = Config()

    @every_message_handler(SOURCES, batch=True)
    def on_message(self, envelopes):
        history.record(self.store, envelopes, self.db.session, community_zone(self.config))

    # -- HTTP ------------------------------------------------------------------------

    @api("GET", "/communities/<community_id>/summary", scope="reports:read")
    def summary_over_http(self, request, community_id):
        request.principal.require_community(community_id)
        return self.summary(community_id)

    @api("GET", "/communities/<community_id>/profile", scope="reports:read")
    def profile_over_http(self, request, community_id):
        request.principal.require_community(community_id)
        return self.profile(community_id)

    @api("GET", "/communities/<community_id>/activity", scope="reports:read", query_schema=figures.MonthRangeQuery)
    def activity_over_http(self, request, community_id):
        request.principal.require_community(community_id)
        first, last = figures.month_range(request.args.get("from"), request.args.get("to"), self._today())
        return self.activity(community_id, first, last)

    @api("GET", "/city/overview", scope="reports:read", query_schema=figures.MonthQuery)
    def overview_over_http(self, request):
        month = figures.parse_month(request.args.get("month"), "month", self._today())
        return figures.city_overview(self.store, month, self._today(), request.principal.may_see)

    @api("GET", "/scorecard", scope="reports:read", query_schema=figures.MonthQuery)
    def scorecard_over_http(self, request):
        month = figures.parse_month(request.args.get("month"), "month", self._today())
        ranking = self.scorecard(month)
        return {**ranking, "communities": [c for c in ranking["communities"]
                                           if request.principal.may_see(c["community_id"])]}

    @api("GET", "/history/unknown", scope="reports:read")
    def unknown_over_http(self, request):
        return {"unknown_messages": self.store.unknown_counts()}

    @api("POST", "/projections/rebuild", scope="reports:admin")
    def rebuild_over_http(self, request):
        request.principal.require_communities([ALL_COMMUNITIES], "a rebuild of every community's projections")
        return self.rebuild()

    # -- RPC ---------------------------------------------------------------------------

    @rpc
    def summary(self, community_id: str) -> dict:
        return figures.summary(self.store, community_id, self._today())

    @rpc
    def profile(self, community_id: str) -> dict:
        return figures.profile_of(self.store, community_id, self._today())

    @rpc
    def activity(self, community_id: str, first: str, last: str) -> dict:
        figures.require_community(self.store, community_id)
        return {"community_id": community_id, "from": first, "to": last,
                "months": figures.activity_months(self.store, community_id, first, last)}

    @rpc
    def city_overview(self, month: str) -> dict:
        return figures.city_overview(self.store, figures.parse_month(month, "month", self._today()), self._today())

    @rpc
    def scorecard(self, month: str) -> dict:
        card = scorecard.load(self.config.get("SCORECARD_FILE") or None)
        return {"month": month, "demonstration_threshold": card.demonstration_threshold,
                "communities": figures.ranking(self.store, card, month, self._today())}

    @rpc
    def assess(self, month: str) -> int:
        """Publish ``community.assessed`` for every community for ``month``; the same month
        assessed again publishes the same message ids, which consumers skip."""
        return self._assess(month, claim=False)

    @rpc
    def rebuild(self) -> dict:
        return history.rebuild(self.store, self.outbox.transaction, community_zone(self.config),
                               grace_s=float(self.config.get("REBUILD_GRACE_SECONDS", 2)))

    @timer(interval=3600)
    def assess_last_month(self):
        """Early each month, the month before is assessed (once: a record says it was done)."""
        try:
            self._assess(figures.previous_month(self._today()), claim=True)
        except DuplicateKeyError:
            pass  # assessed already, by this instance or another

    def _assess(self, month: str, claim: bool) -> int:
        """The month's messages staged in one transaction (the outbox), with the record that the
        month was assessed when ``claim``: a crash neither loses them nor assesses the month twice."""
        ranking = self.scorecard(month)["communities"]

        def work(session, publish):
            if claim:
                self.store.claim_assessment(month, session)
            for entry in ranking:
                publish(COMMUNITY_ASSESSED, {
                    "community_id": entry["community_id"], "month": month, "score": entry["score"],
                    "rank": entry["rank"], "communities_ranked": len(ranking), "criteria": entry["criteria"],
                    "demonstration": entry["demonstration"]},
                    community=entry["community_id"],
                    message_id=fact_id("community.assessed", entry["community_id"], month))

        self.outbox.transaction(work)
        return len(ranking)

    def _today(self) -> date:
        return community_today(self.config)
