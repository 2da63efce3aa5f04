"""check-config beside real keepalived (``keepalived -t``): where the two disagree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from testbed.cli.main import app
from testbed.vrrp.kacompare import KeepalivedVerdict, compare, message_line

runner = CliRunner()


def test_the_line_of_a_keepalived_message():
    assert message_line("(/etc/k.conf: Line 20) (VI_1) Initial state ...") == 20
    assert message_line("Non-existent interface specified in configuration") is None


def test_we_refuse_what_keepalived_accepts():
    out = compare("k.conf:8: IPv6 is not supported", {8}, KeepalivedVerdict(0, ()))
    assert out[0] == "keepalived -t: exit 0 (accepted, nothing to report)"
    assert out[1].startswith("disagree: keepalived accepts the file; this testbed refuses it")


def test_keepalived_remarks_we_do_not_make_are_listed():
    verdict = KeepalivedVerdict(
        5,
        (
            "(k.conf: Line 11) Invalid rule to address 192.168.100./24",
            "(k.conf: Line 21) WARNING - interface eth1 for ip address 1.2.3.4 doesn't exist",
            "Non-existent interface specified in configuration",
        ),
    )
    out = compare(None, {11}, verdict)
    assert out[1].startswith("keepalived only: (k.conf: Line 21)")
    assert out[1].endswith("(about this host, not the file)")
    assert out[2].startswith("keepalived: Non-existent interface")


def test_agreement():
    assert compare(None, set(), KeepalivedVerdict(0, ()))[-1] == "agree"


@pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived is not installed")
def test_check_config_runs_keepalived_too(tmp_path: Path):
    conf = tmp_path / "k.conf"
    conf.write_text(
        "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  real_server 10.0.0.2 80 {\n"
        "    TCP_CHECK { connect_timeout 3 }\n  }\n}\n"
        "vrrp_instance VI_1 {\n  interface lo\n  virtual_router_id 9\n"
        "  virtual_ipaddress { ae00::1 }\n}\n"
    )
    result = runner.invoke(app, ["vrrp", "check-config", "-f", str(conf)])
    assert result.exit_code == 2  # IPv6: refused here
    assert "keepalived -t: exit" in result.output
