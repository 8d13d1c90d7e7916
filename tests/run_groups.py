"""Run the suite as N pytest processes at once (``make test`` runs three; ``TEST_GROUPS=1`` runs one).

Most of a test's time is spent waiting on the broker, the store or a service process, so three
processes on two cores finish in a little over half the time of one (measured: 9 min against 17).
pytest-split cuts the ordered suite into N contiguous chunks of about equal time, by the durations
recorded in ``tests/test_durations.json`` (``make test-durations`` records them again, measured with
the groups running side by side, as ``make test`` runs them), so a module's tests and their
module-scoped platform stay in one process. Each process has its own run id, so its own SecantusDB,
vhosts and database names. Every line a process prints is prefixed with its group. The exit status
is the first failing group's; 5 (no tests) if no group ran any; else 0.

    python -m tests.run_groups --groups 3 -- [pytest arguments]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DURATIONS = ROOT / "tests" / "test_durations.json"
NO_TESTS_COLLECTED = 5  # pytest's exit status for a group left empty by the split


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--store-durations", action="store_true",
                        help="record each test's duration, as measured with the groups running side by side")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    pytest_args = [a for a in args.pytest_args if a != "--"]
    if args.groups <= 1:
        return subprocess.call([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT)
    started = time.monotonic()
    processes = []
    for group in range(1, args.groups + 1):
        command = [sys.executable, "-m", "pytest", f"--splits={args.groups}", f"--group={group}",
                   f"--durations-path={DURATIONS}", "--splitting-algorithm=duration_based_chunks", *pytest_args]
        if args.store_durations:  # each group splits by a copy of the file and writes only its own tests' times
            _group_file(group).write_text(DURATIONS.read_text() if DURATIONS.exists() else "{}")
            command += ["--store-durations", "--clean-durations", f"--durations-path={_group_file(group)}"]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        printer = threading.Thread(target=_prefixed, args=(process.stdout, f"[{group}/{args.groups}] "))
        printer.start()
        processes.append((group, process, printer))
    statuses = {}
    for group, process, printer in processes:
        statuses[group] = process.wait()
        printer.join()
    if args.store_durations:
        _merge_durations(args.groups)
    print(f"{args.groups} groups in {time.monotonic() - started:.0f} s: "
          + ", ".join(f"group {g} exit {s}" for g, s in statuses.items()), flush=True)
    failed = [s for s in statuses.values() if s not in (0, NO_TESTS_COLLECTED)]
    if failed:
        return failed[0]
    return NO_TESTS_COLLECTED if all(s == NO_TESTS_COLLECTED for s in statuses.values()) else 0


def _group_file(group: int) -> Path:
    return DURATIONS.with_name(f"test_durations.{group}.json")


def _merge_durations(groups: int) -> None:
    merged = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    for group in range(1, groups + 1):
        path = _group_file(group)
        if path.exists():
            merged.update(json.loads(path.read_text()))
            path.unlink()
    DURATIONS.write_text(json.dumps(dict(sorted(merged.items())), indent=1) + "\n")


def _prefixed(stream, prefix: str) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(prefix + line.decode("utf-8", "replace"))
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
