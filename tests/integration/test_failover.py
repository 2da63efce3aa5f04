"""The NAT master/backup pair: takeover within the RFC's bound, connections that survive it,
preemption, split brain and its healing."""

from __future__ import annotations

import json
import sys
import time

import pytest

from testbed.net.failover import inject, master_since, rfc_bound_s, vrrp_status
from testbed.net.hosts import TestbedHosts
from testbed.net.network import Testbed
from testbed.topo.plan import LayoutParams

from .failover_helpers import (
    SLACK_S,
    add_stream_service,
    ensure_master,
    finish_stream,
    start_stream,
    takeover_s,
    wait_until,
)
from .helpers import who_served


@pytest.fixture(scope="module")
def pair():
    with Testbed("nat", LayoutParams(n_rs=2, n_clients=1)) as tb:
        tb.wait_ready()
        add_stream_service(tb)
        yield tb


def test_kill_master_backup_takes_over_in_bound_and_the_stream_goes_on(pair):
    tb = pair
    ensure_master(tb)
    server, client = start_stream(tb, 10)
    time.sleep(3)
    failed_at = time.time()
    inject(TestbedHosts(tb), tb.plan, "kill", "d1")
    took = takeover_s(tb, failed_at)
    result = finish_stream(server, client, 10)
    assert took is not None and took <= rfc_bound_s("kill", 1.0) + SLACK_S, took
    assert "error" not in result, result  # the established connection survived the takeover
    assert result["received_bps"] > 0
    assert tb.vip_holder() == "d2"  # d1 crashed with its VIPs configured; d2's VRRP is master
    stats = json.loads(tb.net["d2"].cmd("lvs-testbed director stats --json"))
    assert stats["sync"]["received"]["conns_applied"] > 0  # d2 knew the connection from d1's sync


def test_clean_shutdown_hands_over_after_skew_time(pair):
    tb = pair
    ensure_master(tb)
    failed_at = time.time()
    inject(TestbedHosts(tb), tb.plan, "shutdown", "d1")
    took = takeover_s(tb, failed_at)
    assert took is not None and took <= rfc_bound_s("shutdown", 1.0) + SLACK_S, took


def test_old_master_returns_and_preempts_without_breaking_the_stream(pair):
    tb = pair
    ensure_master(tb)
    server, client = start_stream(tb, 14)
    time.sleep(1)
    inject(TestbedHosts(tb), tb.plan, "kill", "d1")
    assert wait_until(lambda: tb.vip_holder() == "d2", 6)
    time.sleep(1)
    tb.restore("kill", "d1")  # d1's daemons restart; it learns the connection from d2's sync
    add_stream_service(tb, ("d1",))
    assert wait_until(lambda: tb.vip_holder() == "d1", 8)  # preempt: the higher priority returns
    result = finish_stream(server, client, 14)
    assert "error" not in result, result
    status = vrrp_status(tb.run.dir, "d2")
    assert all(i["state"] == "BACKUP" for i in status["instances"])


def test_cutting_only_the_vrrp_path_makes_two_masters_and_healing_leaves_one(pair):
    tb = pair
    ensure_master(tb)
    d2 = tb.net["d2"]
    d2.cmd(
        "nft add table inet cut; nft add chain inet cut in "
        "'{ type filter hook input priority 0; }'; "
        "nft add rule inet cut in ip protocol vrrp drop"
    )
    try:
        assert wait_until(lambda: master_since(vrrp_status(tb.run.dir, "d2")) is not None, 6)
        assert master_since(vrrp_status(tb.run.dir, "d1")) is not None  # split brain
    finally:
        d2.cmd("nft delete table inet cut")
    assert wait_until(
        lambda: all(i["state"] == "BACKUP" for i in vrrp_status(tb.run.dir, "d2")["instances"]), 5
    )
    assert master_since(vrrp_status(tb.run.dir, "d1")) is not None
    assert f"{tb.plan.vip}/" not in d2.cmd("ip -4 -o addr show")


def test_health_check_quiesces_a_dead_real_server_and_brings_it_back(pair):
    """HTTP_GET every delay_loop (5 s): rs2's HTTP server stopped -> weight 0 on the master
    (inhibit_on_failure), no new connections go there; restarted -> weight 1 again."""
    tb = pair
    ensure_master(tb)
    rip = tb.plan.node("rs2").ip

    def weight() -> int | None:
        for line in tb.net["d1"].cmd(f"ipvsadm -L -n -t {tb.plan.vip}:80").splitlines():
            if f"{rip}:80" in line:
                return int(line.split()[3])  # -> RIP:port Forward Weight ...
        return None

    assert weight() == 1
    servers = tb.procs[("rs2", "servers")]
    servers.terminate()
    servers.wait()
    try:
        assert wait_until(lambda: weight() == 0, 20)
        assert "rs2" not in who_served(tb.net["c1"], tb.plan.vip, 4)
    finally:
        tb.spawn(
            "rs2",
            [sys.executable, "-m", "testbed.traffic.servers", "--name", "rs2", "--bind", rip],
            "servers",
        )
    assert wait_until(lambda: weight() == 1, 20)
