"""The collection-form import, end to end inside the residents service."""
import io
import time
from pathlib import Path

import pytest
import requests
from openpyxl import Workbook

from services.residents.service import ResidentsService
from tests.data.sample_form import HEADER, form_csv

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).parents[1] / "data" / "tongzilin-collection-form.csv"


@pytest.fixture
def post(container_factory, config, token):
    container_factory(ResidentsService, config).start()
    base = f"http://{config['WEB_SERVER_ADDRESS']}"
    headers = {"Authorization": f"Bearer {token(['residents:read', 'residents:write'])}"}

    def send(content, **kwargs):
        return requests.post(base + "/residents/imports", data=content, headers=headers, **kwargs)

    def wait(job_id, timeout_s=120):
        deadline = time.monotonic() + timeout_s
        while True:
            job = requests.get(f"{base}/residents/imports/{job_id}", headers=headers).json()
            if job["status"] == "completed" or time.monotonic() > deadline:
                return job
            time.sleep(0.2)

    send.wait = wait
    send.base, send.headers = base, headers
    return send


def test_the_sample_form_is_registered_and_a_rerun_adds_nothing(post, bus_tap, mongo_client, config):
    tap = bus_tap("residents")
    accepted = post(SAMPLE.read_bytes(), params={"filename": SAMPLE.name})
    assert accepted.status_code == 202 and accepted.json()["status"] == "queued"
    job = post.wait(accepted.json()["id"])
    assert (job["rows_total"], job["registered"], job["rejected"], job["progress"]) == (200, 200, 0, 1.0)
    types = [m["type"] for m in tap.messages()]
    assert types.count("resident.registered") == 200 and types[-1] == "resident.import_completed"

    again = post(SAMPLE.read_bytes())
    assert again.status_code == 200 and again.json()["repeat"] and again.json()["id"] == job["id"]
    database = mongo_client[config["MONGO_DB_PREFIX"] + "residents"]
    assert database["residents"].count_documents({}) == 200
    assert database["import_rows"].count_documents({}) == 0  # the form's rows are not kept


def test_an_overlapping_form_registers_only_the_new_and_reports_each_bad_row(post):
    post.wait(post(SAMPLE.read_bytes()).json()["id"])
    lines = SAMPLE.read_text(encoding="utf-8-sig").splitlines()
    newcomers = form_csv(2, seed=99).decode("utf-8-sig").splitlines()[1:]
    bad = [
        "tongzilin,,,Jean Valjean,男,1990-01-01,13800000000,,境外,FR,fr,,护照,F99000001,residence_permit_work,2024-13-01,是,否",
        "tongzilin,,,,女,1990-01-01,,,户籍,CN,zh-CN,,,,,,是,否",
        "tongzilin,,,Nobody,男,1990-01-01,,,外星,XX,en,,,,,,是,否",
    ]
    content = "\n".join(lines + newcomers + bad).encode()
    job = post.wait(post(content).json()["id"])
    assert (job["registered"], job["already_registered"], job["rejected"]) == (2, 200, 3)
    assert job["errors"] == [
        "row 204, permit_expires_on: not a date: 2024-13-01",
        "row 205, name: Missing data for required field",
        "row 206, residence_type: Must be one of: registered, non_registered, foreign: 外星",
        "row 206, nationality: not an ISO 3166-1 alpha-2 country code: XX",
    ]


def test_an_xlsx_upload_as_multipart(post):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    for row in form_csv(5, seed=5).decode("utf-8-sig").splitlines()[1:]:
        sheet.append(row.split(","))
    buffer = io.BytesIO()
    workbook.save(buffer)
    accepted = requests.post(post.base + "/residents/imports", headers=post.headers,
                             files={"file": ("form.xlsx", buffer.getvalue())})
    assert accepted.status_code == 202
    job = post.wait(accepted.json()["id"])
    assert job["filename"] == "form.xlsx" and job["registered"] == 5


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (",".join(HEADER).encode(), "the file has a header but no rows"),
        ("社区,姓名,居住类型,国籍\ntongzilin,王秀英,户籍,CN\n".encode("gbk"), "not UTF-8"),
        ("社区,姓名\ntongzilin,王秀英\n".encode(), "missing required columns"),
    ],
)
def test_a_form_that_cannot_be_read_is_a_400_and_stores_nothing(post, mongo_client, config, content, message):
    response = post(content)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_form" and message in response.json()["message"]
    assert mongo_client[config["MONGO_DB_PREFIX"] + "residents"]["imports"].count_documents({}) == 0


def test_a_form_naming_another_community_is_forbidden(post):
    response = post(form_csv(3, community="yulin"))
    assert response.status_code == 403 and "yulin" in response.json()["message"]


def test_an_unknown_import_is_404(post):
    missing = requests.get(post.base + "/residents/imports/0123456789abcdef01234567", headers=post.headers)
    assert missing.status_code == 404
    for bad_id in ("nope", "z" * 24):
        assert requests.get(post.base + f"/residents/imports/{bad_id}", headers=post.headers).status_code == 404


def test_an_unclosed_quote_or_a_repeated_column_refuses_the_file_and_names_why(post, mongo_client, config):
    """Issue #14, item 6: these were read as one row for two, or the last of two values."""
    lines = form_csv(3, seed=3).decode("utf-8-sig").splitlines()
    unclosed = "\n".join([lines[0], lines[1], 'tongzilin,,,"Jean Valjean,男,1990-01-01', lines[2], lines[3]])
    response = post(unclosed.encode())
    assert response.status_code == 400 and response.json()["error"] == "unclosed_quote"
    assert response.json()["message"].startswith("row 3: a quote opened in this row is never closed")
    assert response.json()["details"] == {"row": 3}

    response = post("社区,姓名,居住类型,国籍,name\ntongzilin,王秀英,户籍,CN,Wang Xiuying\n".encode())
    assert response.status_code == 400 and response.json()["error"] == "repeated_column"
    assert response.json()["message"].startswith("name is given twice")
    assert response.json()["details"] == {"column": "name", "columns": [2, 5]}
    assert mongo_client[config["MONGO_DB_PREFIX"] + "residents"]["imports"].count_documents({}) == 0


def test_a_row_with_cells_beyond_the_header_is_rejected_and_named(post):
    lines = form_csv(3, seed=3).decode("utf-8-sig").splitlines()
    content = "\n".join([lines[0], lines[1] + ",,", lines[2] + ",=HYPERLINK(\"http://evil.example\")", lines[3]])
    job = post.wait(post(content.encode()).json()["id"])
    assert (job["rows_total"], job["registered"], job["rejected"]) == (3, 2, 1)
    assert job["errors"] == [f"row 3, column {len(HEADER) + 1}: a value in a column without a header"]
