"""Bulk registration from a collection form: accept the file, then register its rows in batches.

Accepting stores the rows and answers at once; ``run`` registers them (a
worker of the residents service, started over RPC) in batches, recording
progress on the job so it can be polled and resumed, and deletes the rows
once all are handled — the form's personal data is not kept twice.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from pymongo.errors import BulkWriteError

from contracts import RESIDENT_IMPORT_COMPLETED
from services.common.messaging import fact_id
from services.residents import forms, registry
from services.residents.documents import ImportJob, ImportRow, Resident
from services.residents.privacy import Vault

BATCH_ROWS = 500
MAX_REPORTED_ERRORS = 5000
DUPLICATE_KEY = 11000


def accept(content: bytes, filename: str, requested_by: str, may_see) -> tuple[ImportJob, bool]:
    """Store the form's rows as a queued job; returns (job, created). The same file twice is one job."""
    digest = hashlib.sha256(content).hexdigest()
    existing = ImportJob.objects(content_sha256=digest).first()
    if existing is not None:
        _require_visible(existing.communities, may_see)  # a repeat shows the job only to whom it concerns
        return existing, False
    form = forms.read(content, filename)  # FormError: nothing is stored
    communities = sorted({raw.get("community_id", "").strip() for _, raw in form.rows} - {""})
    _require_visible(communities, may_see)
    job = ImportJob(filename=filename, content_sha256=digest, rows_total=len(form.rows),
                    requested_by=requested_by, communities=communities)
    job.save()
    rows = ImportRow._get_collection()
    for start in range(0, len(form.rows), 5000):
        rows.insert_many(
            [{"import_id": str(job.id), "row": number, "values": raw}
             for number, raw in form.rows[start:start + 5000]],
            ordered=False,
        )
    return job, True


def _require_visible(communities, may_see) -> None:
    refused = [c for c in communities if not may_see(c)]
    if refused:
        from services.common.auth import Forbidden

        raise Forbidden(f"this token does not cover communities {refused} named in the form")


def run(vault: Vault, publish, job_id: str) -> ImportJob:
    job = ImportJob.objects(id=job_id).first()
    if job is None or job.status == "completed":
        return job
    ImportJob.objects(id=job_id).update_one(set__status="running")
    last_row = job.last_row
    while True:
        # Resumable: rows up to ``last_row`` were handled before a restart.
        batch = list(ImportRow.objects(import_id=job_id, row__gt=last_row).order_by("row").limit(BATCH_ROWS))
        if not batch:
            break
        last_row = batch[-1].row
        counts, errors = _register_batch(vault, publish, batch, job_id)
        ImportJob.objects(id=job_id).update_one(
            inc__rows_done=len(batch), inc__registered=counts["registered"],
            inc__already_registered=counts["already_registered"], inc__rejected=counts["rejected"],
            inc__errors_total=len(errors), set__last_row=last_row,
        )
        if errors:
            job.reload("errors")
            room = MAX_REPORTED_ERRORS - len(job.errors)
            if room > 0:
                ImportJob.objects(id=job_id).update_one(push_all__errors=[e.as_dict() for e in errors[:room]])
    ImportRow._get_collection().delete_many({"import_id": job_id})  # the form's data is not kept twice
    ImportJob.objects(id=job_id).update_one(set__status="completed", set__finished_at=datetime.now(timezone.utc))
    job.reload()
    publish(
        RESIDENT_IMPORT_COMPLETED,
        {"import_id": job_id, "community_id": job.communities[0] if len(job.communities) == 1 else None,
         "rows_total": job.rows_total, "registered": job.registered,
         "already_registered": job.already_registered, "rejected": job.rejected},
        subject=job_id,
        message_id=fact_id("resident.import_completed", job_id),
    )
    return job


def _register_batch(vault, publish, batch, job_id):
    counts = {"registered": 0, "already_registered": 0, "rejected": 0}
    errors: list[forms.RowError] = []
    documents, numbers = [], []
    for row in batch:
        command, row_errors = forms.to_command(row.row, row.values)
        if row_errors:
            errors.extend(row_errors)
            counts["rejected"] += 1
            continue
        documents.append(registry.to_record(vault, command, import_id=job_id))
        numbers.append(row.row)
    if not documents:
        return counts, errors
    failed = set()
    try:
        Resident._get_collection().insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        for write_error in exc.details["writeErrors"]:
            if write_error["code"] != DUPLICATE_KEY:
                raise
            failed.add(write_error["index"])
    for index, document in enumerate(documents):
        if index in failed:
            counts["already_registered"] += 1
            continue
        counts["registered"] += 1
        registry.announce_registered(publish, document)
    return counts, errors


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
        "communities": list(job.communities),
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
