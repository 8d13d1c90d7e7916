"""`linli residents import FILE` against the running platform, as a community worker uses it."""
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import LINLI, ROOT

pytestmark = pytest.mark.e2e
SAMPLE = Path(__file__).parents[1] / "data" / "tongzilin-collection-form.csv"


def test_import_the_sample_form_and_reports_counts_everyone(linli):
    linli.up()
    result = subprocess.run([str(LINLI), "residents", "import", str(SAMPLE)], cwd=ROOT, env=linli.env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "completed: 200 registered, 0 already registered, 0 rejected" in result.stdout
    assert "200/200" in result.stderr  # the progress bar reached the end

    headers = linli.headers(["reports:read"])
    deadline = time.monotonic() + 30
    while True:
        summary = requests.get(linli.urls["reports"] + "/communities/tongzilin/summary", headers=headers)
        if summary.status_code == 200 and summary.json()["residents_total"] == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert summary.json()["residents_total"] == 200

    again = subprocess.run([str(LINLI), "residents", "import", str(SAMPLE)], cwd=ROOT, env=linli.env,
                           capture_output=True, text=True, timeout=300)
    assert "imported before" in again.stdout
    linli.down()
