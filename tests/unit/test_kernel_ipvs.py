"""Kernel IPVS as a director (`--director ipvs`), the parts that need no ip_vs: the probe and its
message, the real ipvsadm's runner and sync-daemon commands, the plan, the NAT director's
forward filter, keepalived's lvs_sync_daemon line, and the CLI's pass-through choice.
(The behaviour itself is tested against the real kernel in tests/kernel.)"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from testbed.cli import director as cli_director
from testbed.cli.main import app
from testbed.net.daemon_configs import ipvs_forward_ruleset
from testbed.runtime import ipvs
from testbed.topo.plan import DEFAULT_SERVICES, LayoutParams, make_plan

runner = CliRunner()


def test_missing_message_names_the_kernel_and_both_ways_out():
    text = ipvs.missing_message("6.18.44-small")
    assert "no ip_vs in this kernel (6.18.44-small)" in text
    assert "lvs-testbed vm run --" in text and "Vagrant" in text and "--director python" in text


def test_probe_says_why_not_when_the_kernel_has_no_ip_vs(monkeypatch, tmp_path):
    monkeypatch.setattr(ipvs, "PROC_IP_VS", tmp_path / "absent")
    monkeypatch.setattr(ipvs.shutil, "which", lambda name: "/usr/sbin/ipvsadm")
    monkeypatch.setattr(
        ipvs, "_modprobe", lambda *a: (1, "modprobe: FATAL: Module ip_vs not found")
    )
    found = ipvs.probe()
    assert not found.ok and "no ip_vs in this kernel" in found.detail
    with pytest.raises(ipvs.IpvsUnavailable, match="lvs-testbed vm run"):
        ipvs.load()


def test_probe_is_ok_when_the_module_is_loaded_or_loadable(monkeypatch, tmp_path):
    proc = tmp_path / "ip_vs"
    proc.write_text("IP Virtual Server version 1.2.1 (size=4096)\nProt ...\n")
    monkeypatch.setattr(ipvs.shutil, "which", lambda name: "/usr/sbin/ipvsadm")
    monkeypatch.setattr(ipvs, "PROC_IP_VS", proc)
    assert ipvs.probe() == ipvs.Probe(
        True, "ip_vs loaded: IP Virtual Server version 1.2.1 (size=4096)"
    )
    monkeypatch.setattr(ipvs, "PROC_IP_VS", tmp_path / "absent")
    monkeypatch.setattr(ipvs, "_modprobe", lambda *a: (0, ""))
    assert ipvs.probe().ok


def test_a_missing_ipvsadm_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(ipvs.shutil, "which", lambda name: None)
    assert not ipvs.probe().ok
    with pytest.raises(ipvs.IpvsUnavailable, match="make setup"):
        ipvs.load()


def test_run_ipvsadm_reports_a_missing_binary_and_a_hang_like_a_failure(monkeypatch):
    monkeypatch.setattr(ipvs, "IPVSADM", "/nonexistent/ipvsadm")
    res = ipvs.run_ipvsadm(["-L", "-n"])
    assert res.rc == 127 and "make setup" in res.err
    monkeypatch.setattr(ipvs, "IPVSADM", "sleep")
    res = ipvs.run_ipvsadm(["5"], timeout_s=0.2)
    assert res.rc == 124 and "no answer within 0.2 s" in res.err


def test_run_ipvsadm_passes_arguments_and_stdin(monkeypatch):
    monkeypatch.setattr(ipvs, "IPVSADM", "cat")
    assert ipvs.run_ipvsadm(["-"], "-A -t 10.0.0.100:80 -s rr\n") == (
        0,
        "-A -t 10.0.0.100:80 -s rr\n",
        "",
    )


def test_sync_daemons_are_master_and_backup_on_one_nic():
    assert ipvs.sync_daemon_argvs("d1-eth1", 1) == [
        ["--start-daemon", "master", "--mcast-interface", "d1-eth1", "--syncid", "1"],
        ["--start-daemon", "backup", "--mcast-interface", "d1-eth1", "--syncid", "1"],
    ]
    with pytest.raises(ValueError, match="0 to 255"):
        ipvs.sync_daemon_argvs("d1-eth1", 256)
    with pytest.raises(ValueError, match="master or backup"):
        ipvs.sync_daemon_argvs("d1-eth1", 1, ("primary",))


def test_the_plan_takes_ipvs_as_a_director_and_keeps_the_pair():
    plan = make_plan("nat", LayoutParams(director="ipvs"))
    assert plan.kernel_ipvs and plan.has_pair and not plan.openflow
    assert not make_plan("dr").kernel_ipvs


def test_the_nat_forward_filter_lets_only_the_services_replies_through():
    text = ipvs_forward_ruleset("t", "192.168.0.0/24", DEFAULT_SERVICES)
    assert "type filter hook forward priority 0; policy drop;" in text
    assert "ip saddr 192.168.0.0/24 tcp sport 80 accept" in text
    assert "ip saddr 192.168.0.0/24 udp sport 7 accept" in text
    assert "icmp type { destination-unreachable, time-exceeded, parameter-problem }" in text
    assert text.count("accept") == 3  # nothing else: real servers cannot route through it


def test_keepalived_on_kernel_ipvs_runs_its_own_sync_daemon():
    pytest.importorskip("mininet")
    from testbed.net.network import generated_keepalived_conf

    plan = make_plan("nat", LayoutParams(director="ipvs", ha="keepalived"))
    assert "lvs_sync_daemon d2-eth1 inst VI_INNER id 1" in generated_keepalived_conf(plan, "d2")
    off = make_plan("nat", LayoutParams(director="ipvs", ha="keepalived", conn_sync=False))
    assert "lvs_sync_daemon" not in generated_keepalived_conf(off, "d2")
    python = make_plan("nat", LayoutParams(ha="keepalived"))
    assert "lvs_sync_daemon" not in generated_keepalived_conf(python, "d1")


def test_up_offers_ipvs_as_a_director():
    result = runner.invoke(app, ["up", "--help"], env={"COLUMNS": "300"})
    assert "ipvs (the kernel's IPVS with the real ipvsadm" in result.output


def test_vrrp_run_kernel_ipvs_takes_no_director(tmp_path):
    conf = tmp_path / "k.conf"
    conf.write_text("global_defs {\n}\n")
    result = runner.invoke(
        app, ["vrrp", "run", "-f", str(conf), "--kernel-ipvs", "--director", "d1"]
    )
    assert result.exit_code == 2 and "takes no --director" in result.output


def _run_dir(tmp_path, director: str):
    run = tmp_path / "up-dr-1"
    run.mkdir(parents=True)
    params = {"director": director}
    (run / "layout.json").write_text(json.dumps({"layout": "dr", "params": params}))
    return run


def test_ipvsadm_goes_to_the_real_one_inside_a_kernel_ipvs_run(monkeypatch, tmp_path):
    monkeypatch.setenv("LVS_TESTBED_RUN_DIR", str(_run_dir(tmp_path, "ipvs")))
    assert cli_director._kernel_director(None) == cli_director._HERE
    monkeypatch.setenv("LVS_TESTBED_RUN_DIR", str(_run_dir(tmp_path / "p", "python")))
    assert cli_director._kernel_director(None) is None


def test_ipvsadm_by_name_finds_no_kernel_director_without_a_live_run(monkeypatch, tmp_path):
    monkeypatch.setenv("LVS_TESTBED_RUNDIR", str(tmp_path))
    _run_dir(tmp_path, "ipvs")  # no owner recorded: not live
    assert cli_director._kernel_director("d1") is None


class _FakeHosts:
    """HostAccess for a run directory; `cmd` records and answers like a shell."""

    def __init__(self, run_dir, answer: str) -> None:
        self.run_dir = run_dir
        self.answer = answer
        self.commands: list[tuple[str, str]] = []

    def cmd(self, host: str, command: str) -> str:
        self.commands.append((host, command))
        return self.answer

    def popen(self, host, argv):  # pragma: no cover - not used here
        raise AssertionError("no popen expected")


def test_labs_reach_the_real_ipvsadm_in_the_director_host(tmp_path, monkeypatch):
    from testbed.labs import actions

    monkeypatch.setattr(actions, "KERNEL_STATS_TICK_S", 0.0)
    hosts = _FakeHosts(_run_dir(tmp_path, "ipvs"), "Service already exists\n__rc=255\n")
    assert actions.kernel_ipvs(hosts)
    rc, out = actions.ipvsadm(hosts, "-A -t '10.0.0.100:80' -s rr", "d1", stdin="")
    assert (rc, out) == (255, "Service already exists\n")
    host, command = hosts.commands[0]
    assert host == "d1" and command.startswith("ipvsadm -A -t 10.0.0.100:80 -s rr < ")
    assert not actions.kernel_ipvs(_FakeHosts(_run_dir(tmp_path / "p", "python"), ""))


def test_lab_start_takes_python_or_ipvs_and_refuses_the_openflow_lab():
    bad = runner.invoke(app, ["lab", "start", "1", "--director", "openflow"])
    assert bad.exit_code == 2 and "python or ipvs" in bad.output
    of = runner.invoke(app, ["lab", "start", "6", "--director", "ipvs"])
    assert of.exit_code == 2 and "openflow director" in of.output


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"director_cpu": 0.2}, "softirq"), ({"table_bits": 16}, "conn_tab_bits")],
)
def test_knobs_kernel_ipvs_cannot_honour_are_refused(kwargs, words):
    from testbed.topo.plan import PlanError

    with pytest.raises(PlanError, match=words):
        LayoutParams(director="ipvs", **kwargs)
