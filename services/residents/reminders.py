"""Residence-permit reminders: 30, 7 and 1 days before expiry, once per resident per threshold."""
from __future__ import annotations

from datetime import date, timedelta

from contracts import RESIDENT_PERMIT_EXPIRING
from contracts.residents import PERMIT_THRESHOLDS_DAYS
from services.common.messaging import fact_id
from services.residents import domain
from services.residents.documents import PermitReminder, ReminderRun, Resident


def send_permit_reminders(publish, today: date) -> int:
    """Publish ``resident.permit_expiring`` for every permit that reached a threshold; returns how many.

    The message id is derived from the reminder, and the reminder is recorded
    after it is published: a crash in between re-sends the same envelope id,
    which consumers skip.
    """
    horizon = today + timedelta(days=max(PERMIT_THRESHOLDS_DAYS))
    candidates = Resident.objects(
        status="active", erased_at=None, permit_expires_on__gte=today, permit_expires_on__lte=horizon
    ).only("id", "community_id", "permit_type", "permit_expires_on")
    sent = 0
    for resident in candidates:
        threshold = domain.permit_threshold(resident.permit_expires_on, today)
        if threshold is None:
            continue
        reminder_id = f"{resident.id}:{resident.permit_expires_on.isoformat()}:{threshold}"
        if PermitReminder.objects(id=reminder_id).first() is not None:
            continue
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
        PermitReminder(id=reminder_id, resident_id=str(resident.id), threshold_days=threshold, sent_on=today).save()
        sent += 1
    return sent


def run_daily(publish, today: date) -> int | None:
    """The timer's job: once per day; ``None`` when today's run already happened."""
    if ReminderRun.objects(id=today.isoformat()).first() is not None:
        return None
    sent = send_permit_reminders(publish, today)
    ReminderRun(id=today.isoformat(), sent=sent).save()
    return sent
