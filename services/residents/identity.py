"""Who is the same person: the registry's look-ups for ``domain.same_person``, and the 409 it gives.

Only an active resident holds the identity keys (``document_key``, ``person_key``: keyed hashes under
unique indexes); a departure moves them to ``former_identity``, an erasure removes them. So the unique
indexes refuse a second active record, and a look-up here tells the rest: who is active where, and who
departed with the same identity.
"""
from __future__ import annotations

from bson import ObjectId

from services.common.web import Conflict
from services.residents import domain
from services.residents.documents import Resident, former_key
from services.residents.privacy import Vault
from services.residents.store import ResidentsStore


class SamePersonConflict(Conflict):
    """409 for a registration the same-person rule refuses: ``already_registered`` or ``registered_elsewhere``."""

    def __init__(self, verdict: domain.SamePerson):
        super().__init__(verdict.message, verdict.details)
        self.code = verdict.verdict
        self.existing_id = verdict.existing_id
        self.verdict = verdict

    def seen_from(self, may_see) -> "SamePersonConflict":
        """This 409 as a token that reaches only ``may_see``'s communities may read it."""
        return SamePersonConflict(self.verdict.seen_from(may_see))


IDENTITY_KEYS = tuple(domain.IDENTITY_RULES)


def identity_keys(vault: Vault, resident: dict) -> dict:
    keys = {"document_key": None, "person_key": None}
    if resident.get("document_type") and resident.get("document_number"):
        keys["document_key"] = vault.lookup_hash("doc", resident["document_type"], resident["document_number"])
    if resident.get("name") and resident.get("birth_date") and resident.get("phone"):
        keys["person_key"] = vault.lookup_hash(
            "person", resident["community_id"], resident["name"], resident["birth_date"].isoformat(),
            "".join(ch for ch in resident["phone"] if ch.isdigit()),
        )
    return keys


def same_person(store: ResidentsStore, records: list[dict], session=None,
                excluding: str | None = None) -> list[domain.SamePerson]:
    """The same-person verdict for each record (``to_record``'s shape), in one look-up per identity key
    and one for departed residents' former keys, whatever the number of records: a form's batch costs
    what one registration does (one ``$in`` per key: an ``$or`` of them scans the whole collection on
    SecantusDB, 26 s at 5,000). Only active residents hold ``document_key``/``person_key`` (a departure
    moves them to ``former_identity``, an erasure drops both), which is what lets a departed person
    register again while the unique indexes still refuse a second active record. ``excluding``: a resident
    being updated, who shares keys with themself."""
    matches: dict[str, list[domain.Match]] = {}
    for key, rule in domain.IDENTITY_RULES.items():
        wanted = sorted({record[key] for record in records if record.get(key)})
        if wanted:
            for found in store.holding(key, wanted, session):
                matches.setdefault(found[key], []).append(_match(found, rule))
    former = sorted({former_key(key, record[key]) for record in records for key in IDENTITY_KEYS if record.get(key)})
    if former:
        for found in store.formerly_holding(former, session):
            for value in set(found["former_identity"]) & set(former):
                key, _, hashed = value.partition(":")
                matches.setdefault(hashed, []).append(_match(found, domain.IDENTITY_RULES[key]))
    return [domain.same_person(record["community_id"], [
        m for key in IDENTITY_KEYS if record.get(key) for m in matches.get(record[key], []) if m.id != excluding])
        for record in records]


def admit_many(store: ResidentsStore, records: list[dict], session=None) -> list[domain.SamePerson]:
    """The verdict of each record of a batch (a form's chunk, a batch of ingested rows), in order:
    against who is stored (``same_person``: one look-up per key for the whole batch) and against the
    batch's earlier records, so a person twice in it is judged against the record admitted first.
    An admitted record gets its ``_id`` (a later twin names it) and its ``previous_id``."""
    admitted: dict[str, dict[str, dict]] = {key: {} for key in IDENTITY_KEYS}  # key -> value -> record
    verdicts = []
    for record, verdict in zip(records, same_person(store, records, session)):
        twins = [domain.Match(str(admitted[key][record[key]]["_id"]), admitted[key][record[key]]["community_id"],
                              "active", domain.IDENTITY_RULES[key])
                 for key in IDENTITY_KEYS if record.get(key) in admitted[key]]
        if verdict.is_new and twins:
            verdict = domain.same_person(record["community_id"], twins)
        if verdict.is_new:
            record["_id"] = ObjectId()
            record.pop("previous_id", None)
            if verdict.previous_id:
                record["previous_id"] = verdict.previous_id
            for key in IDENTITY_KEYS:
                if record.get(key):
                    admitted[key][record[key]] = record
        verdicts.append(verdict)
    return verdicts


def _match(found: dict, rule: str) -> domain.Match:
    return domain.Match(str(found["_id"]), found["community_id"], found.get("status", "active"), rule,
                        erased=found.get("erased_at") is not None)


def admit(store: ResidentsStore, record: dict) -> domain.SamePerson:
    """The record's verdict; a new one is linked to its earlier, departed record, any other refused (409)."""
    verdict = same_person(store, [record])[0]
    if not verdict.is_new:
        raise SamePersonConflict(verdict)
    if verdict.previous_id:
        record["previous_id"] = verdict.previous_id
    return verdict


def refused(store: ResidentsStore, record: dict, excluding: str | None = None) -> domain.SamePerson:
    """The verdict after a unique index refused ``record``: the index saw an active holder."""
    verdict = same_person(store, [record], excluding=excluding)[0]
    if verdict.is_new:
        raise RuntimeError("a unique index refused a resident, but no active holder of its keys can be found")
    return verdict


def retire(resident: Resident) -> None:
    """A departing resident's identity keys leave with them (saved in the departure's transaction):
    the unique indexes hold active residents only, so one who returns registers again, linked to
    this record through ``former_identity``."""
    resident.former_identity = [former_key(k, getattr(resident, k)) for k in IDENTITY_KEYS if getattr(resident, k)]
    resident.document_key = resident.person_key = None
