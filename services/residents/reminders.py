"""Residence-permit reminders: 30, 7 and 1 days before expiry, once per resident per threshold."""
from __future__ import annotations

from datetime import date, timedelta, timezone

from pymongo.errors import DuplicateKeyError

from contracts import RESIDENT_PERMIT_EXPIRING
from contracts.residents import PERMIT_THRESHOLDS_DAYS
from services.common.messaging import fact_id
from services.common.metrics import scrape_time_metrics
from services.residents import domain
from services.residents.store import ResidentsStore


def send_permit_reminders(store: ResidentsStore, stage, today: date) -> int:
    """Publish ``resident.permit_expiring`` for every permit that reached a threshold; returns how many.

    The record that the reminder went out and its envelope (the outbox, ``stage``) commit
    together: a crash between never loses the reminder nor sends it under another id.
    """
    horizon = today + timedelta(days=max(PERMIT_THRESHOLDS_DAYS))
    sent = 0
    for resident in store.permits_expiring(today, horizon):
        threshold = domain.permit_threshold(resident.permit_expires_on, today)
        if threshold is None:
            continue
        reminder_id = f"{resident.id}:{resident.permit_expires_on.isoformat()}:{threshold}"
        if store.reminder_sent(reminder_id):
            continue
        try:
            stage.transaction(lambda session, publish: _remind(store, session, publish, resident, reminder_id,
                                                               threshold, today))
        except DuplicateKeyError:
            continue  # another instance sent this one meanwhile
        sent += 1
    return sent


def _remind(store: ResidentsStore, session, publish, resident, reminder_id: str, threshold: int, today: date) -> None:
    store.add_reminder(dict(id=reminder_id, resident_id=str(resident.id), threshold_days=threshold, sent_on=today),
                       session)
    publish(
        RESIDENT_PERMIT_EXPIRING,
        {
            "resident_id": str(resident.id),
            "community_id": resident.community_id,
            "permit_type": resident.permit_type,
            "expires_on": resident.permit_expires_on,
            "threshold_days": threshold,
            "days_left": (resident.permit_expires_on - today).days,
        },
        subject=str(resident.id),
        community=resident.community_id,
        message_id=fact_id("resident.permit_expiring", reminder_id),
    )


def run_daily(store: ResidentsStore, stage, today: date) -> int | None:
    """The timer's job: once per day; ``None`` when today's run already happened."""
    if store.daily_run_done(today.isoformat()):
        return None
    sent = send_permit_reminders(store, stage, today)
    store.record_daily_run(today.isoformat(), sent)
    return sent


@scrape_time_metrics("residents")
def last_run_gauges(container) -> list:
    """When the daily run last happened (read from its record, so any instance, after any restart, tells)."""
    from prometheus_client.core import GaugeMetricFamily

    at = GaugeMetricFamily("linli_permit_reminders_last_run_timestamp_seconds",
                           "Unix time of the last daily permit-reminder run.")
    sent = GaugeMetricFamily("linli_permit_reminders_last_run_sent", "Reminders the last daily run published.")
    last = ResidentsStore().last_daily_run()
    if last is not None:
        at.add_metric([], last.at.replace(tzinfo=last.at.tzinfo or timezone.utc).timestamp())
        sent.add_metric([], last.sent)
    return [at, sent]
