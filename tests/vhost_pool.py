"""RabbitMQ vhosts (and users) for the tests, made and removed in batches.

Each ``rabbitmqctl`` call boots an Erlang VM (about half a second of CPU), and a
vhost of its own for every test took three of them. One ``rabbitmqctl eval``
instead creates a chunk of vhosts (with guest's permissions) ahead of the tests
that take them, and one deletes the vhosts handed back, a batch at a time and
the rest when the run ends. Every test still gets a vhost no other test used.
"""
import subprocess

ACTING_USER = "linli-tests"


def _binaries(names) -> str:
    return "[" + ", ".join(f'<<"{name}">>' for name in names) + "]"


def _eval(expression: str) -> None:
    _finish(_start_eval(expression))


def _start_eval(expression: str) -> subprocess.Popen:
    return subprocess.Popen(["rabbitmqctl", "-q", "eval", expression], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> None:
    out, err = process.communicate(timeout=120)
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl eval failed: {(err or out).strip()[:500]}")


def add_vhosts(names) -> None:
    """Create the vhosts ``names``, each open to guest (configure, write, read: everything)."""
    _eval(
        f"[begin ok = rabbit_vhost:add(V, <<\"{ACTING_USER}\">>), "
        f"ok = rabbit_auth_backend_internal:set_permissions(<<\"guest\">>, V, <<\".*\">>, <<\".*\">>, "
        f"<<\".*\">>, <<\"{ACTING_USER}\">>) end || V <- {_binaries(names)}], ok."
    )


def start_deleting_vhosts(names) -> subprocess.Popen:
    """Start deleting the vhosts ``names`` (with their queues and exchanges); one already gone is skipped."""
    return _start_eval(f"[catch rabbit_vhost:delete(V, <<\"{ACTING_USER}\">>) || V <- {_binaries(names)}], ok.")


class VhostPool:
    """Fresh vhosts named ``make_name()``, created ``chunk`` at a time; used ones deleted ``chunk`` at a time,
    while the next tests run (the broker closes their queues meanwhile)."""

    def __init__(self, make_name, chunk: int = 24):
        self.make_name = make_name
        self.chunk = chunk
        self.ready: list[str] = []
        self.used: list[str] = []
        self.deleting: subprocess.Popen | None = None

    def take(self) -> str:
        if not self.ready:
            names = [self.make_name() for _ in range(self.chunk)]
            add_vhosts(names)
            self.ready = names
        return self.ready.pop(0)

    def give_back(self, name: str) -> None:
        self.used.append(name)
        if len(self.used) >= self.chunk:
            self._delete_used()

    def close(self) -> None:
        """Delete every vhost this pool made: used or not."""
        self.used.extend(self.ready)
        self.ready = []
        self._delete_used()
        self._finish_deleting()

    def _delete_used(self) -> None:
        self._finish_deleting()
        names, self.used = self.used, []
        if names:
            self.deleting = start_deleting_vhosts(names)

    def _finish_deleting(self) -> None:
        deleting, self.deleting = self.deleting, None
        if deleting is not None:
            _finish(deleting)


def delete_users_with_prefix(prefix: str) -> None:
    """Delete every broker user whose name starts with ``prefix`` (what a test created), in one call."""
    _eval(
        f"P = <<\"{prefix}\">>, [rabbit_auth_backend_internal:delete_user(U, <<\"{ACTING_USER}\">>) || "
        "U <- [proplists:get_value(user, I) || I <- rabbit_auth_backend_internal:list_users()], "
        "binary:longest_common_prefix([U, P]) =:= byte_size(P)], ok."
    )
