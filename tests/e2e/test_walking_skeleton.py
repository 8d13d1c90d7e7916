"""The walking skeleton end to end: the four service processes started the way
`make run` starts them (`linli up`), driven over HTTP."""
import pytest
import requests

from tests.waiting import until

pytestmark = pytest.mark.e2e


def answer(url, headers, ok):
    """A check for ``until``: the answer to ``GET url`` once ``ok(answer)``, else None."""
    def check():
        response = requests.get(url, headers=headers)
        return response if ok(response) else None
    return check


def test_register_count_welcome_stop_and_start_again(linli):
    linli.up()
    for name, url in linli.urls.items():
        assert requests.get(url + "/health").json() == {"status": "ok", "service": name}

    worker = linli.headers(["residents:read", "residents:write", "reports:read", "notifications:read"])
    residents = {
        "zh-CN": {"community_id": "tongzilin", "name": "王秀英", "residence_type": "registered",
                  "nationality": "CN", "preferred_language": "zh-CN", "tags": ["elderly"]},
        "en": {"community_id": "tongzilin", "name": "James O'Neill", "residence_type": "foreign",
               "nationality": "IE", "preferred_language": "en"},
    }
    ids = {}
    for language, body in residents.items():
        response = requests.post(linli.urls["residents"] + "/residents", json=body, headers=worker)
        assert response.status_code == 201, response.text
        ids[language] = response.json()["id"]

    summary_url = linli.urls["reports"] + "/communities/tongzilin/summary"
    summary = until(answer(summary_url, worker, lambda r: r.status_code == 200 and r.json()["residents_total"] == 2),
                    "both residents in the summary", timeout_s=15)
    assert summary.json()["residents_by_residence_type"] == {"registered": 1, "foreign": 1}

    for language, needle in (("zh-CN", "欢迎"), ("en", "Welcome")):
        inbox_url = f"{linli.urls['notifications']}/residents/{ids[language]}/inbox"
        inbox = until(answer(inbox_url, worker, lambda r: r.status_code == 200 and r.json()["items"]),
                      f"the {language} welcome", timeout_s=15).json()  # 404 until notifications knows them
        assert [(i["kind"], i["language"]) for i in inbox["items"]] == [("welcome", language)]
        assert needle in inbox["items"][0]["title"]

    linli.down()
    with pytest.raises(requests.ConnectionError):
        requests.get(linli.urls["residents"] + "/health", timeout=2)

    linli.up()  # a second start finds the data the first one left under var/
    resident = requests.get(f"{linli.urls['residents']}/residents/{ids['zh-CN']}", headers=worker)
    assert resident.status_code == 200 and resident.json()["name"] == "王秀英"
    assert requests.get(summary_url, headers=worker).json()["residents_total"] == 2
    linli.down()
