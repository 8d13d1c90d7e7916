"""Every database command a service sends is counted on its /metrics (issue #15): the
budget ``make bench`` divides by the work done, and what operators watch."""
import re

import pytest
import requests

from services.residents.service import ResidentsService

pytestmark = pytest.mark.integration


def counted(url: str) -> dict[tuple[str, str], float]:
    text = requests.get(url + "/metrics", timeout=5).text
    return {(m.group(1), m.group(2)): float(m.group(3)) for m in re.finditer(
        r'^linli_db_commands_total\{command="([^"]+)",service="([^"]+)"\} (\S+)$', text, re.MULTILINE)}


def test_a_registration_is_counted_command_by_command(container_factory, config, token):
    container = container_factory(ResidentsService, config)
    container.start()
    url = f"http://{config['WEB_SERVER_ADDRESS']}"
    before = counted(url)
    response = requests.post(url + "/residents", json={
        "community_id": "tongzilin", "name": "王秀英", "residence_type": "registered", "nationality": "CN",
        "preferred_language": "zh-CN", "birth_date": "1948-03-02", "phone": "13800001111"},
        headers={"Authorization": f"Bearer {token(['residents:write'])}"}, timeout=10)
    assert response.status_code == 201, response.text
    after = counted(url)
    grown = {key: after[key] - before.get(key, 0) for key in after if after[key] > before.get(key, 0)}
    assert grown.get(("insert", "residents"), 0) >= 1, grown
    assert grown.get(("commitTransaction", "residents"), 0) >= 1, grown
    assert all(service == "residents" for _, service in grown), grown
