"""What to tell a resident, in which language. Pure Python."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

TEMPLATES = Path(__file__).parent / "templates"
FALLBACK_LANGUAGES = ("en", "zh-CN")

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    undefined=StrictUndefined,  # a missing variable is a bug, not an empty string
    autoescape=False,
    keep_trailing_newline=False,
)


@dataclass(frozen=True)
class Message:
    kind: str
    language: str
    title: str
    body: str


def language_chain(preferred: str) -> list[str]:
    """Languages to try, best first: the tag, its base language, then en, then zh-CN."""
    chain = [preferred]
    base = preferred.split("-")[0]
    if base != preferred:
        chain.append(base)
    for fallback in FALLBACK_LANGUAGES:
        if fallback not in chain:
            chain.append(fallback)
    return chain


def render(kind: str, preferred_language: str, **variables) -> Message:
    """Render notification ``kind`` in the first language of the chain that has a template."""
    for language in language_chain(preferred_language):
        try:
            template = _env.get_template(f"{kind}.{language}.j2")
        except TemplateNotFound:
            continue
        module = template.make_module(variables)
        return Message(kind=kind, language=language, title=str(module.title).strip(), body=str(module).strip())
    raise LookupError(f"no template for notification kind {kind!r} in any language")
