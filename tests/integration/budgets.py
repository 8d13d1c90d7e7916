"""What the budget tests count: database commands by service (the services' own counter) and the
commands sent inside transactions (a handler's, not a relay's or a timer's)."""
import collections

from pymongo import monitoring

from services.common.mongo import DB_COMMANDS, DB_TRANSACTIONS_ABORTED


def _samples(counter, service: str) -> dict[str, float]:
    """A counter's ``*_total`` values of one service, by their other label, read from the counter alone:
    a scrape of the whole registry would run the scrape-time gauges' own queries and count them."""
    return {sample.labels.get("command", ""): sample.value for family in counter.collect()
            for sample in family.samples if sample.name.endswith("_total") and sample.labels["service"] == service}


def commands(service: str) -> dict[str, float]:
    """Commands ``service``'s client has sent so far, by command name (all containers of this process)."""
    return _samples(DB_COMMANDS, service)


def spent(before: dict, after: dict) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0) for name in after if after[name] > before.get(name, 0)}


def aborted(service: str) -> float:
    return sum(_samples(DB_TRANSACTIONS_ABORTED, service).values())


class TransactionCommands(monitoring.CommandListener):
    """The commands sent inside transactions, by name, while ``recording``."""

    def __init__(self):
        self.recording, self.seen = False, collections.Counter()

    def started(self, event):
        if self.recording and "txnNumber" in event.command:
            self.seen[event.command_name] += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


# Registered when the tests are collected, before any client exists (clients copy the global listeners).
IN_TRANSACTIONS = TransactionCommands()
monitoring.register(IN_TRANSACTIONS)
