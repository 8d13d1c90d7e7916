"""Local secrets: from the environment, else generated once into var/ (never committed)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def local_secret(var_dir: Path, name: str, env_var: str, generate: Callable[[], str]) -> str:
    from_env = os.environ.get(env_var)
    if from_env:
        return from_env
    path = var_dir / name
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(generate())
        path.chmod(0o600)
    return path.read_text().strip()
