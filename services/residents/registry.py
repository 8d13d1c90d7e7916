"""The registry's use cases: what happens to the store and the bus for each command.

Entrypoints translate a request into one of these calls; this module knows
mongoengine and the publish function it is handed, not HTTP or nameko.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import DuplicateKeyError
from mongoengine.queryset.visitor import Q

from contracts import (
    RESIDENT_DEPARTED,
    RESIDENT_ERASED,
    RESIDENT_MOVED,
    RESIDENT_REGISTERED,
    RESIDENT_UPDATED,
)
from contracts.feeds import PARTNER_PERSONAL_FIELDS
from services.common.messaging import fact_id
from services.common.outbox import save_changes
from services.common.web import ApiError, Conflict, NotFound
from services.residents import domain
from services.residents.documents import ContactAccess, Resident, former_key
from services.residents.privacy import Vault, mask


class SamePersonConflict(Conflict):
    """409 for a registration the same-person rule refuses: ``already_registered`` or ``registered_elsewhere``."""

    def __init__(self, verdict: domain.SamePerson):
        super().__init__(verdict.message, verdict.details)
        self.code = verdict.verdict
        self.existing_id = verdict.existing_id


class ResidentGone(ApiError):
    status = 409
    code = "resident_departed"


def find(resident_id: str) -> Resident:
    try:
        resident = Resident.objects(id=ObjectId(resident_id)).first()
    except (InvalidId, TypeError):
        resident = None
    if resident is None:
        raise NotFound(f"no resident with id {resident_id}")
    return resident


IDENTITY_KEYS = tuple(domain.IDENTITY_RULES)


def _identity_keys(vault: Vault, resident: dict) -> dict:
    keys = {"document_key": None, "person_key": None}
    if resident.get("document_type") and resident.get("document_number"):
        keys["document_key"] = vault.lookup_hash("doc", resident["document_type"], resident["document_number"])
    if resident.get("name") and resident.get("birth_date") and resident.get("phone"):
        keys["person_key"] = vault.lookup_hash(
            "person", resident["community_id"], resident["name"], resident["birth_date"].isoformat(),
            "".join(ch for ch in resident["phone"] if ch.isdigit()),
        )
    return keys


def same_person(records: list[dict], session=None, excluding: str | None = None) -> list[domain.SamePerson]:
    """The same-person verdict for each record (``to_record``'s shape), in one look-up per identity key
    and one for departed residents' former keys, whatever the number of records: a form's batch costs
    what one registration does. Only active residents hold ``document_key``/``person_key`` (a departure
    moves them to ``former_identity``, an erasure drops both), which is what lets a departed person
    register again while the unique indexes still refuse a second active record. ``excluding``: a resident
    being updated, who shares keys with themself."""
    residents = Resident._get_collection()
    matches: dict[str, list[domain.Match]] = {}
    fields = {"community_id": 1, "status": 1, "erased_at": 1, "former_identity": 1, **dict.fromkeys(IDENTITY_KEYS, 1)}
    for key, rule in domain.IDENTITY_RULES.items():
        wanted = sorted({record[key] for record in records if record.get(key)})
        if wanted:
            for found in residents.find({key: {"$in": wanted}}, fields, session=session):
                matches.setdefault(found[key], []).append(_match(found, rule))
    former = sorted({former_key(key, record[key]) for record in records for key in IDENTITY_KEYS if record.get(key)})
    if former:
        for found in residents.find({"former_identity": {"$in": former}}, fields, session=session):
            for value in set(found["former_identity"]) & set(former):
                key, _, hashed = value.partition(":")
                matches.setdefault(hashed, []).append(_match(found, domain.IDENTITY_RULES[key]))
    return [domain.same_person(record["community_id"], [
        m for key in IDENTITY_KEYS if record.get(key) for m in matches.get(record[key], []) if m.id != excluding])
        for record in records]


def _match(found: dict, rule: str) -> domain.Match:
    return domain.Match(str(found["_id"]), found["community_id"], found.get("status", "active"), rule,
                        erased=found.get("erased_at") is not None)


def to_record(vault: Vault, command: dict, import_id: str | None = None) -> dict:
    """A ``RegisterResident`` command as the document stored: the document number
    encrypted, identity keys and romanised name added. Plain pymongo types, so a
    form's thousands of rows go to ``insert_many`` without a mongoengine object each."""
    record = {k: v for k, v in command.items() if k != "document_number" and v is not None}
    for field in ("birth_date", "permit_expires_on"):
        if isinstance(record.get(field), date):
            record[field] = datetime(record[field].year, record[field].month, record[field].day)
    record.update({k: v for k, v in _identity_keys(vault, command).items() if v})
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


def register(vault: Vault, stage, command: dict) -> str:
    """Store the resident and its ``resident.registered`` in one transaction (``stage``: the outbox),
    or ``SamePersonConflict`` (409) as the same-person rule says."""
    record = to_record(vault, command)
    admit(record)
    collection = Resident._get_collection()

    def store(session):
        collection.insert_one(record, session=session)
        announce_registered(lambda *args, **kwargs: stage(session, *args, **kwargs), record)

    try:
        with collection.database.client.start_session() as session:
            session.with_transaction(store)
    except DuplicateKeyError:  # registered by someone else between the look-up and the insert
        record.pop("_id", None)
        raise SamePersonConflict(refused(record)) from None
    stage.flush()  # committed: published before the caller hears the id
    return str(record["_id"])


def admit(record: dict) -> domain.SamePerson:
    """The record's verdict; a new one is linked to its earlier, departed record, any other refused (409)."""
    verdict = same_person([record])[0]
    if not verdict.is_new:
        raise SamePersonConflict(verdict)
    if verdict.previous_id:
        record["previous_id"] = verdict.previous_id
    return verdict


def refused(record: dict, excluding: str | None = None) -> domain.SamePerson:
    """The verdict after a unique index refused ``record``: the index saw an active holder."""
    verdict = same_person([record], excluding=excluding)[0]
    if verdict.is_new:
        raise RuntimeError("a unique index refused a resident, but no active holder of its keys can be found")
    return verdict


def announce_registered(publish, record: dict) -> None:
    resident_id = str(record["_id"])
    publish(
        RESIDENT_REGISTERED,
        domain.facts(resident_id, record),
        subject=resident_id,
        community=record["community_id"],
        message_id=fact_id("resident.registered", resident_id),
    )


def _as_command(resident: Resident, vault: Vault) -> dict:
    current = {f: getattr(resident, f) for f in domain.ResidentFields().fields if f != "document_number"}
    current["community_id"] = resident.community_id
    current["document_number"] = vault.decrypt(resident.document_cipher)
    return current


def update(vault: Vault, stage, resident: Resident, changes: dict) -> list[str]:
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
    for key, value in _identity_keys(vault, after).items():
        setattr(resident, key, value)
    resident.name_romanised = domain.romanise(after["name"])
    resident.name_search = domain.search_text(after["name"])
    resident.birth_year = after["birth_date"].year if after.get("birth_date") else None
    resident.updated_at = datetime.now(timezone.utc)
    resident_id = str(resident.id)

    def write(session, publish):
        save_changes(resident, session)
        publish(RESIDENT_UPDATED, domain.update_facts(resident_id, resident.community_id, changed),
                subject=resident_id, community=resident.community_id)

    try:
        stage.transaction(write)
    except DuplicateKeyError:
        raise SamePersonConflict(refused({"community_id": resident.community_id, **_identity_keys(vault, after)},
                                         excluding=resident_id)) from None
    return sorted(changed)


def move(vault: Vault, stage, resident: Resident, command: dict) -> None:
    _require_active(resident)
    from_community = resident.community_id
    if command["community_id"] == from_community:
        raise ApiError(f"the resident already lives in {from_community}", code="same_community")
    resident.community_id = command["community_id"]
    resident.grid_id = command["grid_id"]
    resident.household_id = command["household_id"]
    keys = _identity_keys(vault, _as_command(resident, vault))
    resident.person_key = keys["person_key"]
    resident.updated_at = datetime.now(timezone.utc)
    resident_id = str(resident.id)

    def write(session, publish):
        save_changes(resident, session)
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
        raise SamePersonConflict(refused({"community_id": resident.community_id, **keys},
                                         excluding=resident_id)) from None


def depart(stage, resident: Resident, command: dict) -> None:
    _require_active(resident)
    resident.status = "departed"
    # The identity keys leave with the person: a unique index holds active residents only, so one who
    # returns registers again (and is linked to this record through ``former_identity``).
    resident.former_identity = [former_key(k, getattr(resident, k)) for k in IDENTITY_KEYS if getattr(resident, k)]
    resident.document_key = resident.person_key = None
    resident.departure_reason = command["reason"]
    resident.departed_on = command["departed_on"]
    resident.updated_at = datetime.now(timezone.utc)
    resident_id = str(resident.id)

    def write(session, publish):
        save_changes(resident, session)
        publish(
            RESIDENT_DEPARTED,
            {"resident_id": resident_id, "community_id": resident.community_id,
             "residence_type": resident.residence_type, "reason": command["reason"],
             "departed_on": command["departed_on"]},
            subject=resident_id, community=resident.community_id,
            message_id=fact_id("resident.departed", resident_id),
        )

    stage.transaction(write)


def erase(stage, resident: Resident) -> None:
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
            save_changes(resident, session)
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


def view(vault: Vault, resident: Resident, with_pii: bool) -> dict:
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


def search(vault: Vault, query: dict, with_pii: bool) -> dict:
    filters = Q(community_id=query["community_id"])
    for field in ("grid_id", "household_id", "nationality", "residence_type"):
        if query.get(field):
            filters &= Q(**{field: query[field]})
    if query.get("tag"):
        filters &= Q(tags__all=query["tag"])
    if query["status"] != "all":
        filters &= Q(status=query["status"])
    if query.get("name"):
        filters &= Q(name_search__contains=" ".join(query["name"].lower().split()))
    matches = Resident.objects(filters).order_by("name_romanised", "id")
    total = matches.count()
    start = (query["page"] - 1) * query["page_size"]
    items = [view(vault, r, with_pii) for r in matches.skip(start).limit(query["page_size"])]
    return {"total": total, "page": query["page"], "page_size": query["page_size"], "items": items}


def household(vault: Vault, community_id: str, household_id: str, with_pii: bool) -> dict:
    members = Resident.objects(community_id=community_id, household_id=household_id, status="active")
    items = [view(vault, r, with_pii) for r in members.order_by("birth_date")]
    if not items:
        raise NotFound(f"no household {household_id!r} in community {community_id!r}")
    return {"community_id": community_id, "household_id": household_id, "members": items}


class UnknownPurpose(ApiError):
    code = "unknown_purpose"


PARTNER_FEED_PURPOSE = "partner_feed"


def membership(resident: Resident) -> dict:
    return {"id": str(resident.id), "community_id": resident.community_id, "status": resident.status,
            "residence_type": resident.residence_type, "tags": list(resident.tags or [])}


def contact(vault: Vault, resident_id: str, purpose: str, caller: str) -> dict:
    """Only the fields ``purpose`` needs, and an audit record that they were read."""
    if purpose not in domain.CONTACT_PURPOSES:
        ContactAccess(resident_id=resident_id, purpose=purpose, caller=caller, granted=False).save()
        raise UnknownPurpose(f"no such purpose: {purpose!r}; known: {sorted(domain.CONTACT_PURPOSES)}")
    resident = find(resident_id)
    fields = domain.CONTACT_PURPOSES[purpose]
    ContactAccess(resident_id=resident_id, purpose=purpose, caller=caller, fields=list(fields)).save()
    if resident.erased_at is not None or resident.status != "active":
        return {"resident_id": resident_id, "reachable": False}
    full = view(vault, resident, with_pii=True)
    return {"resident_id": resident_id, "reachable": True, **{f: full[f] for f in fields}}


def partner_fields(vault: Vault, resident_id: str, partner_id: str, fields: list, caller: str) -> dict:
    """The personal fields a partner's feed carries (only those ``contracts.feeds`` allows a partner
    to be entitled to; the notifications service checks the partner's own scope), audited with
    the partner as the reader. An erased resident gives none."""
    outside = sorted(set(fields) - PARTNER_PERSONAL_FIELDS)
    ContactAccess(resident_id=resident_id, purpose=PARTNER_FEED_PURPOSE, caller=f"partner:{partner_id} via {caller}",
                  fields=list(fields), granted=not outside).save()
    if outside:
        raise ApiError(f"not fields a partner may receive: {outside}", code="not_partner_fields")
    resident = find(resident_id)
    if resident.erased_at is not None:
        return {"resident_id": resident_id, "available": False}
    full = view(vault, resident, with_pii=True)
    return {"resident_id": resident_id, "available": True, **{f: full[f] for f in fields}}


def today_in(time_zone: str) -> date:
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(time_zone)).date()
