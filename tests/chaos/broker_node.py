"""A RabbitMQ node of a test's own, which the test may stop, kill and start again.

The machine's broker (``rabbit@localhost`` on 5672) is shared and never touched:
this node has its own name, AMQP and distribution ports, data, logs, Erlang
cookie (``HOME`` in its directory) and configuration, and no plugins, so no
management or Prometheus listener either. Its data directory survives
``stop()``/``start()``, so durable queues and persistent messages do too.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

RABBITMQ_BIN = Path(os.environ.get("LINLI_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _erlang_helpers_in_group(group: int) -> list[int]:
    """Processes still in our node's process group that are Erlang's (checked: a pid may be reused)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            exe = os.readlink(stat.parent / "exe")
        except OSError:
            continue
        if int(fields[2]) == group and "erlang" in exe:
            found.append(int(stat.parent.name))
    return found


class BrokerNodeError(Exception):
    pass


class BrokerNode:
    """``node = BrokerNode(); node.start()``; ``node.amqp_uri``; ``node.stop()``/``kill()``; ``node.remove()``."""

    def __init__(self, name_prefix: str = "linli-chaos"):
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name_prefix}-rabbitmq-"))
        self.nodename = f"{name_prefix}-{uuid.uuid4().hex[:8]}@localhost"
        self.port, self.dist_port = _free_port(), _free_port()
        self.amqp_uri = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.process: subprocess.Popen | None = None
        self.starts = 0
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            # A test machine's disk may be nearly full; an alarm would block publishers.
            "disk_free_limit.absolute = 10MB\n"
            "log.console = false\n"
            "log.file.level = info\n")
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's: that names the machine's node
        (self.dir / "home").mkdir()

    @property
    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.dir / "home"),  # the node's own .erlang.cookie, shared with our rabbitmqctl only
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.dir / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(self.dir / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_PID_FILE=str(self.dir / "rabbitmq.pid"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def ctl(self, *args: str, timeout_s: float = 60, check: bool = True) -> str:
        result = subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.nodename, "-q", *args],
                                env=self.env, capture_output=True, text=True, timeout=timeout_s)
        if check and result.returncode != 0:
            raise BrokerNodeError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip()[:500]}")
        return result.stdout

    def start(self, timeout_s: float = 90) -> None:
        self.starts += 1
        log = open(self.dir / f"server-{self.starts}.out", "wb")
        self.process = subprocess.Popen([str(RABBITMQ_BIN / "rabbitmq-server")], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise BrokerNodeError(f"{self.nodename} exited with {self.process.returncode}; "
                                      f"see {self.dir}/server-{self.starts}.out and {self.dir}/log")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerNodeError(f"{self.nodename} did not start within {timeout_s} s; see {self.dir}/log")
            result = subprocess.run([str(RABBITMQ_BIN / "rabbitmq-diagnostics"), "-n", self.nodename, "-q",
                                     "check_port_connectivity"], env=self.env, capture_output=True,
                                    timeout=max(remaining, 5))
            if result.returncode == 0:
                return
            time.sleep(0.5)

    def stop(self, timeout_s: float = 60) -> None:
        """A clean shutdown (``rabbitmqctl stop``): clients see their connections closed."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.ctl("stop", timeout_s=timeout_s, check=False)
        self._reap(timeout_s)

    def kill(self) -> None:
        """The node dies at once (SIGKILL to its process group): clients see a reset socket."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self._reap(30)

    def _reap(self, timeout_s: float) -> None:
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        # The Erlang VM may leave helpers behind in its process group (erl_child_setup, inet_gethost).
        for pid in _erlang_helpers_in_group(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process = None

    def remove(self) -> None:
        """Stop the node if it runs, and delete its data: a fixture's finalizer calls this."""
        try:
            self.stop(timeout_s=30)
        finally:
            if self.process is not None:
                self.kill()
            shutil.rmtree(self.dir, ignore_errors=True)
