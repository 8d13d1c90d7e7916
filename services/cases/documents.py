"""How cases are stored: one document per case in the ``cases`` collection (pymongo, plain documents).

A case keeps its description, the reply and the reasons a resident gives here and nowhere else (free text
never goes on the bus). ``version`` grows with every step, so two actions racing on one case cannot both win.
"""
from pymongo import ASCENDING, DESCENDING

CASES = "cases"
# Likely duplicates at intake read the cases of one type submitted in the week before (duplicates.py).
BY_TYPE_AND_TIME = [("type_code", ASCENDING), ("submitted_at", DESCENDING)]


def ensure_indexes(database) -> None:
    """The indexes of the store's reads (``MongoDatabase``'s ``prepare``, before the first request)."""
    database[CASES].create_index(BY_TYPE_AND_TIME)
    database[CASES].create_index([("community_id", ASCENDING), ("submitted_at", DESCENDING)])
