"""Is a message type's schema still compatible with the version consumers already rely on?

A published version may only gain optional fields. Breaking: a field removed,
a field's type or format changed, a field newly required, the allowed values
of a field changed. A breaking change must be a new version of the type.
Compares JSON Schema documents (as ``contracts.documents`` generates them).
"""
from __future__ import annotations

import json
from pathlib import Path


def _types(schema: dict) -> set:
    kind = schema.get("type")
    if kind is None:
        return set()
    return set(kind) if isinstance(kind, list) else {kind}


def breaking_changes(old: dict, new: dict, where: str = "data") -> list[str]:
    """Every breaking difference between two JSON Schemas of one message version."""
    problems = []
    old_types, new_types = _types(old), _types(new)
    if old_types and not old_types <= new_types:
        problems.append(f"{where}: type changed from {sorted(old_types)} to {sorted(new_types) or 'any'}")
    if old.get("format") != new.get("format"):
        problems.append(f"{where}: format changed from {old.get('format')} to {new.get('format')}")
    if "enum" in old and old.get("enum") != new.get("enum"):
        problems.append(f"{where}: allowed values changed from {old['enum']} to {new.get('enum')}")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_prop in old_props.items():
        if name not in new_props:
            problems.append(f"{where}.{name}: removed")
        else:
            problems += breaking_changes(old_prop, new_props[name], f"{where}.{name}")
    for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        problems.append(f"{where}.{name}: newly required")
    if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
        problems += breaking_changes(old["items"], new["items"], f"{where}[]")
    if isinstance(old.get("additionalProperties"), dict) and isinstance(new.get("additionalProperties"), dict):
        problems += breaking_changes(old["additionalProperties"], new["additionalProperties"], f"{where}{{}}")
    return problems


def check_directory(released: Path, current: Path) -> list[str]:
    """Every released schema file must still exist under ``current`` and be compatible with it."""
    problems = []
    for old_path in sorted(released.glob("*.json")):
        new_path = current / old_path.name
        name = old_path.stem
        if not new_path.exists():
            problems.append(f"{name}: a released version was removed")
            continue
        old, new = (json.loads(p.read_text(encoding="utf-8")) for p in (old_path, new_path))
        problems += [f"{name} {problem}" for problem in breaking_changes(old, new)]
    return problems
