"""``resident.form_submitted``: one row of the collection form, sent by an internal system, into the registry.

The row is read as ``forms`` reads a form's rows (Chinese or English headers,
Chinese values translated), registered in one transaction with the record that
this message was ingested and the ``resident.registered`` envelope (the outbox),
which is published after the commit. The same person already in the same community is ``already_registered``;
anything else that cannot be registered is rejected with every reason.
"""
from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from services.common.ingest import IngestRejected, error, once
from services.residents import forms, registry
from services.residents.documents import Resident

_COLUMN_OF = {alias.strip().lower(): column for column, aliases in forms.HEADERS.items() for alias in aliases}


def row_command(community_id: str, row: dict) -> dict:
    """The ``RegisterResident`` command of a submitted row, or ``IngestRejected`` naming every bad column.
    Pure; the row's values are never quoted for personal columns (``forms`` decides)."""
    raw, header_of, errors = {}, {}, []
    for header, value in row.items():
        column = _COLUMN_OF.get(header.strip().lower())
        if column is None:
            errors.append(error("unknown_column", f"data.row.{header}", "not a column of the collection form"))
        elif column in raw:
            errors.append(error("repeated_column", f"data.row.{header}", f"{column} is given twice"))
        else:
            raw[column], header_of[column] = value or "", header
    named = raw.get("community_id", "").strip()
    if named and named != community_id:
        errors.append(error("community_mismatch", f"data.row.{header_of['community_id']}",
                            f"the row names community {named[:64]!r}, the message {community_id!r}"))
    raw["community_id"] = community_id
    command, row_errors = forms.to_command(1, raw)
    errors += [error("invalid_row", f"data.row.{header_of.get(e.column, e.column)}", e.reason) for e in row_errors]
    if errors:
        raise IngestRejected(errors)
    return command


def submit_form_row(database, vault, stage, envelope) -> dict:
    """Register the row's resident once per message; returns the ``ingest.accepted`` outcome.
    ``stage``: the outbox; a redelivery after a crash finds the announcement already there."""
    command = row_command(envelope.data["community_id"], envelope.data["row"])
    record = registry.to_record(vault, command)
    residents = Resident._get_collection()

    def register(session):
        residents.insert_one(record, session=session)
        registry.announce_registered(stage.publisher(session), record)
        return {"outcome": "registered", "resident_id": str(record["_id"])}

    try:
        result, _ = once(database, envelope, register)
    except DuplicateKeyError:  # the same person is in the registry already
        existing = _same_person(record)
        result, _ = once(database, envelope, lambda session: _already_registered(existing, command))
    stage.flush()
    return result


def _same_person(record: dict) -> dict | None:
    for key in ("document_key", "person_key"):
        if record.get(key):
            found = Resident._get_collection().find_one({key: record[key]}, {"community_id": 1, "status": 1})
            if found is not None:
                return found
    return None


def _already_registered(existing: dict | None, command: dict) -> dict:
    if existing is None:
        raise IngestRejected([error("duplicate_resident", "data.row", "the registry refused the row as a "
                                                                      "duplicate, but no duplicate can be found")])
    if existing["community_id"] != command["community_id"] or existing.get("status") != "active":
        raise IngestRejected([error(
            "duplicate_resident", "data.row",
            f"this person is registered as resident {existing['_id']} ({existing.get('status')}, in another "
            "community or departed); move or re-register them through the registry, not the ingest door")])
    return {"outcome": "already_registered", "resident_id": str(existing["_id"])}
