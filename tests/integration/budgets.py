"""What the budget tests count: database commands by service (the services' own counter) and the
commands sent inside transactions (a handler's, not a relay's or a timer's)."""
import collections

from prometheus_client import REGISTRY
from pymongo import monitoring

from services.common.mongo import DB_COMMANDS


def commands(service: str) -> dict[str, float]:
    """Commands ``service``'s client has sent so far, by command name (all containers of this process).
    Read from the counter alone: a scrape of the whole registry would run the scrape-time gauges'
    own queries and count them."""
    found = {}
    for family in DB_COMMANDS.collect():
        if family.name == "linli_db_commands":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels["service"] == service:
                    found[sample.labels["command"]] = sample.value
    return found


def spent(before: dict, after: dict) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0) for name in after if after[name] > before.get(name, 0)}


def aborted(service: str) -> float:
    return REGISTRY.get_sample_value("linli_db_transactions_aborted_total", {"service": service}) or 0.0


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
