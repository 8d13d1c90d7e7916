"""How fast one process's outbox publishes: ``Outbox._publish`` of N envelopes (5,000 by default) to a
broker, timed, and every one of them counted on a durable queue bound to the exchange (as the consumers'
are: persistent messages on it are confirmed once written) (issue #15).

    python -m tests.bench.outbox_publish [--count 5000] [--batch 400] [--amqp amqp://guest:guest@127.0.0.1:5672/]

``--batch``: envelopes per ``_publish`` call (an import commits 400 rows at a time). Nothing here runs
in the test suite: tests assert behaviour, this prints a rate.
"""
from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402 - after the monkey patch, as in a service process
import time  # noqa: E402
import uuid  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from kombu import Connection  # noqa: E402

from contracts import RESIDENT_IMPORT_COMPLETED  # noqa: E402
from services.common.outbox import Outbox  # noqa: E402


def envelopes(outbox: Outbox, count: int) -> list[dict]:
    worker = SimpleNamespace(context_data={}, call_id="bench")
    data = {"import_id": "bench", "community_id": "tongzilin", "rows_total": 1, "registered": 1,
            "already_registered": 0, "rejected": 0}
    return [outbox.record(worker, RESIDENT_IMPORT_COMPLETED, data) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=400)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()
    service = f"bench-outbox-{uuid.uuid4().hex[:8]}"
    outbox = Outbox("bench")
    outbox.container = SimpleNamespace(service_name=service, config={"AMQP_URI": args.amqp})
    outbox.setup()
    records = envelopes(outbox, args.count)
    with Connection(args.amqp) as connection:
        channel = connection.channel()
        outbox.exchange(channel).declare()
        queue = channel.queue_declare(f"{service}.tally", durable=True, auto_delete=False).queue  # as consumers'
        channel.queue_bind(queue, f"{service}.events", "#")
        outbox._publish(records[:1])  # connection opened and exchange declared: not timed
        started, cpu_started, sent = time.perf_counter(), time.process_time(), 0
        for start in range(1, len(records), args.batch):
            sent += len(outbox._publish(records[start:start + args.batch]))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        time.sleep(0.5)
        arrived = channel.queue_declare(queue, passive=True).message_count
        channel.queue_delete(queue)
        channel.exchange_delete(f"{service}.events")
    print(f"{sent} envelopes in {elapsed:.2f} s: {sent / elapsed:,.0f}/s ({elapsed / sent * 1e3:.2f} ms each, "
          f"{cpu / sent * 1e3:.3f} ms CPU of this process); "
          f"{arrived} on the queue (incl. 1 warm-up)")


if __name__ == "__main__":
    main()
