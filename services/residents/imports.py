"""Bulk registration from a collection form: accept the file, then register its rows in batches.

Accepting stores the rows and answers at once; ``run`` registers them (a
worker of the residents service, started over RPC) in batches, recording
progress on the job so it can be polled and resumed, and deletes the rows
once all are handled — the form's personal data is not kept twice.

Each batch is one transaction: the new residents, their ``resident.registered``
envelopes in the outbox and the job's progress commit together, so a crash
repeats no batch and loses no announcement. A duplicate-key error would abort
the transaction, so the batch's identity keys are looked up first (one query
per key for the whole batch, ``identity.admit_many``) and only people the same-person rule admits
are inserted; the others are a note (already registered here) or an error
(registered in another community) on the job.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone


from contracts import RESIDENT_IMPORT_COMPLETED
from services.common.messaging import fact_id
from services.common.metrics import scrape_time_metrics
from services.common.races import retried
from services.residents import domain, forms, identity, registry
from services.residents.documents import ImportJob
from services.residents.privacy import Vault
from services.residents.store import ResidentsStore

BATCH_ROWS = 500
MAX_REPORTED_ERRORS = 5000
BATCH_ATTEMPTS = 3  # a batch that lost a race with another import of the same people is looked up again
# The column a same-person refusal names, by the identity rule that matched.
RULE_COLUMNS = {domain.IDENTITY_RULES["document_key"]: "document_number",
                domain.IDENTITY_RULES["person_key"]: "name"}


def accept(store: ResidentsStore, content: bytes, filename: str, principal) -> tuple[ImportJob, bool]:
    """Store the form's rows as a queued job; returns (job, created). The same file twice is one job.
    The job keeps the communities the submitter's token reaches: a row's error names another community's
    resident only if they reach it (``SamePerson.seen_from``)."""
    digest = hashlib.sha256(content).hexdigest()
    existing = store.import_of(digest)
    if existing is not None:
        _require_visible(existing.communities, principal.may_see)  # a repeat shows the job only to whom it concerns
        return existing, False
    form = forms.read(content, filename)  # FormError: nothing is stored
    communities = sorted({raw.get("community_id", "").strip() for _, raw in form.rows} - {""})
    _require_visible(communities, principal.may_see)
    job = ImportJob(filename=filename, content_sha256=digest, rows_total=len(form.rows),
                    requested_by=principal.subject, communities=communities,
                    requester_communities=sorted(principal.communities))
    store.add_import(job, [
        {"row": number, "values": raw,
         **({"errors": [e.as_dict() for e in form.row_errors[number]]} if number in form.row_errors else {})}
        for number, raw in form.rows])
    return job, True


def _require_visible(communities, may_see) -> None:
    refused = [c for c in communities if not may_see(c)]
    if refused:
        from services.common.auth import Forbidden

        raise Forbidden(f"this token does not cover communities {refused} named in the form")


class BatchTaken(Exception):
    """Another worker running the same job (a redelivered call) recorded this batch first."""


def run(store: ResidentsStore, vault: Vault, stage, job_id: str) -> ImportJob:
    """``stage``: the service's outbox (``Staging``)."""
    job = store.import_job(job_id)
    if job is None or job.status == "completed":
        return job
    store.start_import(job_id)
    last_row = job.last_row
    while True:
        # Resumable: rows up to ``last_row`` were handled before a restart.
        batch = store.import_rows(job_id, last_row, BATCH_ROWS)  # one command, not 101 rows at a time
        if not batch:
            break
        try:
            _register_batch(store, vault, stage, batch, job, last_row)
            last_row = batch[-1]["row"]
        except BatchTaken:
            last_row = store.import_job(job_id).last_row
    store.drop_import_rows(job_id)  # the form's data is not kept twice
    stage.transaction(lambda session, publish: _complete(store, session, publish, job_id))
    return store.reload(job)


def _complete(store: ResidentsStore, session, publish, job_id: str) -> None:
    job = store.complete_import(job_id, datetime.now(timezone.utc), session)
    communities = job.get("communities") or []
    publish(
        RESIDENT_IMPORT_COMPLETED,
        {"import_id": job_id, "community_id": communities[0] if len(communities) == 1 else None,
         "rows_total": job.get("rows_total", 0), "registered": job.get("registered", 0),
         "already_registered": job.get("already_registered", 0), "rejected": job.get("rejected", 0)},
        subject=job_id,
        message_id=fact_id("resident.import_completed", job_id),
    )


def _register_batch(store: ResidentsStore, vault, stage, batch, job: ImportJob, after_row: int) -> None:
    """The batch's new residents, their announcements and the job's progress, in one transaction."""
    job_id = str(job.id)
    errors: list[forms.RowError] = []
    candidates = []  # (row number, record)
    for row in batch:
        found = [forms.RowError(**e) for e in (row.get("errors") or [])]
        command, row_errors = forms.to_command(row["row"], row.get("values") or {}) if not found else (None, found)
        if row_errors:
            errors.extend(row_errors)
        else:
            candidates.append((row["row"], registry.to_record(vault, command, import_id=job_id)))

    def write(session, publish):
        fresh, notes, refused = _sort_out(store, candidates, session, job.requester_may_see)
        if fresh:
            store.add_many(fresh, session=session)
            registry.announce_all_registered(stage, session, fresh)
        _record_progress(store, session, job_id, after_row, batch[-1]["row"], len(batch), len(fresh), notes,
                         len(batch) - len(candidates) + len(refused), errors + refused)

    retried(lambda attempt: stage.transaction(write), attempts=BATCH_ATTEMPTS)


def _sort_out(store: ResidentsStore, candidates: list[tuple[int, dict]], session,
              may_see) -> tuple[list[dict], list[str], list[forms.RowError]]:
    """The same-person rule (``domain.same_person``, as at every door) for each row: the records to
    insert, a note for each person already registered here, an error for each registered elsewhere.
    A person twice in the form is judged against the row registered first (``identity.admit_many``)."""
    verdicts = identity.admit_many(store, [record for _, record in candidates], session)
    fresh, notes, refused = [], [], []
    for (number, record), verdict in zip(candidates, verdicts):
        if verdict.verdict == "already_registered":
            notes.append(f"row {number}: already registered as {verdict.existing_id}")
        elif not verdict.is_new:
            refused.append(forms.RowError(number, RULE_COLUMNS[verdict.rule], verdict.seen_from(may_see).message))
        else:
            fresh.append(record)
    return fresh, notes, refused


def _record_progress(store: ResidentsStore, session, job_id, after_row, last_row, rows, registered, notes, rejected,
                     errors) -> None:
    counts = {"rows_done": rows, "registered": registered, "already_registered": len(notes), "rejected": rejected,
              "errors_total": len(errors), "notes_total": len(notes)}
    if not store.record_batch(job_id, after_row, last_row, counts, [e.as_dict() for e in errors], notes,
                              MAX_REPORTED_ERRORS, session):
        raise BatchTaken(job_id)


def view(job: ImportJob) -> dict:
    return {
        "id": str(job.id),
        "filename": job.filename,
        "status": job.status,
        "rows_total": job.rows_total,
        "rows_done": job.rows_done,
        "progress": round(job.rows_done / job.rows_total, 4) if job.rows_total else 1.0,
        "registered": job.registered,
        "already_registered": job.already_registered,
        "rejected": job.rejected,
        "errors": [f"row {e['row']}, {e['column']}: {e['reason']}" for e in job.errors],
        "errors_truncated": job.errors_total > len(job.errors),
        "notes": list(job.notes),
        "notes_truncated": job.notes_total > len(job.notes),
        "communities": list(job.communities),
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


@scrape_time_metrics("residents")
def progress_gauges(container) -> list:
    """Jobs by status, and rows of the unfinished ones: progress without a job id in a label."""
    from prometheus_client.core import GaugeMetricFamily

    jobs = GaugeMetricFamily("linli_import_jobs", "Import jobs by status.", labels=["status"])
    expected = GaugeMetricFamily("linli_import_rows_expected", "Rows in the forms of queued or running jobs.",
                                 labels=["status"])
    handled = GaugeMetricFamily("linli_import_rows_handled", "Rows handled so far of queued or running jobs.",
                                labels=["status"])
    found = ResidentsStore().imports_by_status()
    for status in ImportJob.status.choices:
        group = found.get(status, {})
        jobs.add_metric([status], group.get("jobs", 0))
        if status in ("queued", "running"):
            expected.add_metric([status], group.get("rows_total", 0))
            handled.add_metric([status], group.get("rows_done", 0))
    return [jobs, expected, handled]
