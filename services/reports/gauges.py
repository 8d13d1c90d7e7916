"""Business figures as Prometheus gauges, read from the projections when Prometheus scrapes.

Labelled by community only (a bounded set, never a resident).
"""
from __future__ import annotations

import threading
from datetime import datetime

from nameko.extensions import DependencyProvider
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from services.common.community_time import community_zone
from services.reports import activity
from services.reports.store import ReportsStore

_registered = threading.Lock()
_collectors: dict[str, "ProjectionCollector"] = {}


class ProjectionCollector:
    def __init__(self, store: ReportsStore | None):
        self.store = store
        self.zone = community_zone()

    def collect(self):
        month = datetime.now(self.zone).strftime("%Y-%m")
        residents = GaugeMetricFamily("linli_community_residents", "Residents registered and present.",
                                      labels=["community"])
        foreign = GaugeMetricFamily("linli_community_foreign_residents", "Foreign residents present.",
                                    labels=["community"])
        held = GaugeMetricFamily("linli_community_events_held_this_month", "Events held this month.",
                                 labels=["community"])
        satisfaction = GaugeMetricFamily("linli_community_satisfaction_average",
                                         "Average event rating (1-10) this month.", labels=["community"])
        failures = GaugeMetricFamily("linli_community_notification_failure_ratio",
                                     "Failed / attempted notification deliveries this month.", labels=["community"])
        if self.store is None:  # between containers (tests), or before the first starts
            return [residents, foreign, held, satisfaction, failures]
        for doc in self.store.every_community():
            residents.add_metric([doc["_id"]], doc.get("residents_total", 0))
            foreign.add_metric([doc["_id"]], doc.get("by_residence_type", {}).get("foreign", 0))
        for doc in self.store.months_in(month):
            figures = activity.view(doc)
            held.add_metric([doc["community_id"]], figures["events_held"])
            if figures["average_satisfaction"] is not None:
                satisfaction.add_metric([doc["community_id"]], figures["average_satisfaction"])
            if figures["notification_failure_rate"] is not None:
                failures.add_metric([doc["community_id"]], figures["notification_failure_rate"])
        return [residents, foreign, held, satisfaction, failures]


class BusinessGauges(DependencyProvider):
    """Registers the collector once per process, reading the service's reports database."""

    def setup(self):
        config = self.container.config
        name = config.get("MONGO_DB_PREFIX", "linli_") + "reports"
        with _registered:
            if "collector" not in _collectors:
                _collectors["collector"] = ProjectionCollector(None)
                REGISTRY.register(_collectors["collector"])
            # The latest container's database (tests start several, one after another).
            self._database_name = name
            self._zone = community_zone(config)

    def start(self):
        import mongoengine

        client = mongoengine.get_connection("reports")
        _collectors["collector"].store = ReportsStore(client[self._database_name])
        _collectors["collector"].zone = self._zone

    def stop(self):
        _collectors["collector"].store = None

    kill = stop
