"""The registry's use cases: what happens to the store and the bus for each command.

Entrypoints translate a request into one of these calls; this module knows the
service's store (``store.ResidentsStore``) and the outbox it is handed (``stage``),
not the database, HTTP or nameko.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

from pymongo.errors import DuplicateKeyError

from contracts import (
    RESIDENT_DEPARTED,
    RESIDENT_ERASED,
    RESIDENT_MOVED,
    RESIDENT_REGISTERED,
    RESIDENT_UPDATED,
)
from contracts.feeds import PARTNER_PERSONAL_FIELDS
from services.common.messaging import fact_id
from services.common.web import ApiError, NotFound
from services.residents import domain, identity
from services.residents.documents import Resident
from services.residents.privacy import Vault, mask
from services.residents.store import ResidentsStore


class ResidentGone(ApiError):
    status = 409
    code = "resident_departed"


def find(store: ResidentsStore, resident_id: str) -> Resident:
    resident = store.resident(resident_id)
    if resident is None:
        raise NotFound(f"no resident with id {resident_id}")
    return resident


def to_record(vault: Vault, command: dict, import_id: str | None = None) -> dict:
    """A ``RegisterResident`` command as the document stored: the document number
    encrypted, identity keys and romanised name added. Plain pymongo types, so a
    form's thousands of rows go to ``insert_many`` without a mongoengine object each."""
    record = {k: v for k, v in command.items() if k != "document_number" and v is not None}
    for field in ("birth_date", "permit_expires_on"):
        if isinstance(record.get(field), date):
            record[field] = datetime(record[field].year, record[field].month, record[field].day)
    record.update({k: v for k, v in identity.identity_keys(vault, command).items() if v})
    if command.get("document_number"):
        record["document_cipher"] = vault.encrypt(command["document_number"])
    record["name_romanised"] = domain.romanise(command["name"])
    record["name_search"] = domain.search_text(command["name"])
    if command.get("birth_date"):
        record["birth_year"] = command["birth_date"].year
    now = datetime.now(timezone.utc)
    record.update(status="active", registered_at=now, updated_at=now)
    if import_id:
        record["import_id"] = import_id
    return record


def register(store: ResidentsStore, vault: Vault, stage, command: dict) -> str:
    """Store the resident and its ``resident.registered`` in one transaction (``stage``: the outbox),
    or ``SamePersonConflict`` (409) as the same-person rule says."""
    record = to_record(vault, command)
    identity.admit(store, record)

    def write(session, publish):
        store.add(record, session=session)
        announce_registered(publish, record)

    try:
        stage.transaction(write)  # committed, then published before the caller hears the id
    except DuplicateKeyError:  # registered by someone else between the look-up and the insert
        record.pop("_id", None)
        raise identity.SamePersonConflict(identity.refused(store, record)) from None
    return str(record["_id"])


def announce_registered(publish, record: dict) -> None:
    resident_id = str(record["_id"])
    publish(
        RESIDENT_REGISTERED,
        domain.facts(resident_id, record),
        subject=resident_id,
        community=record["community_id"],
        message_id=fact_id("resident.registered", resident_id),
    )


def announce_all_registered(stage, session, records: list[dict]) -> None:
    """``resident.registered`` for each new record, staged in one write (their ids are new)."""
    messages = []
    for record in records:
        announce_registered(lambda message_type, data, **kwargs: messages.append((message_type, data, kwargs)),
                            record)
    stage.stage_many(session, messages)


def _as_command(resident: Resident, vault: Vault) -> dict:
    current = {f: getattr(resident, f) for f in domain.ResidentFields().fields if f != "document_number"}
    current["community_id"] = resident.community_id
    current["document_number"] = vault.decrypt(resident.document_cipher)
    return current


def update(store: ResidentsStore, vault: Vault, stage, resident: Resident, changes: dict) -> list[str]:
    _require_active(resident)
    current = _as_command(resident, vault)
    if "consent" in changes:  # a partial consent changes only the channels it names
        changes = {**changes, "consent": {**(current.get("consent") or {}), **changes["consent"]}}
    changed = {k: v for k, v in changes.items() if current.get(k) != v}
    if not changed:
        return []
    after = {**current, **changed}
    domain.check_consistency(after)  # ValidationError -> 400 at the entrypoint
    for field, value in changed.items():
        if field != "document_number":
            setattr(resident, field, value)
    resident.document_cipher = vault.encrypt(after.get("document_number"))
    for key, value in identity.identity_keys(vault, after).items():
        setattr(resident, key, value)
    resident.name_romanised = domain.romanise(after["name"])
    resident.name_search = domain.search_text(after["name"])
    resident.birth_year = after["birth_date"].year if after.get("birth_date") else None
    resident.updated_at = datetime.now(timezone.utc)
    resident_id = str(resident.id)

    def write(session, publish):
        store.save(resident, session)
        publish(RESIDENT_UPDATED, domain.update_facts(resident_id, resident.community_id, changed),
                subject=resident_id, community=resident.community_id)

    try:
        stage.transaction(write)
    except DuplicateKeyError:
        keys = {"community_id": resident.community_id, **identity.identity_keys(vault, after)}
        raise identity.SamePersonConflict(identity.refused(store, keys, excluding=resident_id)) from None
    return sorted(changed)


def move(store: ResidentsStore, vault: Vault, stage, resident: Resident, command: dict) -> None:
    _require_active(resident)
    from_community = resident.community_id
    if command["community_id"] == from_community:
        raise ApiError(f"the resident already lives in {from_community}", code="same_community")
    resident.community_id = command["community_id"]
    resident.grid_id = command["grid_id"]
    resident.household_id = command["household_id"]
    keys = identity.identity_keys(vault, _as_command(resident, vault))
    resident.person_key = keys["person_key"]
    resident.updated_at = datetime.now(timezone.utc)
    resident_id = str(resident.id)

    def write(session, publish):
        store.save(resident, session)
        publish(
            RESIDENT_MOVED,
            {"resident_id": resident_id, "community_id": resident.community_id, "from_community_id": from_community,
             "grid_id": resident.grid_id, "residence_type": resident.residence_type,
             "moved_on": command["moved_on"]},
            subject=resident_id, community=resident.community_id,
        )

    try:
        stage.transaction(write)
    except DuplicateKeyError:
        keys = {"community_id": resident.community_id, **keys}
        raise identity.SamePersonConflict(identity.refused(store, keys, excluding=resident_id)) from None


def depart(store: ResidentsStore, stage, resident: Resident, command: dict) -> None:
    _require_active(resident)
    resident.status = "departed"
    identity.retire(resident)
    resident.departure_reason = command["reason"]
    resident.departed_on = command["departed_on"]
    resident.updated_at = datetime.now(timezone.utc)
    resident_id = str(resident.id)

    def write(session, publish):
        store.save(resident, session)
        publish(
            RESIDENT_DEPARTED,
            {"resident_id": resident_id, "community_id": resident.community_id,
             "residence_type": resident.residence_type, "reason": command["reason"],
             "departed_on": command["departed_on"]},
            subject=resident_id, community=resident.community_id,
            message_id=fact_id("resident.departed", resident_id),
        )

    stage.transaction(write)


def erase(store: ResidentsStore, stage, resident: Resident) -> None:
    """Erase personal data; the id, community and categories stay for statistics."""
    erasing = resident.erased_at is None
    if erasing:
        for field in domain.ERASABLE_FIELDS:
            setattr(resident, field, None)
        resident.consent = {}
        resident.erased_at = datetime.now(timezone.utc)
    resident_id = str(resident.id)

    def write(session, publish):
        if erasing:
            store.save(resident, session)
        publish(
            RESIDENT_ERASED,
            {"resident_id": resident_id, "community_id": resident.community_id,
             "erased_on": resident.erased_at.date()},
            subject=resident_id, community=resident.community_id,
            message_id=fact_id("resident.erased", resident_id),
        )

    stage.transaction(write)


def _require_active(resident: Resident) -> None:
    if resident.status != "active":
        raise ResidentGone(f"resident {resident.id} has departed; register them again if they return")
    if resident.erased_at is not None:
        raise ResidentGone(f"resident {resident.id}'s personal data was erased")


def view(vault: Vault, resident: Resident, with_pii: bool, personal: bool = True) -> dict:
    """The resident; the document number masked unless ``with_pii``; without ``personal`` fields
    (``domain.PERSONAL_VIEW_FIELDS``) for an RPC reply."""
    full = _full_view(vault, resident, with_pii)
    return full if personal else {k: v for k, v in full.items() if k not in domain.PERSONAL_VIEW_FIELDS}


def _full_view(vault: Vault, resident: Resident, with_pii: bool) -> dict:
    document_number = vault.decrypt(resident.document_cipher)
    return {
        "id": str(resident.id),
        "community_id": resident.community_id,
        "grid_id": resident.grid_id,
        "household_id": resident.household_id,
        "name": resident.name,
        "name_romanised": resident.name_romanised,
        "gender": resident.gender,
        "birth_date": resident.birth_date.isoformat() if resident.birth_date else None,
        "phone": resident.phone,
        "email": resident.email,
        "residence_type": resident.residence_type,
        "nationality": resident.nationality,
        "preferred_language": resident.preferred_language,
        "tags": list(resident.tags),
        "consent": dict(resident.consent or {}),
        "document_type": resident.document_type,
        "document_number": document_number if with_pii else mask(document_number),
        "permit_type": resident.permit_type,
        "permit_expires_on": resident.permit_expires_on.isoformat() if resident.permit_expires_on else None,
        "status": resident.status,
        "departure_reason": resident.departure_reason,
        "departed_on": resident.departed_on.isoformat() if resident.departed_on else None,
        "erased": resident.erased_at is not None,
        "registered_at": resident.registered_at.isoformat(),
        "previous_id": resident.previous_id,
    }


def search(store: ResidentsStore, vault: Vault, query: dict, with_pii: bool, personal: bool = True) -> dict:
    total, matches = store.search(query)
    items = [view(vault, r, with_pii, personal) for r in matches]
    return {"total": total, "page": query["page"], "page_size": query["page_size"], "items": items}


def household(store: ResidentsStore, vault: Vault, community_id: str, household_id: str, with_pii: bool,
              personal: bool = True) -> dict:
    items = [view(vault, r, with_pii, personal) for r in store.household(community_id, household_id)]
    if not items:
        raise NotFound(f"no household {household_id!r} in community {community_id!r}")
    return {"community_id": community_id, "household_id": household_id, "members": items}


class UnknownPurpose(ApiError):
    code = "unknown_purpose"


PARTNER_FEED_PURPOSE = "partner_feed"


def membership(resident: Resident) -> dict:
    return {"id": str(resident.id), "community_id": resident.community_id, "status": resident.status,
            "residence_type": resident.residence_type, "tags": list(resident.tags or [])}


def contact(store: ResidentsStore, vault: Vault, resident_id: str, purpose: str, caller: str, seal_for) -> dict:
    """Only the fields ``purpose`` needs, sealed for the purpose's reader (``seal_for(purpose, fields)``,
    see ``services.common.sealing``), and an audit record that they were read."""
    if purpose not in domain.CONTACT_PURPOSES:
        store.audit(dict(resident_id=resident_id, purpose=purpose, caller=caller, granted=False))
        raise UnknownPurpose(f"no such purpose: {purpose!r}; known: {sorted(domain.CONTACT_PURPOSES)}")
    resident = find(store, resident_id)
    fields = domain.CONTACT_PURPOSES[purpose]
    store.audit(dict(resident_id=resident_id, purpose=purpose, caller=caller, fields=list(fields)))
    return _sealed_contact(vault, resident, purpose, seal_for)


def contacts(store: ResidentsStore, vault: Vault, resident_ids: list, purpose: str, caller: str,
             seal_for) -> list[dict]:
    """``contact`` of many residents: one read, one write of the audit records, each answer sealed
    alike. Residents the registry does not know are left out of the answer."""
    resident_ids = list(dict.fromkeys(str(i) for i in resident_ids))
    granted = purpose in domain.CONTACT_PURPOSES
    fields = list(domain.CONTACT_PURPOSES.get(purpose, ()))
    if resident_ids:
        store.audit_many([dict(resident_id=i, purpose=purpose, caller=caller, granted=granted, fields=fields)
                          for i in resident_ids])
    if not granted:
        raise UnknownPurpose(f"no such purpose: {purpose!r}; known: {sorted(domain.CONTACT_PURPOSES)}")
    return [_sealed_contact(vault, resident, purpose, seal_for) for resident in store.residents(resident_ids)]


def _sealed_contact(vault: Vault, resident: Resident, purpose: str, seal_for) -> dict:
    resident_id = str(resident.id)
    if resident.erased_at is not None or resident.status != "active":
        return {"resident_id": resident_id, "reachable": False}
    full = view(vault, resident, with_pii=True)
    fields = domain.CONTACT_PURPOSES[purpose]
    return {"resident_id": resident_id, "reachable": True, **seal_for(purpose, {f: full[f] for f in fields})}


def partner_fields(store: ResidentsStore, vault: Vault, resident_id: str, partner_id: str, fields: list, caller: str,
                   seal_for) -> dict:
    """The personal fields a partner's feed carries (only those ``contracts.feeds`` allows a partner
    to be entitled to; the partners service checks the partner's own scope), audited with
    the partner as the reader, sealed for the service that delivers feeds. An erased resident gives none."""
    outside = sorted(set(fields) - PARTNER_PERSONAL_FIELDS)
    store.audit(dict(resident_id=resident_id, purpose=PARTNER_FEED_PURPOSE, caller=f"partner:{partner_id} via {caller}",
                     fields=list(fields), granted=not outside))
    if outside:
        raise ApiError(f"not fields a partner may receive: {outside}", code="not_partner_fields")
    resident = find(store, resident_id)
    if resident.erased_at is not None:
        return {"resident_id": resident_id, "available": False}
    full = view(vault, resident, with_pii=True)
    return {"resident_id": resident_id, "available": True,
            **seal_for(PARTNER_FEED_PURPOSE, {f: full[f] for f in fields})}


