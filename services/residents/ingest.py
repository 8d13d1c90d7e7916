"""``resident.form_submitted``: one row of the collection form, sent by an internal system, into the registry.

The row is read as ``forms`` reads a form's rows (Chinese or English headers,
Chinese values translated), registered in one transaction with the record that
this message was ingested and the ``resident.registered`` envelope (the outbox),
which is published after the commit: a batch of messages in one transaction. Who counts as the same person is ``domain.same_person``'s rule, as at
every door; anything else that cannot be registered is rejected with every reason.
"""
from __future__ import annotations

from services.common.ingest import IngestRejected, error, once_each
from services.residents import forms, identity, registry

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


def submit_form_rows(database, store, vault, stage, envelopes) -> list:
    """Register each row's resident once per message, a batch in one transaction; returns, for each
    envelope, its ``ingest.accepted`` outcome or the ``IngestRejected`` that parks it. ``database``: the
    service's (its records of what was ingested); ``store``: the ``ResidentsStore``; ``stage``: the
    outbox; a redelivery after a crash finds the announcements already there. The same-person rule
    decides (``domain.same_person``, with the batch's earlier rows as ``identity.admit_many`` judges
    them): the same person active in this community is ``already_registered`` with their id, active
    in another community ``registered_elsewhere`` (rejected: a move, not a registration), departed
    or erased registers anew."""
    def register(session, fresh):
        outcomes = [_record_of(vault, envelope) for envelope in fresh]
        candidates = [outcome for outcome in outcomes if isinstance(outcome, dict)]  # made anew each attempt
        verdicts = dict(zip(map(id, candidates), identity.admit_many(store, candidates, session)))
        admitted = [record for record in candidates if verdicts[id(record)].is_new]
        if admitted:
            store.add_many(admitted, session=session)
            registry.announce_all_registered(stage, session, admitted)
        return [_outcome(outcome, verdicts.get(id(outcome))) for outcome in outcomes]

    return once_each(database, envelopes, register,
                     transaction=lambda work: stage.transaction(lambda session, publish: work(session)))


def _record_of(vault, envelope):
    """The row's record to store, or the ``IngestRejected`` naming what is wrong with it."""
    try:
        return registry.to_record(vault, row_command(envelope.data["community_id"], envelope.data["row"]))
    except IngestRejected as rejected:
        return rejected


def _outcome(record, verdict):
    if isinstance(record, IngestRejected):
        return record
    if verdict.verdict == "already_registered":
        return {"outcome": "already_registered", "resident_id": verdict.existing_id}
    if not verdict.is_new:
        return IngestRejected([error(verdict.verdict, "data.row", verdict.message)])
    return {"outcome": "registered", "resident_id": str(record["_id"])}
