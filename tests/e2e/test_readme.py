"""The README's "Try it" block, run as printed against a running platform."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def try_it_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Try it", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_the_readme_examples_work_as_printed(linli):
    linli.up()
    script = try_it_block()
    # The only liberties taken: this run's ports, and the venv of this run.
    for name, default_port in (("residents", 8001), ("events", 8002), ("notifications", 8003), ("reports", 8004),
                               ("partners", 8005)):
        script = script.replace(f"localhost:{default_port}", linli.urls[name].removeprefix("http://"))
    script = script.replace(".venv/bin/", str(Path(sys.executable).parent) + "/")
    script = script.replace("/tmp/linli-resident.json", str(linli.var_dir / "resident.json"))
    # Give reports and notifications their second: the README says "within a second".
    script = script.replace("\n# reports counts", "\nsleep 1\n# reports counts")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=linli.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    registered, summary, inbox = (json.loads(line) for line in result.stdout.splitlines())
    assert set(registered) == {"id"}
    assert summary["residents_total"] == 1 and summary["residents_by_residence_type"] == {"foreign": 1}
    assert inbox["resident_id"] == registered["id"]
    assert inbox["items"][0]["language"] == "en" and "Welcome" in inbox["items"][0]["title"]
    linli.down()
