"""``resident.form_submitted``: one row of the collection form, sent by an internal system, into the registry.

The row is read as ``forms`` reads a form's rows (Chinese or English headers,
Chinese values translated), registered in one transaction with the record that
this message was ingested and the ``resident.registered`` envelope (the outbox),
which is published after the commit. Who counts as the same person is ``domain.same_person``'s rule, as at
every door; anything else that cannot be registered is rejected with every reason.
"""
from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from services.common.ingest import IngestRejected, error, once
from services.residents import forms, identity, registry
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
            errors.append(error("repeated_column", f"data.row.{header}", forms.repeated(column)))
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
    ``stage``: the outbox; a redelivery after a crash finds the announcement already there.
    The same-person rule decides (``domain.same_person``): the same person active in this community is
    ``already_registered`` with their id, active in another community ``registered_elsewhere`` (rejected:
    a move, not a registration), departed or erased registers anew."""
    command = row_command(envelope.data["community_id"], envelope.data["row"])
    record = registry.to_record(vault, command)
    residents = Resident._get_collection()

    def register(session):
        record.pop("_id", None)  # an aborted attempt's id
        verdict = identity.same_person([record], session)[0]
        if verdict.verdict == "already_registered":
            return {"outcome": "already_registered", "resident_id": verdict.existing_id}
        if not verdict.is_new:
            raise IngestRejected([error(verdict.verdict, "data.row", verdict.message)])
        if verdict.previous_id:
            record["previous_id"] = verdict.previous_id
        residents.insert_one(record, session=session)
        registry.announce_registered(stage.publisher(session), record)
        return {"outcome": "registered", "resident_id": str(record["_id"])}

    try:
        result, _ = once(database, envelope, register)
    except DuplicateKeyError:  # the same person, registered concurrently: the verdict sees them now
        result, _ = once(database, envelope, register)
    stage.flush()
    return result
