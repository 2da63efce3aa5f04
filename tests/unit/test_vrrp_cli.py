"""`lvs-testbed vrrp ...` through typer's CliRunner: show-config, check-config, status (against
a daemon on fake sockets with a real control socket) and the errors, all without root."""

from __future__ import annotations

import json
import threading
import time

import pytest
from typer.testing import CliRunner

from testbed.cli.main import app
from testbed.cli.vrrp import format_status
from testbed.keepalived_conf import parse_config, render_config
from testbed.net.daemon_configs import nat_pair_config
from testbed.runtime.control import request
from testbed.topo.plan import LayoutParams, make_plan
from testbed.vrrp.daemon import VrrpDaemon
from tests.unit.vrrp_fakes import FakeHost, Segment

runner = CliRunner()
WIDE = {"COLUMNS": "300"}  # rich must not wrap error lines that carry long paths


def invoke(*args: str):
    return runner.invoke(app, ["vrrp", *args], env=WIDE)


def test_vrrp_is_a_sub_app():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "vrrp" in result.output
    result = invoke("--help")
    for command in ("run", "status", "show-config", "check-config"):
        assert command in result.output


# ----------------------------------------------------------------------- show-config


def test_show_config_prints_the_generated_configuration():
    result = invoke("show-config", "nat", "--director", "d2")
    assert result.exit_code == 0, result.output
    assert result.stdout == render_config(nat_pair_config(make_plan("nat"), "d2"))


def test_show_config_options():
    result = invoke("show-config", "nat1", "--version", "3", "--advert-int", "0.5", "--rs", "5")
    assert result.exit_code == 0, result.output
    config = parse_config(result.stdout).config
    assert config.global_defs.vrrp_version == 3
    assert {i.advert_int_s for i in config.instances.values()} == {0.5}
    assert config == nat_pair_config(
        make_plan("nat1", LayoutParams(n_rs=5)), "d1", version=3, advert_int_s=0.5
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dr"], "no director pair"),
        (["ring"], "unknown layout"),
        (["nat", "--director", "d9"], "unknown director"),
        (["nat", "--advert-int", "0.5"], "whole seconds"),
        (["nat", "--version", "4"], "version must be 2 or 3"),
        (["nat", "--rs", "0"], "n_rs must be an integer"),
    ],
)
def test_show_config_refusals_are_usage_errors(args, message):
    result = invoke("show-config", *args)
    assert result.exit_code == 2
    assert message in result.output


# ---------------------------------------------------------------------- check-config


def test_check_config_of_the_generated_configuration(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text(render_config(nat_pair_config(make_plan("nat"), "d1")))
    result = invoke("check-config", "--no-keepalived", "-f", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{path}: OK (2 vrrp_instance, 1 vrrp_sync_group, 0 vrrp_script, 2 virtual_server; "
        "0 warning(s))\n"
    )
    assert result.stderr == ""


def test_check_config_prints_warnings_with_line_numbers(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text(
        "global_defs {\n"
        "    smtp_server 127.0.0.1\n"
        "}\n"
        "vrrp_instance VI_1 {\n"
        "    interface eth0\n"
        "    virtual_router_id 51\n"
        "    lvs_sync_daemon_interface eth0\n"
        "    virtual_ipaddress { 10.0.1.100/24 }\n"
        "}\n"
        "virtual_server 10.0.1.100 80 {\n"
        "    lb_algo lblcr\n"
        "    real_server 192.168.0.11 80 { FILE_CHECK { } }\n"
        "}\n"
    )
    result = invoke("check-config", "--no-keepalived", str(path))  # the positional alias
    assert result.exit_code == 0, result.output
    err = result.stderr.splitlines()
    assert err[0] == f"{path}:2: warning: 'smtp_server' ignored (SMTP alerts: a lab sends no mail)"
    assert err[1].startswith(f"{path}:7: warning: (VI_1) lvs_sync_daemon_interface in a")
    assert err[2].startswith(f"{path}:12: warning: FILE_CHECK ignored (track files are not")
    assert err[3] == (
        f"{path}: warning: virtual_server [10.0.1.100]:tcp:80: lb_algo lblcr is not "
        "implemented by the director"
    )
    assert "4 warning(s)" in result.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "vrrp_instance VI_1 {\n  virtual_router_id 51\n  priority 300\n}\n",
            ":3: 'priority' must be in 1..255, got 300",
        ),
        ("vrrp_instance VI_1 {\n  virtual_router_id 51\n", ":1: unbalanced '{'"),
        (
            "vrrp_instance VI_1 {\n  virtual_router_id 51\n  virtual_ipaddress { 10.0.1.100 }\n}\n",
            "vrrp_instance VI_1 has no interface",
        ),
        (
            "virtual_server fwmark 5 {\n  real_server 10.0.0.11 { TCP_CHECK { } }\n}\n",
            "no port to check",
        ),
    ],
)
def test_check_config_errors_exit_non_zero_with_the_line(tmp_path, text, message):
    path = tmp_path / "bad.conf"
    path.write_text(text)
    result = invoke("check-config", "--no-keepalived", "-f", str(path))
    assert result.exit_code == 2
    assert "error:" in result.output and message in result.output


def test_check_config_of_a_missing_file(tmp_path):
    result = invoke("check-config", "--no-keepalived", "-f", str(tmp_path / "none.conf"))
    assert result.exit_code == 2 and "No such file" in result.output


def test_check_config_takes_the_file_once(tmp_path):
    path = tmp_path / "k.conf"
    path.write_text("")
    assert invoke("check-config", "--no-keepalived").exit_code == 2
    result = invoke("check-config", "--no-keepalived", "-f", str(path), str(path))
    assert result.exit_code == 2 and "once" in result.output


# ------------------------------------------------------------------------------- run


def test_run_refuses_a_bad_config_before_anything_starts(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("vrrp_instance VI_1 {\n  virtual_router_id 0\n}\n")
    result = invoke("run", "--config", str(path))
    assert result.exit_code == 2
    assert f"{path}:2: 'virtual_router_id' must be in 1..255" in result.output


def test_run_refuses_an_interface_that_is_not_here(tmp_path):
    """Found out with `ip -j addr` (no root needed), before any socket is opened."""
    path = tmp_path / "keepalived.conf"
    path.write_text(
        "vrrp_instance VI_1 {\n  interface no-such-if0\n  virtual_router_id 51\n"
        "  virtual_ipaddress { 10.0.1.100/24 }\n}\n"
    )
    result = invoke("run", "--config", str(path))
    assert result.exit_code == 1
    assert "no-such-if0 does not exist or has no IPv4 address" in result.output


def test_run_options_that_exclude_each_other(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text("")
    result = invoke("run", "--config", str(path), "--vrrp-only", "--check-only")
    assert result.exit_code == 2


def test_run_needs_an_existing_config_file(tmp_path):
    result = invoke("run", "--config", str(tmp_path / "none.conf"))
    assert result.exit_code == 2


# ---------------------------------------------------------------------------- status


@pytest.fixture
def runs(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("LVS_TESTBED_RUNDIR", str(root))
    monkeypatch.delenv("LVS_TESTBED_RUN_DIR", raising=False)
    return root


def test_status_without_a_daemon_says_how_to_start_one(runs):
    result = invoke("status")
    assert result.exit_code == 1
    assert "no VRRP daemon is running" in result.output
    assert "lvs-testbed vrrp run --config FILE" in result.output
    result = invoke("status", "--name", "d1")
    assert result.exit_code == 1
    assert "no VRRP daemon named 'd1' is running (running: none)" in result.output


@pytest.fixture
def running_daemon(runs):
    """A VRRPv3 instance at 0.1 s on fake sockets, served by the real loop and control socket."""
    run_dir = runs / "nat-1"
    run_dir.mkdir()
    (run_dir / "resources.jsonl").write_text("")
    host = FakeHost("d1", {"d1-eth0": ("10.0.1.2", Segment("outer", time.monotonic))})
    config = parse_config(
        "vrrp_instance VI_OUTER { interface d1-eth0\nvirtual_router_id 51\npriority 150\n"
        "version 3\nadvert_int 0.1\nvirtual_ipaddress { 10.0.1.100/24 } }"
    ).config
    daemon = VrrpDaemon(config, host, name="d1")
    path = daemon.serve_control(run_dir)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    deadline = time.monotonic() + 5.0
    # Asked over the socket: the loop thread owns the daemon's state.
    while request(path, {"op": "status"})["status"]["instances"][0]["state"] != "MASTER":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield daemon
    daemon.stop()
    thread.join(5.0)
    daemon.close()


def test_status_table(running_daemon):
    result = invoke("status", "--name", "d1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("VRRP daemon d1 (pid ")
    assert lines[1].split() == [
        "INSTANCE",
        "STATE",
        "PRIO",
        "EFF",
        "MASTER",
        "ADV-IN",
        "ADV-OUT",
        "LAST",
        "TRANSITION",
    ]
    row = lines[2].split()
    assert row[:5] == ["VI_OUTER", "MASTER", "150", "150", "10.0.1.2"]
    assert row[7].startswith("BACKUP->MASTER") and row[-1] == "ago"


def test_status_json_of_the_daemon_in_this_namespace(running_daemon):
    result = invoke("status", "--json")  # no name: the index records our own netns
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "d1"
    assert data["instances"][0]["state"] == "MASTER"


def test_format_status_shows_groups_drops_and_virtual_servers():
    data = {
        "name": "d2",
        "pid": 77,
        "wall_s": 1000.0,
        "instances": [
            {
                "name": "VI_OUTER",
                "state": "BACKUP",
                "priority": 100,
                "effective_priority": 100,
                "master": "10.0.1.2",
                "adverts_received": 12,
                "adverts_sent": 0,
                "transitions": [{"previous": "INIT", "state": "BACKUP", "wall_s": 988.0}],
                "drops": {"malformed": 0, "other_vrid": 3, "misconfigured": 1},
            },
            {
                "name": "VI_INNER",
                "state": "INIT",
                "priority": 100,
                "effective_priority": 100,
                "master": None,
                "adverts_received": 0,
                "adverts_sent": 0,
                "transitions": [],
                "drops": {"malformed": 0, "other_vrid": 0, "misconfigured": 0},
            },
        ],
        "groups": [{"name": "VG_NAT", "state": "BACKUP", "members": ["VI_OUTER", "VI_INNER"]}],
        "virtual_servers": [
            {"service": "[10.0.1.100]:tcp:80", "real_servers": [{"alive": True}, {"alive": False}]},
            {
                "service": "[10.0.1.100]:tcp:443",
                "real_servers": [{"alive": False}],
                "quorum": {"up": False, "alive_weight": 0, "quorum": 1},
                "sorry_server": {"address": "[192.168.0.99]:443", "active": True},
            },
        ],
    }
    text = format_status(data)
    lines = text.splitlines()
    assert lines[2].split() == [
        "VI_OUTER",
        "BACKUP",
        "100",
        "100",
        "10.0.1.2",
        "12",
        "0",
        "INIT->BACKUP",
        "12.0",
        "s",
        "ago",
    ]
    assert lines[3].split() == ["VI_INNER", "INIT", "100", "100", "-", "0", "0", "-"]
    assert "sync group VG_NAT: BACKUP (VI_OUTER, VI_INNER)" in lines
    assert "VI_OUTER drops: misconfigured 1, other_vrid 3" in lines
    assert "virtual server [10.0.1.100]:tcp:80: 1/2 real servers alive" in lines
    assert (
        "virtual server [10.0.1.100]:tcp:443: 0/1 real servers alive, quorum lost (0 < 1), "
        "sorry server [192.168.0.99]:443 in"
    ) in lines
