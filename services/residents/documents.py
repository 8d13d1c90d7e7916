"""How residents are stored (mongoengine, database alias ``residents``)."""
from datetime import datetime, timezone

from mongoengine import DateField, DateTimeField, Document, ListField, StringField


def _now():
    return datetime.now(timezone.utc)


class Resident(Document):
    meta = {
        "db_alias": "residents",
        "collection": "residents",
        "indexes": ["community_id", ("community_id", "residence_type")],
    }

    community_id = StringField(required=True)
    grid_id = StringField()
    household_id = StringField()
    name = StringField(required=True)
    gender = StringField(default="unspecified")
    birth_date = DateField()
    phone = StringField()
    residence_type = StringField(required=True)
    nationality = StringField(required=True)
    preferred_language = StringField(required=True)
    tags = ListField(StringField())
    registered_at = DateTimeField(default=_now)

    def to_view(self) -> dict:
        return {
            "id": str(self.id),
            "community_id": self.community_id,
            "grid_id": self.grid_id,
            "household_id": self.household_id,
            "name": self.name,
            "gender": self.gender,
            "birth_date": self.birth_date.isoformat() if self.birth_date else None,
            "phone": self.phone,
            "residence_type": self.residence_type,
            "nationality": self.nationality,
            "preferred_language": self.preferred_language,
            "tags": list(self.tags),
            "registered_at": self.registered_at.isoformat() if self.registered_at else None,
        }
