"""The platform finds its services in services/: a new one is started, documented and given a broker user
without a list to edit."""
import pytest

from platform_tools.platform import SERVICES, PlatformError, discover_services


def _service(root, name, port, class_source):
    package = root / "services" / name
    package.mkdir(parents=True)
    (package / "service.py").write_text(class_source, encoding="utf-8")
    (package / "config.yaml").write_text(
        f"AMQP_URI: ${{LINLI_AMQP_URI:amqp://guest:guest@localhost}}\n"
        f"WEB_SERVER_ADDRESS: ${{LINLI_{name.upper()}_HTTP:127.0.0.1:{port}}}\n", encoding="utf-8")


def test_the_platforms_services_in_the_order_of_their_ports():
    assert SERVICES[:4] == (("residents", 8001, "ResidentsService"), ("events", 8002, "EventsService"),
                            ("notifications", 8003, "NotificationsService"), ("reports", 8004, "ReportsService"))
    assert [port for _, port, _ in SERVICES] == sorted({port for _, port, _ in SERVICES})


def test_a_new_service_folder_is_found_with_its_port_and_class(tmp_path):
    (tmp_path / "services" / "common").mkdir(parents=True)  # no service.py: the runtime kit, not a service
    _service(tmp_path, "cases", 8006, 'class Helper:\n    name = "helper"\n\n\nclass CasesService(Base):\n'
                                      '    """Cases."""\n\n    name = "cases"\n')
    _service(tmp_path, "alpha", 8009, 'class AlphaService:\n    name = "alpha"\n')
    assert discover_services(tmp_path) == (("cases", 8006, "CasesService"), ("alpha", 8009, "AlphaService"))


def test_a_service_without_a_port_or_a_named_class_is_refused(tmp_path):
    _service(tmp_path, "cases", 8006, "class CasesService:\n    pass\n")
    with pytest.raises(PlatformError, match="services/cases"):
        discover_services(tmp_path)
