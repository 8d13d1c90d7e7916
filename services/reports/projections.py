"""Projections the reports service keeps up to date from the messages it receives.

Each function takes the worker's ``Database`` and writes inside its session,
so the projection moves together with the record that the message was seen.
"""
from collections import Counter, defaultdict

HISTORY = "history"
COMMUNITY_SUMMARIES = "community_summaries"


def record(db, envelopes) -> None:
    """Append the messages to the history every projection can be rebuilt from."""
    db[HISTORY].insert_many(
        [
            {
                "_id": envelope.id,
                "type": envelope.type,
                "version": envelope.version,
                "time": envelope.time,
                "community": envelope.community,
                "data": envelope.data,
            }
            for envelope in envelopes
        ],
        session=db.session,
    )


def count_registered_residents(db, facts_list) -> None:
    """One update per community however many residents arrived together."""
    increments: dict[str, Counter] = defaultdict(Counter)
    for facts in facts_list:
        counts = increments[facts["community_id"]]
        counts["residents_total"] += 1
        counts[f"residents_by_residence_type.{facts['residence_type']}"] += 1
    for community_id, counts in increments.items():
        db[COMMUNITY_SUMMARIES].update_one(
            {"_id": community_id}, {"$inc": dict(counts)}, upsert=True, session=db.session
        )


def community_summary(db, community_id: str) -> dict | None:
    summary = db[COMMUNITY_SUMMARIES].find_one({"_id": community_id})
    if summary is None:
        return None
    return {
        "community_id": community_id,
        "residents_total": summary.get("residents_total", 0),
        "residents_by_residence_type": summary.get("residents_by_residence_type", {}),
    }
