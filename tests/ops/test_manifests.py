"""The deployment files, checked offline: nothing here builds an image or starts a container.

- every YAML under deploy/ parses;
- the Kubernetes manifests validate against the Kubernetes JSON schemas bundled by
  kubernetes-validate (strict: unknown fields fail), as written and as kustomize renders them;
- each Deployment has requests and limits, probes on /health and /ready, runs as non-root, gets
  secrets only through secretKeyRef / secretRef, and has a grace period longer than its preStop
  sleep plus the slowest graceful stop;
- docker-compose.yml: every long-running service has a healthcheck, the dependencies wait for
  health, the stop grace period covers a graceful stop, and `docker-compose config` accepts it;
- the Dockerfile: multi-stage with a builder, a non-root USER, exec-form CMD/ENTRYPOINT and
  HEALTHCHECK, a per-service target for each service, no secret in ENV/ARG.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from platform_tools.platform import SERVICES, STOP_TIMEOUT_S
from tests.ops import tools

kubernetes_validate = tools.require_module("kubernetes_validate.utils")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
KUBERNETES_VERSION = "1.30.0"  # the oldest minor the manifests are meant for (HPA v2, PDB v1)
# Not in kustomization.yaml on purpose: it holds placeholders (see the file).
NOT_APPLIED = {K8S / "secret.example.yaml"}
# Kinds the bundled schemas cannot know (CustomResourceDefinitions): none are used today; one
# added later is checked for apiVersion/kind/metadata.name only, and must be named here.
CUSTOM_KINDS: set[str] = set()
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASS$|TOKEN|_KEY$|COOKIE", re.I)
SERVICE_NAMES = [name for name, _, _ in SERVICES]


def yaml_files():
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def k8s_resources() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in sorted(K8S.rglob("*.yaml"))
            if path.name != "kustomization.yaml" for doc in documents(path)]


def deployments() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_resources() if doc["kind"] == "Deployment"}


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_under_deploy_parses(path):
    assert documents(path), f"{path} holds no YAML document"


@pytest.mark.parametrize("path, resource", k8s_resources(),
                         ids=lambda v: str(v.relative_to(K8S)) if isinstance(v, Path) else v["kind"])
def test_each_manifest_matches_the_kubernetes_schema(path, resource):
    if resource["kind"] in CUSTOM_KINDS:
        assert resource["apiVersion"] and resource["metadata"]["name"]
        return
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{path.relative_to(K8S)} {resource['kind']}/{resource['metadata'].get('name')}: {exc.caught}")


def test_the_kustomization_names_every_manifest_and_each_exists():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = {(K8S / resource).resolve() for resource in kustomization["resources"]}
    assert all(path.exists() for path in listed), sorted(str(p) for p in listed if not p.exists())
    generated = [f.split("=", 1)[-1] for g in kustomization.get("configMapGenerator", []) for f in g["files"]]
    assert all((K8S / f).exists() for f in generated), generated
    manifests = {p.resolve() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert manifests - listed == NOT_APPLIED, "a manifest that kustomize would not apply"


def test_the_rendered_kustomization_validates():
    rendered = subprocess.run([tools.require("kubectl"), "kustomize", str(K8S)], capture_output=True, text=True,
                              timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    resources = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    for resource in resources:
        assert resource["metadata"].get("namespace", "linli") == "linli"
        if resource["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    images = {c["image"] for r in resources if r["kind"] in ("Deployment", "Job")
              for c in r["spec"]["template"]["spec"]["containers"]}
    assert {f"linli/{name}:0.1.0" for name in SERVICE_NAMES} <= images, "every service image is tagged"


def test_one_deployment_service_autoscaler_and_disruption_budget_per_service():
    kinds = {}
    for _, doc in k8s_resources():
        kinds.setdefault(doc["kind"], set()).add(doc["metadata"]["name"])
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert set(SERVICE_NAMES) <= kinds[kind], kind
    assert {"rabbitmq", "mongo"} <= kinds["StatefulSet"]
    assert {"broker-setup", "mongo-init"} <= kinds["Job"]


def _pre_stop_sleep_s(container: dict) -> int:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    return int(command[1])


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_each_deployment_is_production_ready(name):
    spec = deployments()[name]["spec"]["template"]["spec"]
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] != 0
    [container] = spec["containers"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # Endpoints go first (preStop), then nameko's graceful stop must fit before the SIGKILL.
    assert spec["terminationGracePeriodSeconds"] > _pre_stop_sleep_s(container) + STOP_TIMEOUT_S
    port = dict((n, p) for n, p, _ in SERVICES)[name]
    assert container["ports"][0]["containerPort"] == port
    for init in spec.get("initContainers", []):
        assert init["resources"]["limits"] and init["securityContext"]["allowPrivilegeEscalation"] is False


def _containers():
    for path, doc in k8s_resources():
        template = doc.get("spec", {}).get("template")
        if template:
            for container in template["spec"].get("initContainers", []) + template["spec"]["containers"]:
                yield f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}", container


def test_secrets_reach_containers_only_through_secret_references():
    for where, container in _containers():
        for variable in container.get("env", []):
            if SECRET_NAME.search(variable["name"]):
                assert "secretKeyRef" in variable.get("valueFrom", {}), f"{where}: {variable['name']} not from a Secret"
            value = variable.get("value", "")
            # A URI may carry a password only as a $(VARIABLE) that a secretKeyRef defined.
            assert not re.search(r"://[^:/@]+:(?!\$\()[^@]+@", value), f"{where}: a literal password in {value}"
        for source in container.get("envFrom", []):
            assert "configMapRef" in source or "secretRef" in source
    config_maps = [doc for _, doc in k8s_resources() if doc["kind"] == "ConfigMap"]
    for config_map in config_maps:
        assert not [k for k in config_map.get("data", {}) if SECRET_NAME.search(k)], config_map["metadata"]["name"]
    secrets = [(path, doc) for path, doc in k8s_resources() if doc["kind"] == "Secret"]
    assert [path for path, _ in secrets] == [K8S / "secret.example.yaml"]
    assert all(v in ("change-me", "linli-admin", "") for _, doc in secrets for v in doc["stringData"].values())


def test_the_services_declare_quorum_queues_where_the_broker_has_them():
    config = next(doc for _, doc in k8s_resources() if doc["kind"] == "ConfigMap" and doc["metadata"]["name"]
                  == "linli-config")
    assert config["data"]["LINLI_QUEUE_TYPE"] == "quorum"
    definitions = json.loads((K8S / "rabbitmq" / "definitions.json").read_text(encoding="utf-8"))
    assert {q["arguments"].get("x-queue-type") for q in definitions["queues"]} == {"quorum"}
    assert "linli-poison" in {p["name"] for p in definitions["policies"]}
    delays = config["data"]["LINLI_MESSAGE_RETRY_DELAYS_S"].split(",")
    suffixes = {q["name"].rsplit(".retry.", 1)[1] for q in definitions["queues"] if ".retry." in q["name"]}
    assert suffixes == {f"{int(float(d) * 1000)}ms" for d in delays}, "the retry delays differ from the definitions"


# -- docker compose -------------------------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


ONE_OFF = {"mongo-init", "rabbitmq-users"}  # run to completion; others wait for them, no healthcheck


def _seconds(duration: str) -> float:
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"([\d.]+)([hms])", duration))


def test_every_compose_service_has_a_healthcheck_and_waits_for_what_it_needs():
    services = compose()["services"]
    assert set(SERVICE_NAMES) | {"rabbitmq", "mongo", "prometheus", "grafana"} | ONE_OFF == set(services)
    for name, service in services.items():
        if name in ONE_OFF:
            assert service["restart"] == "no"
            continue
        assert service["healthcheck"]["test"][0] == "CMD", name
    for name in SERVICE_NAMES:
        service = services[name]
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert service["depends_on"]["mongo-init"]["condition"] == "service_completed_successfully"
        assert _seconds(service["stop_grace_period"]) > STOP_TIMEOUT_S
        assert service["build"]["target"] == name and service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        for variable, value in service["environment"].items():
            if SECRET_NAME.search(variable):
                assert re.fullmatch(r"\$\{[A-Z_]+(:[?-][^}]*)?\}", value), f"{name}: {variable} is not from .env"
    assert "--replSet" in services["mongo"]["command"]
    assert "rs.initiate" in services["mongo-init"]["command"][-1]


def test_rabbitmq_loads_the_definitions_at_boot_with_its_plugins():
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text(encoding="utf-8")
    assert re.search(r"^load_definitions = /etc/rabbitmq/definitions\.d$", conf, re.M)
    config = compose()
    users = config["services"]["rabbitmq-users"]
    assert "./rabbitmq/definitions.json:/topology/definitions.json:ro" in users["volumes"]
    assert "rabbitmq_prometheus" in config["configs"]["rabbitmq-plugins"]["content"]
    assert "rabbitmq_management" in config["configs"]["rabbitmq-plugins"]["content"]


def test_the_env_example_names_every_variable_compose_requires_and_holds_no_secret():
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text(encoding="utf-8")))
    example = dict(line.split("=", 1) for line in (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines()
                   if line and not line.startswith("#"))
    assert required <= set(example), sorted(required - set(example))
    assert all(example[name] in ("change-me", "linli-admin") for name in required)


def test_docker_compose_accepts_the_file():
    result = subprocess.run([tools.require("docker-compose"), "--env-file", str(DEPLOY / ".env.example"), "-f", str(COMPOSE),
                             "config", "--quiet"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# -- Dockerfile -----------------------------------------------------------------------------

def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages, current = {}, None
    for instruction, arguments in instructions():
        if instruction == "FROM":
            current = re.search(r"\bAS\s+(\S+)", arguments, re.I).group(1)
            stages[current] = [(instruction, arguments)]
        elif current is not None:
            stages[current].append((instruction, arguments))
    return stages


def _exec_form(arguments: str) -> list[str]:
    arguments = re.sub(r"^(--\S+\s+)*(CMD\s+)?", "", arguments)
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed)
    return parsed


def test_the_dockerfile_builds_in_a_builder_stage_from_a_pinned_base():
    stages = _stages()
    assert "builder" in stages and "runtime" in stages
    base = re.search(r"^PYTHON_IMAGE=(\S+)$", dict(instructions())["ARG"]).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    builder = " ".join(arguments for _, arguments in stages["builder"])
    assert "pip install -c constraints.txt" in builder
    assert any(i == "COPY" and "--from=builder" in a for i, a in stages["runtime"])


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_each_service_target_runs_as_non_root_in_exec_form_with_a_healthcheck(name):
    stages = _stages()
    assert stages[name][0][1].split()[0] == "runtime", "a service target builds on the runtime stage"
    runtime = dict(stages["runtime"])
    user = runtime["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert runtime["STOPSIGNAL"] == "SIGTERM"
    assert "/health" in " ".join(_exec_form(runtime["HEALTHCHECK"]))
    command = _exec_form(dict(stages[name])["CMD"])
    service_class = dict((n, c) for n, _, c in SERVICES)[name]
    assert command == ["nameko", "run", "--config", f"services/{name}/config.yaml",
                       f"services.{name}.service:{service_class}"]
    assert f"EXPOSE {dict((n, p) for n, p, _ in SERVICES)[name]}" in {f"{i} {a}" for i, a in stages[name]}


def test_no_secret_is_baked_into_an_image():
    for instruction, arguments in instructions():
        if instruction in ("ENV", "ARG"):
            names = re.findall(r"(\w+)=", arguments) or [arguments.split()[0]]
            assert not [n for n in names if SECRET_NAME.search(n)], f"{instruction} {arguments}"
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignored[ignored.index("*") if "*" in ignored else 0] == "*", "the build context is an allowlist"
    assert not [line for line in ignored if line.startswith("!") and re.search(r"var|\.env|\.venv", line)]
