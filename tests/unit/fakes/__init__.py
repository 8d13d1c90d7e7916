"""In-memory stand-ins for the services' stores, for unit tests of their use cases (no database).

tests/unit/test_fakes.py holds each to its real store's interface, so a use case that runs against a fake
runs against the real store too (whose commands the integration budget tests count)."""
import inspect


def interface(cls) -> dict[str, tuple]:
    """The public methods of ``cls``, by name, with their parameters (name, kind, default; not annotations)."""
    return {name: tuple((p.name, p.kind, p.default) for p in inspect.signature(member).parameters.values())
            for name, member in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}
