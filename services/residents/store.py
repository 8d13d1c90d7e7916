"""Every database access of the residents service's use cases: the repository of cosmicpython.

``ResidentsStore`` is handed to the use cases as the outbox is (the service holds it as a dependency,
``Store``); the use cases in ``registry``, ``identity``, ``imports``, ``reminders`` and ``ingest`` call
it and nothing else of the database, so they run against an in-memory fake in a unit test. Writes
take the ``session`` of the transaction they belong to (the outbox's ``transaction(work)``: the
unit of work). Each method is the query or write the use case made before it had a store, one
for one: a use case costs the database the same commands.
"""
from __future__ import annotations

from bson import ObjectId
from bson.errors import InvalidId
from mongoengine.queryset.visitor import Q
from nameko.extensions import DependencyProvider

from services.common.outbox import insert_document, save_changes
from services.residents.domain import IDENTITY_RULES
from services.residents.documents import ContactAccess, ImportJob, ImportRow, PermitReminder, ReminderRun, Resident
from services.residents.name_folding import fold

ROWS_PER_INSERT = 5000  # a form's rows stored a chunk a command
# What the same-person rule reads of a resident who shares an identity key (``identity.same_person``).
IDENTITY_FIELDS = {"community_id": 1, "status": 1, "erased_at": 1, "former_identity": 1,
                   **dict.fromkeys(IDENTITY_RULES, 1)}


class ResidentsStore:
    """Residents (``Resident``; new ones as plain records, ``registry.to_record``), the audit of who read
    their contact details, permit reminders, and collection-form imports."""

    # -- residents ---------------------------------------------------------------------------

    def resident(self, resident_id: str) -> Resident | None:
        try:
            return Resident.objects(id=ObjectId(resident_id)).first()
        except (InvalidId, TypeError):
            return None

    def residents(self, resident_ids: list[str]) -> list[Resident]:
        """Those of ``resident_ids`` (valid ObjectIds or not) the registry holds, in one round trip."""
        wanted = [ObjectId(i) for i in resident_ids if ObjectId.is_valid(i)]
        return Resident.objects(id__in=wanted).batch_size(len(wanted) + 1) if wanted else []

    def add(self, record: dict, session=None) -> None:
        """A new resident; ``record`` gets its ``_id``. ``DuplicateKeyError``: an active resident holds
        one of its identity keys (the unique indexes)."""
        Resident._get_collection().insert_one(record, session=session)

    def add_many(self, records: list[dict], session=None) -> None:
        """New residents (each with its ``_id``), in one write."""
        Resident._get_collection().insert_many(records, session=session)

    def save(self, resident: Resident, session=None) -> None:
        """A loaded resident's changed fields. ``DuplicateKeyError`` as ``add``."""
        save_changes(resident, session)

    def holding(self, key: str, values: list[str], session=None):
        """Residents whose identity key ``key`` is one of ``values`` (``IDENTITY_FIELDS`` of each)."""
        return Resident._get_collection().find({key: {"$in": values}}, IDENTITY_FIELDS, session=session)

    def formerly_holding(self, former_keys: list[str], session=None):
        """Departed residents whose ``former_identity`` holds one of ``former_keys``."""
        return Resident._get_collection().find({"former_identity": {"$in": former_keys}}, IDENTITY_FIELDS,
                                               session=session)

    def search(self, query: dict) -> tuple[int, list[Resident]]:
        """A page of a community's residents (``domain.SearchResidents``) by romanised name, and how many match."""
        filters = Q(community_id=query["community_id"])
        for field in ("grid_id", "household_id", "nationality", "residence_type"):
            if query.get(field):
                filters &= Q(**{field: query[field]})
        if query.get("tag"):
            filters &= Q(tags__all=query["tag"])
        if query["status"] != "all":
            filters &= Q(status=query["status"])
        if query.get("name"):
            filters &= Q(name_search__contains=fold(" ".join(query["name"].split())))
        matches = Resident.objects(filters).order_by("name_romanised", "id")
        total = matches.count()
        start = (query["page"] - 1) * query["page_size"]
        return total, matches.skip(start).limit(query["page_size"])

    def household(self, community_id: str, household_id: str):
        """A household's active members, eldest first."""
        members = Resident.objects(community_id=community_id, household_id=household_id, status="active")
        return members.order_by("birth_date")

    def permits_expiring(self, start, end):
        """Active, not erased residents whose permit expires between ``start`` and ``end`` (both included)."""
        return Resident.objects(
            status="active", erased_at=None, permit_expires_on__gte=start, permit_expires_on__lte=end
        ).only("id", "community_id", "permit_type", "permit_expires_on")

    # -- who read whose contact details --------------------------------------------------------

    def audit(self, access: dict) -> None:
        """One ``ContactAccess`` (its fields as keyword arguments)."""
        ContactAccess(**access).save()

    def audit_many(self, accesses: list[dict]) -> None:
        ContactAccess.objects.insert([ContactAccess(**access) for access in accesses], load_bulk=False)

    # -- permit reminders --------------------------------------------------------------------

    def reminder_sent(self, reminder_id: str) -> bool:
        return PermitReminder.objects(id=reminder_id).first() is not None

    def add_reminder(self, reminder: dict, session=None) -> None:
        """That a reminder went out (``PermitReminder``'s fields); ``DuplicateKeyError`` if it had."""
        insert_document(PermitReminder(**reminder), session)

    def daily_run_done(self, day: str) -> bool:
        return ReminderRun.objects(id=day).first() is not None

    def record_daily_run(self, day: str, sent: int) -> None:
        ReminderRun(id=day, sent=sent).save()

    def last_daily_run(self) -> ReminderRun | None:
        return ReminderRun.objects.order_by("-at").first()

    # -- collection-form imports -------------------------------------------------------------

    def import_job(self, job_id: str) -> ImportJob | None:
        return ImportJob.objects(id=job_id).first()

    def import_of(self, content_sha256: str) -> ImportJob | None:
        """The import of the file with this digest, if it was sent before."""
        return ImportJob.objects(content_sha256=content_sha256).first()

    def add_import(self, job: ImportJob, rows: list[dict]) -> None:
        """A new job (it gets its id) and its rows (``ImportRow``'s fields, without the job's id)."""
        job.save()
        collection = ImportRow._get_collection()
        for start in range(0, len(rows), ROWS_PER_INSERT):
            collection.insert_many([{"import_id": str(job.id), **row} for row in rows[start:start + ROWS_PER_INSERT]],
                                   ordered=False)

    def start_import(self, job_id: str) -> None:
        ImportJob.objects(id=job_id).update_one(set__status="running")

    def import_rows(self, job_id: str, after_row: int, limit: int) -> list[dict]:
        """The next ``limit`` rows of the form (``ImportRow`` as stored) after ``after_row``, in one command."""
        found = ImportRow._get_collection().find({"import_id": job_id, "row": {"$gt": after_row}}).sort("row", 1)
        return list(found.limit(limit).batch_size(limit))

    def drop_import_rows(self, job_id: str) -> None:
        ImportRow._get_collection().delete_many({"import_id": job_id})

    def record_batch(self, job_id: str, after_row: int, last_row: int, counts: dict, errors: list[dict],
                     notes: list[str], keep_at_most: int, session=None) -> bool:
        """A batch's progress: ``counts`` added (``rows_done``, ``registered``…), the job's cursor moved from
        ``after_row`` to ``last_row``, ``errors`` and ``notes`` kept up to ``keep_at_most`` each. False if the
        cursor was not at ``after_row`` any more (another worker recorded this batch first)."""
        jobs = ImportJob._get_collection()
        update = {"$inc": counts, "$set": {"last_row": last_row}}
        if errors or notes:
            job = jobs.find_one({"_id": ObjectId(job_id)}, {"errors": 1, "notes": 1}, session=session)
            pushes = {}
            for field, items in (("errors", errors), ("notes", notes)):
                room = keep_at_most - len(job.get(field) or [])
                if items and room > 0:
                    pushes[field] = {"$each": items[:room]}
            if pushes:
                update["$push"] = pushes
        return bool(jobs.update_one({"_id": ObjectId(job_id), "last_row": after_row}, update,
                                    session=session).matched_count)

    def complete_import(self, job_id: str, finished_at, session=None) -> dict:
        """The job marked completed; returns it as stored."""
        jobs = ImportJob._get_collection()
        jobs.update_one({"_id": ObjectId(job_id)}, {"$set": {"status": "completed", "finished_at": finished_at}},
                        session=session)
        return jobs.find_one({"_id": ObjectId(job_id)}, session=session)

    def reload(self, job: ImportJob) -> ImportJob:
        job.reload()
        return job

    def imports_by_status(self) -> dict[str, dict]:
        """``{status: {"jobs", "rows_total", "rows_done"}}`` of every import, in one aggregation."""
        return {g["_id"]: g for g in ImportJob._get_collection().aggregate([
            {"$group": {"_id": "$status", "jobs": {"$sum": 1}, "rows_total": {"$sum": "$rows_total"},
                        "rows_done": {"$sum": "$rows_done"}}}])}


class Store(DependencyProvider):
    """The service's ``ResidentsStore`` for each worker (it holds no state: the documents' alias is the
    connection ``MongoDatabase`` made)."""

    def setup(self):
        self.store = ResidentsStore()

    def get_dependency(self, worker_ctx):
        return self.store
