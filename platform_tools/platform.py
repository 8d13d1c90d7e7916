"""Bring the whole platform up on one machine, and down again.

``linli up`` (what ``make run`` calls): makes sure RabbitMQ answers, starts one
SecantusDB per service with its data under ``var/mongo-<service>/`` (unless
``LINLI_MONGO_URI`` points at a MongoDB, which then holds every service's database):
each service owns its database, and one SecantusDB process uses one core, so two
services' writes run side by side. It starts each service in its own ``nameko run`` process, waits for
every ``/ready``, prints what runs where, and on Ctrl-C or SIGTERM stops
everything it started, in reverse order. ``linli down`` sends that SIGTERM.

``LINLI_SCALE=N`` (``make run SCALE=N``) starts N instances of each service, competing
consumers on the same queues over their service's SecantusDB: instance n listens on the
configured port + 100 × (n − 1) (residents on 8001, 8101, 8201 by default), is
``residents-n`` in the logs under ``var/log/`` and ``"instance": n`` in each log line.
"""
from __future__ import annotations

import ast
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from services.common.auth import dev_secret
from services.common.sealing import new_private_key, public_key_of
from services.common.secrets import local_secret

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
READERS = ("notifications", "partners")  # who opens what residents seals (its PERSONAL_DATA_READERS)
DEFAULT_MONGO_PORT = 27117
INSTANCE_PORT_STEP = 100
# nameko's CLI imports pkg_resources (hence setuptools<81): its deprecation warning, printed
# before the LOGGING config applies, would be the one line of a service's log that is not JSON.
QUIET_WARNINGS = "ignore:pkg_resources is deprecated as an API:UserWarning"
STARTUP_TIMEOUT_S = 90
STOP_TIMEOUT_S = 20


class PlatformError(Exception):
    pass


def discover_services(root: Path = ROOT) -> tuple[tuple[str, int, str], ...]:
    """``(service, default HTTP port, service class)`` of every ``services/<name>/`` with a ``service.py``,
    in the order of their ports: the port from ``config.yaml``'s ``WEB_SERVER_ADDRESS`` default, the class
    the one in ``service.py`` whose ``name`` is the folder's. Read, not imported: starting the platform
    imports no service."""
    found = []
    for module in sorted((root / "services").glob("*/service.py")):
        name = module.parent.name
        config = (module.parent / "config.yaml").read_text(encoding="utf-8")
        address = re.search(r"^WEB_SERVER_ADDRESS:\s*\$\{[A-Z_]+:[^:}]+:(\d+)\}", config, re.MULTILINE)
        classes = [node.name for node in ast.parse(module.read_text(encoding="utf-8")).body
                   if isinstance(node, ast.ClassDef) and _names_itself(node, name)]
        if address is None or len(classes) != 1:
            raise PlatformError(f"services/{name}: needs WEB_SERVER_ADDRESS: ${{LINLI_{name.upper()}_HTTP:host:port}} "
                                f"in config.yaml and one class with name = {name!r} in service.py")
        found.append((name, int(address.group(1)), classes[0]))
    return tuple(sorted(found, key=lambda service: service[1]))


def _names_itself(node: ast.ClassDef, name: str) -> bool:
    return any(isinstance(item, ast.Assign) and [getattr(t, "id", None) for t in item.targets] == ["name"]
               and isinstance(item.value, ast.Constant) and item.value.value == name for item in node.body)


SERVICES = discover_services()


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path
    url: str | None = None


def var_dir() -> Path:
    return Path(os.environ.get("LINLI_VAR_DIR", ROOT / "var")).resolve()


def http_address(service: str, default_port: int, env=None) -> str:
    return (os.environ if env is None else env).get(f"LINLI_{service.upper()}_HTTP", f"127.0.0.1:{default_port}")


def scale(env) -> int:
    """How many instances of each service to start: ``LINLI_SCALE``, 1 by default."""
    raw = env.get("LINLI_SCALE") or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 9:
        raise PlatformError(f"LINLI_SCALE must be a whole number from 1 to 9, not {raw!r}")
    return int(raw)


def instance_address(address: str, instance: int) -> str:
    """Where instance ``instance`` (from 1) of a service configured at ``address`` listens."""
    host, port = address.rsplit(":", 1)
    return f"{host}:{int(port) + INSTANCE_PORT_STEP * (instance - 1)}"


def _port_answers(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _wait(predicate, timeout_s: float, what: str, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child is not None and child.process.poll() is not None:
            raise PlatformError(f"{what}: the process exited with {child.process.returncode}; see {child.log_path}")
        if predicate():
            return
        time.sleep(0.25)
    raise PlatformError(f"{what}: not ready within {timeout_s} s" + (f"; see {child.log_path}" if child else ""))


class Platform:
    def __init__(self, var: Path | None = None, rabbitmq_owner: str | None = "run"):
        self.var = var or var_dir()
        self.logs = self.var / "log"
        self.rabbitmq_owner = rabbitmq_owner
        self.children: list[Child] = []
        self.env = dict(os.environ)
        self.mongo_uris: dict[str, str] = {}

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> Child:
        log_path = self.logs / f"{name}.log"
        log = open(log_path, "ab")
        # A session of its own: the terminal's Ctrl-C reaches only this
        # supervisor, which then stops the children in order.
        process = subprocess.Popen(
            argv, cwd=ROOT, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def _rabbitmq(self, action: str) -> None:
        if self.rabbitmq_owner is None:
            return
        script = ROOT / "deploy" / "local" / "rabbitmq.sh"
        env = {**self.env, "LINLI_VAR_DIR": str(self.var)}
        subprocess.run([str(script), action, self.rabbitmq_owner], check=action == "ensure", env=env)

    def _mongo(self) -> dict[str, str]:
        """Each service's MongoDB URI: ``LINLI_MONGO_URI`` for all, or a SecantusDB of its own."""
        if self.env.get("LINLI_MONGO_URI"):
            return {service: self.env["LINLI_MONGO_URI"] for service, _, _ in SERVICES}
        ports = {service: mongo_port(self.env, service) for service, _, _ in SERVICES}
        for service, port in ports.items():
            if _port_answers("127.0.0.1", port):
                raise PlatformError(f"port {port} (SecantusDB of {service}) is taken; "
                                    "set LINLI_MONGO_PORT or LINLI_MONGO_URI")
        children = {}
        for service, port in ports.items():
            storage = self.var / f"mongo-{service}"
            storage.mkdir(parents=True, exist_ok=True)
            children[service] = self._spawn(f"secantusdb-{service}", [
                str(BIN / "secantusd-py"), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage)])
        for service, child in children.items():
            _wait(lambda p=ports[service]: _port_answers("127.0.0.1", p), STARTUP_TIMEOUT_S, child.name, child)
        return {service: mongo_uri(self.env, service) for service in ports}

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._rabbitmq("ensure")
        self.env["LINLI_JWT_SECRET"] = dev_secret(self.var)
        self.env["LINLI_RESIDENTS_DATA_KEY"] = local_secret(
            self.var, "residents-data-key", "LINLI_RESIDENTS_DATA_KEY", lambda: Fernet.generate_key().decode()
        )
        # The key pairs of notifications and partners, the readers of the personal fields residents seals in
        # RPC replies (contacts; partner feeds).
        for reader in READERS:
            private_key = local_secret(self.var, f"{reader}-private-key", f"LINLI_{reader.upper()}_PRIVATE_KEY",
                                       new_private_key)
            self.env[f"LINLI_{reader.upper()}_PRIVATE_KEY"] = private_key
            self.env[f"LINLI_{reader.upper()}_PUBLIC_KEY"] = public_key_of(private_key)
        instances = scale(self.env)
        self.mongo_uris = self._mongo()
        # Partner feeds kept by notifications before partners existed move at partners' first start.
        self.env.setdefault("LINLI_PARTNERS_MIGRATE_FROM_MONGO_URI", self.mongo_uris["notifications"])
        for service, port, service_class in SERVICES:
            address = http_address(service, port, self.env)
            self.env[f"LINLI_{service.upper()}_HTTP"] = address  # the first instance's, for the CLI
            config = ROOT / "services" / service / "config.yaml"
            argv = [str(BIN / "nameko"), "run", "--config", str(config), f"services.{service}.service:{service_class}"]
            for instance in range(1, instances + 1):
                where = instance_address(address, instance)
                child = self._spawn(service if instances == 1 else f"{service}-{instance}", argv,
                                    env={f"LINLI_{service.upper()}_HTTP": where, "LINLI_INSTANCE": str(instance),
                                         "LINLI_MONGO_URI": self.mongo_uris[service],
                                         "PYTHONWARNINGS": _warning_filters(self.env)})
                child.url = f"http://{where}"
        for child in self.children:
            if child.url:
                _wait(lambda c=child: _ready(c.url), STARTUP_TIMEOUT_S, child.name, child)

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        for child in reversed(self.children):
            try:
                child.process.wait(max(0.1, STOP_TIMEOUT_S - (time.monotonic() - started)))
                print(f"  {child.name} stopped ({time.monotonic() - started:.1f} s)", flush=True)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
                print(f"  {child.name} did not stop within {STOP_TIMEOUT_S} s and was killed", flush=True)
        self.children.clear()
        self._rabbitmq("release")

    def describe(self) -> str:
        lines = ["Linli is up:"]
        for child in self.children:
            where = f"{child.url}  (ready: {child.url}/ready, metrics: {child.url}/metrics)" if child.url else ""
            lines.append(f"  {child.name:<14} pid {child.process.pid:<7} {where}  log {child.log_path}")
        for service, uri in self.mongo_uris.items():
            lines.append(f"  MongoDB        {uri}  ({service})")
        lines.append(f"  RabbitMQ       {self.env.get('LINLI_AMQP_URI', 'amqp://guest:guest@localhost:5672/')}")
        lines.append("A token for the README examples: .venv/bin/linli token --scopes ... --communities ...")
        lines.append("Stop with Ctrl-C or `make stop`.")
        return "\n".join(lines)

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)


def mongo_port(env, service: str) -> int:
    """The port of ``service``'s own SecantusDB: ``LINLI_MONGO_PORT`` (27117) for residents, then one up each."""
    names = [name for name, _, _ in SERVICES]
    return int(env.get("LINLI_MONGO_PORT", DEFAULT_MONGO_PORT)) + names.index(service)


def mongo_uri(env, service: str) -> str:
    """Where ``service``'s database is: ``LINLI_MONGO_URI`` if set, else its own SecantusDB."""
    if env.get("LINLI_MONGO_URI"):
        return env["LINLI_MONGO_URI"]
    # SecantusDB advertises itself as the primary of the one-node replica set "secantus".
    return f"mongodb://127.0.0.1:{mongo_port(env, service)}/?replicaSet=secantus"


def _warning_filters(env) -> str:
    return ",".join(f for f in (env.get("PYTHONWARNINGS"), QUIET_WARNINGS) if f)


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def pid_file(var: Path) -> Path:
    return var / "linli.pid"


def up() -> int:
    """Run the platform in the foreground until Ctrl-C, SIGTERM or a child's death."""
    platform = Platform()
    pid_path = pid_file(platform.var)
    if pid_path.exists() and _alive(int(pid_path.read_text())):
        print(f"Linli already runs (pid {pid_path.read_text().strip()}); `make stop` first.", file=sys.stderr)
        return 1
    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    platform.var.mkdir(parents=True, exist_ok=True)
    pid_path.write_text(str(os.getpid()))
    try:
        platform.start()
        print(platform.describe(), flush=True)
        while not stopping:
            exited = platform.first_exited()
            if exited is not None:
                print(f"{exited.name} exited with {exited.process.returncode}; see {exited.log_path}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    except PlatformError as exc:
        print(f"Linli could not start: {exc}", file=sys.stderr)
        return 1
    finally:
        print("Stopping Linli…", flush=True)
        platform.stop()
        pid_path.unlink(missing_ok=True)
        print("Linli stopped.", flush=True)


def down() -> int:
    """Ask a running ``linli up`` to stop, and wait until it has."""
    pid_path = pid_file(var_dir())
    if not pid_path.exists():
        print("Linli is not running.")
        return 0
    pid = int(pid_path.read_text())
    if not _alive(pid):
        pid_path.unlink(missing_ok=True)
        print("Linli is not running (removed a stale pid file).")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S * 2
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        print(f"Linli (pid {pid}) did not stop in time.", file=sys.stderr)
        return 1
    print("Linli stopped.")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # An exited process its parent has not reaped yet is a zombie: not running.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"
