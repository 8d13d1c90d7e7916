"""In-memory stand-ins for the services' stores, for unit tests of their use cases (no database).

tests/unit/test_fakes.py holds each to its real store's interface, so a use case that runs against a fake
runs against the real store too (whose commands the integration budget tests count)."""
import copy
import inspect


def interface(cls) -> dict[str, tuple]:
    """The public methods of ``cls``, by name, with their parameters (name, kind, default; not annotations)."""
    return {name: tuple((p.name, p.kind, p.default) for p in inspect.signature(member).parameters.values())
            for name, member in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}


class FakeUnitOfWork:
    """The outbox's ``transaction(work)`` over a fake store whose state is the attributes ``tables``:
    ``work(session, publish)``; what it published is kept in ``published`` (type name, data, keyword
    arguments) once it returns; if it raises, the tables are given back as they were and nothing is published."""

    tables: tuple[str, ...] = ()

    def __init__(self, store):
        self.store = store
        self.published: list[tuple[str, dict, dict]] = []

    def transaction(self, work, turn=None):
        before = {name: copy.deepcopy(getattr(self.store, name)) for name in self.tables}
        staged = []
        try:
            result = work(object(), lambda message_type, data, **kwargs: staged.append(
                (message_type.name, data, kwargs)))
        except BaseException:
            for name, value in before.items():
                setattr(self.store, name, value)
            raise
        self.published.extend(staged)
        return result

    def run(self, use_case, *args, **kwargs):
        """``use_case(store, session, publish, *args, **kwargs)`` in a transaction, as the service runs it."""
        return self.transaction(lambda session, publish: use_case(self.store, session, publish, *args, **kwargs))
