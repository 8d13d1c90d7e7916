"""What `make bench` counts besides time: database commands per unit of work, aborted
transactions, and how long the processes take to go quiet after a load.

Commands are read from each service's ``linli_db_commands_total`` (its pymongo client counts
every command it sends), so they do not depend on how loaded the machine is: they are the
budget. CPU is read from ``/proc/<pid>/stat`` of every process the platform started (and the
broker's): the CPU a unit of work costs, summed over the processes and divided into the machine's
cores, is the most units a second this machine can do, however the work is arranged.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Counts:
    commands: dict[str, float]  # by service
    aborted: dict[str, float]


def read_counts(urls: dict[str, str]) -> Counts:
    commands, aborted = {}, {}
    for service, url in urls.items():
        text = requests.get(f"{url}/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "linli_db_commands_total":
                    commands[service] = commands.get(service, 0.0) + sample.value
                elif sample.name == "linli_db_transactions_aborted_total":
                    aborted[service] = aborted.get(service, 0.0) + sample.value
    return Counts(commands, aborted)


class Meter:
    """``with meter.phase("import", units, "row", budget) as phase:`` … counts what the phase cost.

    ``phase.exclude(service, commands)`` takes out commands the bench itself caused (its own
    polling of a service's HTTP reads), measured beforehand, so only the work is counted."""

    def __init__(self, urls: dict[str, str], pids: dict[str, int] | None = None):
        self.urls = urls
        self.pids = pids or {}

    def phase(self, name: str, units: int, unit: str, budget: float | None = None) -> "Phase":
        return Phase(self, name, units, unit, budget)

    def read_cost(self, service: str, path: str, headers: dict, reads: int = 20) -> float:
        """Commands one ``GET path`` on ``service`` costs (so the bench's polling can be left out)."""
        before = read_counts({service: self.urls[service]}).commands.get(service, 0.0)
        with requests.Session() as session:
            for _ in range(reads):
                session.get(self.urls[service] + path, headers=headers).raise_for_status()
        after = read_counts({service: self.urls[service]}).commands.get(service, 0.0)
        return (after - before) / reads


class Phase:
    def __init__(self, meter: Meter, name: str, units: int, unit: str, budget: float | None):
        self.meter, self.name, self.units, self.unit, self.budget = meter, name, units, unit, budget
        self.excluded: dict[str, float] = {}

    def exclude(self, service: str, commands: float) -> None:
        self.excluded[service] = self.excluded.get(service, 0.0) + commands

    def __enter__(self) -> "Phase":
        self.before = read_counts(self.meter.urls)
        self.cpu_before = {name: cpu_seconds(pid) for name, pid in self.meter.pids.items()}
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            cpu = {name: cpu_seconds(pid) - self.cpu_before[name] for name, pid in self.meter.pids.items()}
            print(self.summary(read_counts(self.meter.urls)), flush=True)
            if cpu:
                print(self.cpu_summary(cpu), flush=True)

    def summary(self, after: Counts) -> str:
        per_service = {}
        for service in sorted(after.commands):
            spent = after.commands[service] - self.before.commands.get(service, 0.0) - self.excluded.get(service, 0.0)
            per_service[service] = max(spent, 0.0) / self.units
        total = sum(per_service.values())
        aborted = sum(after.aborted.get(s, 0.0) - self.before.aborted.get(s, 0.0) for s in after.aborted)
        parts = "  ".join(f"{service} {value:.3f}" for service, value in per_service.items())
        budget = f" (budget {self.budget:g}: {'within' if total <= self.budget else 'OVER'})" if self.budget else ""
        return (f"          db commands per {self.unit}: {parts}  total {total:.3f}{budget}; "
                f"transactions aborted {aborted:.0f}")

    def cpu_summary(self, cpu: dict[str, float]) -> str:
        """CPU milliseconds per unit by process (until the phase's work was all seen done), and the
        rate that much CPU allows on this machine's cores."""
        total = sum(cpu.values())
        parts = "  ".join(f"{name} {seconds * 1000 / self.units:.2f}" for name, seconds in sorted(cpu.items()))
        cores = os.cpu_count() or 1
        ceiling = f"{cores * self.units / total:,.0f}" if total else "-"
        return (f"          cpu ms per {self.unit}: {parts}  total {total * 1000 / self.units:.2f} "
                f"(at most {ceiling} a second on {cores} cores)")


def cpu_seconds(pid: int) -> float:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def settle(pids: dict[str, int], threshold: float = 0.05, window_s: float = 1.0, timeout_s: float = 60.0) -> str:
    """Seconds from now until every process uses under ``threshold`` of a core over one window."""
    started = time.monotonic()
    while True:
        window_start = time.monotonic()
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        time.sleep(window_s)
        used = {name: (cpu_seconds(pid) - before[name]) / window_s for name, pid in pids.items()}
        busiest = max(used, key=used.get)
        if used[busiest] < threshold:
            return f"every process under {threshold:.0%} CPU {window_start - started:.1f} s after the load"
        if time.monotonic() - started > timeout_s:
            return (f"NOT quiet {timeout_s:.0f} s after the load: " +
                    ", ".join(f"{name} {share:.0%}" for name, share in sorted(used.items()) if share >= threshold))
