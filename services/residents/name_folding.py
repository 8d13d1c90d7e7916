"""Accent folding for name search: ``Zoë`` is found as ``zoe``, ``José`` as ``jose``, ``Müller`` as ``muller``.

Both sides fold: the search text stored with each resident (``domain.search_text``) and the
name searched for. Residents stored before folding existed are rewritten once by
``services.residents.migrations``.
"""
from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Lower-cased, compatibility-decomposed (NFKD) and without combining marks: ``Zoë`` -> ``zoe``.
    Han characters have no combining marks and pass unchanged."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))
