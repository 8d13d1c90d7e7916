"""The import graph of services/, contracts/ and platform_tools/, read from the source (imports inside
functions included): no cycles, no service imports another (they talk over the bus and RPC only), and
nothing in services/ imports the platform tools (which may import services)."""
import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = {"common"}  # services/common: the runtime kit every service uses
TOOLS = "platform_tools"  # looks at the whole platform: may import services, never imported by them


def modules() -> dict[str, Path]:
    found = {}
    for path in [*(ROOT / "services").rglob("*.py"), *(ROOT / "contracts").rglob("*.py"),
                 *(ROOT / TOOLS).rglob("*.py")]:
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path, known: dict) -> set[str]:
    """The project modules ``path`` imports, wherever in the file (``from a.b import c`` is a.b, or a.b.c
    when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items()}


def service_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "services" and len(parts) > 1 and parts[1] not in SHARED else None


def test_the_modules_import_one_another_without_a_cycle():
    try:
        list(graphlib.TopologicalSorter(graph()).static_order())
    except graphlib.CycleError as error:
        raise AssertionError(f"an import cycle: {' -> '.join(error.args[1])}") from None


def test_no_service_imports_another():
    crossings = [f"{module} imports {imported}" for module, imported_modules in graph().items()
                 for imported in imported_modules
                 if service_of(module) and service_of(imported) and service_of(module) != service_of(imported)]
    assert crossings == []


def test_no_service_imports_the_platform_tools():
    upward = [f"{module} imports {imported}" for module, imported_modules in graph().items()
              for imported in imported_modules
              if module.startswith("services.") and imported.split(".")[0] == TOOLS]
    assert upward == []


def test_the_walk_sees_imports_inside_functions():
    """The graph is not empty by mistake: it sees what services import, at the top and in functions."""
    edges = graph()
    assert "services.common.outbox" in edges["services.residents.service"] or any(
        m.startswith("services.common") for m in edges["services.residents.service"])
    assert "services.partners.broker_admin" in edges["platform_tools.broker_users"]  # inside a function


def test_notifications_keeps_no_partner_code():
    """Partner departments are the partners service's (issue #16): notifications has no module, route or
    setting of theirs."""
    from services.common.openapi import endpoints
    from services.notifications.service import NotificationsService

    folder = ROOT / "services" / "notifications"
    modules = sorted(p.stem for p in folder.glob("*.py"))
    assert [m for m in modules if m.startswith(("feed", "partner", "webhook", "broker_admin"))] == []
    assert [e.url for _, e in endpoints(NotificationsService) if e.url.startswith(("/partners", "/feeds"))] == []
    assert "FEED_" not in (folder / "config.yaml").read_text(encoding="utf-8")
