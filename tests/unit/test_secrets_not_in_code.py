"""No secret in code (issue #8): signing secrets, passwords and keys come from the environment.

The code scan reads every module of ``services/`` and ``contracts/`` as a syntax
tree and reports a string literal that looks like a secret (long, no spaces,
varied characters) given to a name that says it is one — an assignment, a
keyword argument, a dict key or a parameter default — and, under any name, a
JWT, a private key or a URI with a password in it. The config scan checks that
every secret a service's ``config.yaml`` names is read from a ``${LINLI_...}``
variable with no default, so an unset variable leaves it empty, never a
value everyone who reads the repository knows.
"""
import ast
import math
import os
import re
from collections import Counter
from pathlib import Path

import pytest
from nameko.cli.main import ENV_VAR_MATCHER, _replace_env_var

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("services", "contracts")
SECRET_NAME = re.compile(r"secret|passw|pwd|token|api_?key|private_?key|data_?key|signing_?key|credential", re.I)
SECRET_CONFIG_KEY = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$|CREDENTIAL", re.I)
ANYWHERE = {
    "a JWT": re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]+"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "an AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    # RabbitMQ's guest user may only connect from loopback: the local default, not a secret.
    "a password in a URI": re.compile(r"\b[a-z][a-z0-9+.-]*://(?!guest:guest@(localhost|127\.0\.0\.1)[:/])"
                                      r"[^\s:/@${}]+:[^\s@/${}]+@"),
}
SERVICE_CONFIGS = sorted(ROOT.glob("services/*/config.yaml"))


def looks_like_a_secret(value) -> bool:
    """Long, no whitespace, not a plain identifier, and varied enough to be random."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str) or len(value) < 16 or re.search(r"\s", value):
        return False
    if re.fullmatch(r"[a-z_.:/-]+|[A-Z_.:/-]+", value) or "{" in value:  # identifiers, routing keys, templates
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 2.5


def _name_of(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return str(node.slice.value)
    if isinstance(node, ast.Constant):
        return str(node.value)
    return ""


def _named_literals(tree):
    """(line, name, literal) of every string given to a name: assignments, keywords, dict keys, defaults."""
    for node in ast.walk(tree):
        pairs = []
        if isinstance(node, ast.Assign):
            pairs = [(target, node.value) for target in node.targets]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            pairs = [(node.target, node.value)]
        elif isinstance(node, ast.keyword) and node.arg:
            pairs = [(ast.Name(id=node.arg), node.value)]
        elif isinstance(node, ast.Dict):
            pairs = [(key, value) for key, value in zip(node.keys, node.values) if key is not None]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args
            pairs = list(zip(args[len(args) - len(node.args.defaults):], node.args.defaults))
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
        for target, value in pairs:
            name = target.arg if isinstance(target, ast.arg) else _name_of(target)
            if isinstance(value, ast.Constant) and isinstance(value.value, (str, bytes)):
                yield getattr(value, "lineno", node.lineno), name, value.value


def secrets_in(source: str, where: str = "<source>") -> list[str]:
    found = []
    for line, name, literal in _named_literals(ast.parse(source)):
        if SECRET_NAME.search(name) and looks_like_a_secret(literal):
            found.append(f"{where}:{line}: {name} = {str(literal)[:6]}… (a literal secret)")
    for what, pattern in ANYWHERE.items():
        for match in pattern.finditer(source):
            found.append(f"{where}:{source.count(chr(10), 0, match.start()) + 1}: {what}")
    return found


def _modules():
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "tests" not in path.parts and not path.name.startswith("test_"):
                yield path


def test_no_module_of_services_or_contracts_holds_a_secret():
    modules = list(_modules())
    found = [hit for path in modules for hit in secrets_in(path.read_text(encoding="utf-8"), path.relative_to(ROOT))]
    assert len(modules) > 50 and not found, "\n".join(found)


@pytest.mark.parametrize("source", [
    'JWT_SECRET = "kq3Zr8-vT1xPb0Lm9sWd2Yh"',
    'settings.smtp_password = "Tr0ub4dor&3xyzAbc"',
    'connect(password="p4ssW0rd!p4ssW0rd!")',
    'CONFIG = {"RESIDENTS_DATA_KEY": "bGlubGktdGVzdC1kYXRhLWtleQ=="}',
    'def sign(body, secret="s3cr3t-S3CR3T-s3cr3t"): ...',
    'TOKEN: str = b"AbCdEfGh12345678IjKl"',
    'URL = "amqp://linli:Sup3rS3cret@rabbit.example.org:5672/"',
    'HEADER = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"',
])
def test_the_scan_finds_a_planted_secret(source):
    assert secrets_in(source), f"the scan missed: {source}"


@pytest.mark.parametrize("source", [
    'CORRELATION_KEY = "correlation_id"',
    'PII_SCOPE = "residents:pii"',
    'TOKEN_HELP = "a bearer token (default: $LINLI_TOKEN)"',
    'token = jwt.encode(claims, self.config["JWT_SECRET"], algorithm="HS256")',
    'AMQP_URI = "amqp://guest:guest@localhost:5672/"',
    'def dev_secret(var_dir, env_var="LINLI_JWT_SECRET"): ...',
])
def test_the_scan_leaves_names_and_references_alone(source):
    assert secrets_in(source) == []


def _top_level(config_path: Path) -> dict:
    """``KEY: raw value`` of the top-level entries, before nameko expands ``${VAR:default}``."""
    entries = re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):[ \t]*(.*?)[ \t]*$", config_path.read_text(), re.M)
    return dict(entries)


@pytest.mark.parametrize("config_path", SERVICE_CONFIGS, ids=lambda p: p.parent.name)
def test_every_secret_in_a_config_comes_from_the_environment_without_a_default(config_path, monkeypatch):
    entries = _top_level(config_path)
    assert "JWT_SECRET" in entries, "every service signs or checks tokens"
    secrets = {key: raw for key, raw in entries.items() if SECRET_CONFIG_KEY.search(key)}
    wrong = {key: raw for key, raw in secrets.items() if not re.fullmatch(r"\$\{LINLI_[A-Z0-9_]+:?\}", raw)}
    assert not wrong, f"{config_path}: take these from ${{LINLI_...}} with no default: {wrong}"
    for name in [n for n in os.environ if n.startswith("LINLI_")]:
        monkeypatch.delenv(name)
    expanded = {key: ENV_VAR_MATCHER.sub(_replace_env_var, raw) for key, raw in secrets.items()}
    assert all(value == "" for value in expanded.values()), expanded  # unset: empty, and the service refuses
    for key, raw in entries.items():  # no secret hides in another entry's default either
        assert not any(p.search(raw) for p in ANYWHERE.values()), f"{config_path}: {key}: {raw}"


def test_every_service_has_a_config():
    assert {p.parent.name for p in SERVICE_CONFIGS} == {"residents", "events", "notifications", "reports", "partners",
                                                            "cases"}
