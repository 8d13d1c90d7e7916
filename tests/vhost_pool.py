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
    result = subprocess.run(["rabbitmqctl", "-q", "eval", expression], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl eval failed: {(result.stderr or result.stdout).strip()[:500]}")


def add_vhosts(names) -> None:
    """Create the vhosts ``names``, each open to guest (configure, write, read: everything)."""
    _eval(
        f"[begin ok = rabbit_vhost:add(V, <<\"{ACTING_USER}\">>), "
        f"ok = rabbit_auth_backend_internal:set_permissions(<<\"guest\">>, V, <<\".*\">>, <<\".*\">>, "
        f"<<\".*\">>, <<\"{ACTING_USER}\">>) end || V <- {_binaries(names)}], ok."
    )


def delete_vhosts(names) -> None:
    """Delete the vhosts ``names`` (with their queues and exchanges); one already gone is skipped."""
    _eval(f"[catch rabbit_vhost:delete(V, <<\"{ACTING_USER}\">>) || V <- {_binaries(names)}], ok.")


class VhostPool:
    """Fresh vhosts named ``make_name()``, created ``chunk`` at a time; used ones deleted ``chunk`` at a time."""

    def __init__(self, make_name, chunk: int = 24):
        self.make_name = make_name
        self.chunk = chunk
        self.ready: list[str] = []
        self.used: list[str] = []

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

    def _delete_used(self) -> None:
        names, self.used = self.used, []
        if names:
            delete_vhosts(names)


def delete_users_with_prefix(prefix: str) -> None:
    """Delete every broker user whose name starts with ``prefix`` (what a test created), in one call."""
    _eval(
        f"P = <<\"{prefix}\">>, [rabbit_auth_backend_internal:delete_user(U, <<\"{ACTING_USER}\">>) || "
        "U <- [proplists:get_value(user, I) || I <- rabbit_auth_backend_internal:list_users()], "
        "binary:longest_common_prefix([U, P]) =:= byte_size(P)], ok."
    )
