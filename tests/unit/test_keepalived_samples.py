"""The 25 sample configurations Debian's keepalived package ships, through ``lvs-testbed vrrp
check-config``: each outcome is pinned in the table below, so a regression (or a new sample
in a new package) shows. Those accepted also start: their interfaces mapped to a fake host's,
the VRRP daemon and the health checker come up and the director takes every command.

Refused, and why: IPv6 (this testbed is IPv4 only) and ``auth_type AH`` (IPsec AH), and the
conditional sample without its config id (``-i high`` makes it run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from testbed.check.checker import HealthChecker
from testbed.cli.main import app
from testbed.keepalived_conf import load_config
from testbed.keepalived_conf.ifmap import interfaces_of, rename_interfaces
from tests.unit.check_fakes import FakeDirector, FakeScripts
from tests.unit.vrrp_fakes import Sim

SAMPLES = Path("/usr/share/doc/keepalived/samples")
pytestmark = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason="Debian's keepalived samples are not installed (provision does)"
)

# sample -> (config id, "OK" and (instances, sync groups, scripts, virtual servers), or the
# reason it is refused)
TABLE: dict[str, tuple[str | None, object]] = {
    "HTTP_GET.port": (None, (0, 0, 0, 1)),  # SSL_GET on connect_port 444
    "IPv6": (None, "IPv6 is not supported"),
    "PING_CHECK": (None, (0, 0, 0, 1)),
    "SMTP_CHECK": (None, (0, 0, 0, 1)),  # host blocks become checkers
    "SSL_GET": (None, "auth_type AH (IPsec AH) is not supported"),
    "UDP_CHECK": (None, (0, 0, 0, 1)),
    "conditional_conf": (None, "@ID lines for high, low and no config id was given"),
    "fwmark": (None, (0, 0, 0, 1)),
    "inhibit": (None, (0, 0, 0, 1)),
    "misc_check": (None, (0, 0, 0, 1)),
    "misc_check_arg": (None, (0, 0, 0, 1)),
    "quorum": (None, (0, 0, 0, 1)),  # alpha, omega, quorum, hysteresis, quorum scripts
    "sample": (None, (1, 0, 0, 1)),  # sorry_server
    "status_code": (None, (0, 0, 0, 1)),
    "track_interface": (None, (1, 0, 0, 0)),  # static_routes, virtual_routes
    "virtual_server_group": (None, (0, 0, 0, 1)),
    "virtualhost": (None, (0, 0, 0, 1)),
    "vrrp": (None, (4, 0, 0, 0)),
    "vrrp.localcheck": (None, (9, 0, 5, 0)),
    "vrrp.lvs_syncd": (None, (3, 1, 0, 1)),  # the old lvs_sync_daemon_interface
    "vrrp.routes": (None, (1, 0, 0, 0)),
    "vrrp.rules": (None, (1, 0, 0, 0)),  # static_rules, virtual_rules
    "vrrp.scripts": (None, (3, 1, 0, 0)),
    "vrrp.static_ipaddress": (None, (1, 0, 0, 0)),
    "vrrp.sync": (None, (9, 2, 0, 0)),
}
WITH_ID = {"conditional_conf": "high"}  # and with its id, it runs
runner = CliRunner()


def test_the_table_covers_every_sample():
    found = sorted(
        p.name.removeprefix("keepalived.conf.") for p in SAMPLES.glob("keepalived.conf.*")
    )
    assert found == sorted(TABLE)
    assert len(found) == 25


@pytest.mark.parametrize("name", sorted(TABLE))
def test_check_config_outcome(name):
    config_id, expected = TABLE[name]
    args = [
        "vrrp",
        "check-config",
        "--no-keepalived",
        "-f",
        str(SAMPLES / f"keepalived.conf.{name}"),
    ]
    result = runner.invoke(app, args + (["-i", config_id] if config_id else []))
    output = " ".join(result.output.split())
    if isinstance(expected, str):
        assert result.exit_code == 2, output
        assert expected in output
        assert output.count("error:") == 1  # one clear line
    else:
        assert result.exit_code == 0, output
        counts = ", ".join(
            f"{n} {what}"
            for n, what in zip(
                expected,
                ("vrrp_instance", "vrrp_sync_group", "vrrp_script", "virtual_server"),
                strict=True,
            )
        )
        assert f"OK ({counts};" in output


def accepted() -> list[tuple[str, str | None]]:
    out = [(n, None) for n, (_, e) in TABLE.items() if not isinstance(e, str)]
    return sorted(out + list(WITH_ID.items()))


@pytest.mark.parametrize(("name", "config_id"), accepted())
def test_every_accepted_sample_starts(name, config_id):
    """With its interfaces mapped to a host's, the daemon and the checker start, and the
    director accepts every service and real server keepalived would set up."""
    config = load_config(SAMPLES / f"keepalived.conf.{name}", config_id=config_id).config
    mapping = {old: f"if{i}" for i, old in enumerate(sorted(interfaces_of(config)))}
    config = rename_interfaces(config, mapping)
    sim = Sim()
    interfaces = {f"if{i}": (f"10.254.{i}.1", f"seg{i}") for i in range(len(mapping))}
    sim.add("d1", config, interfaces, executables=set())
    sim.start("d1")
    sim.run_until(5.0)
    director, scripts = FakeDirector(), FakeScripts()
    checker = HealthChecker(config, director, script_host=scripts, random_fraction=lambda: 0.0)
    checker.start(0.0)
    try:
        assert all(vs["applied"] for vs in checker.status()), director.take()
    finally:
        checker.stop()
        sim.shutdown("d1")
