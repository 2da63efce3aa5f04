"""VRRP interop with Debian's keepalived 2.2.7, both ways round, and tshark's view of our
adverts (its own module: one layout at a time)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from testbed.net.failover import rfc_bound_s, vrrp_status
from testbed.net.network import Testbed, generated_keepalived_conf
from testbed.topo.plan import LayoutParams

from .failover_helpers import (
    SLACK_S,
    ensure_master,
    takeover_s,
    wait_until,
)

# ---------------------------------------------------------------------------------------------
# Interop with Debian's keepalived 2.2.7


def run_keepalived(tb: Testbed, name: str, conf_text: str):
    conf = tb.run.dir / f"{name}.interop.conf"
    conf.write_text(conf_text)
    return tb.spawn(
        name,
        [
            "keepalived",
            "-n",
            "-l",
            "-D",
            "--vrrp",
            "-f",
            str(conf),
            "-p",
            str(tb.run.dir / f"{name}.ka.pid"),
            "-r",
            str(tb.run.dir / f"{name}.ka-vrrp.pid"),
        ],
        "keepalived",
    )


def stop_our_vrrp(tb: Testbed, name: str) -> None:
    index = json.loads((tb.run.dir / f"{name}.vrrp.json").read_text())
    os.kill(index["pid"], signal.SIGTERM)
    assert wait_until(lambda: not (tb.run.dir / f"{name}.vrrp.json").exists(), 5)


def hand_back_to_ours(tb: Testbed, name: str, ka) -> None:
    """Stop keepalived on ``name`` (killed, it leaves its VIPs behind) and start our daemon
    there again, as the module's other tests expect."""
    if ka.poll() is None:
        ka.kill()
    ka.wait()
    tb.net[name].cmd(
        f"ip addr del {tb.plan.vip}/24 dev {name}-eth0 2>/dev/null; "
        f"ip addr del {tb.plan.inner_vip}/24 dev {name}-eth1 2>/dev/null"
    )
    tb.start_failover_daemon(name)


@pytest.fixture(scope="module")
def interop():
    with Testbed("nat", LayoutParams(n_rs=1, n_clients=1)) as tb:
        tb.wait_ready()
        yield tb


def test_keepalived_master_and_our_backup(interop):
    tb = interop
    ensure_master(tb)
    stop_our_vrrp(tb, "d1")
    ka = run_keepalived(tb, "d1", generated_keepalived_conf(tb.plan, "d1"))
    try:
        # keepalived (150) takes the VIPs back from our d2 (100), which follows it as backup.
        assert wait_until(lambda: tb.vip_holder() == "d1", 10)
        assert wait_until(
            lambda: all(
                i["state"] == "BACKUP" and i["master"] == ip
                for i, ip in zip(
                    vrrp_status(tb.run.dir, "d2")["instances"],
                    ("10.0.1.2", "192.168.0.2"),
                    strict=True,
                )
            ),
            5,
        )
        failed_at = time.time()
        ka.send_signal(signal.SIGKILL)
        took = takeover_s(tb, failed_at)
        assert took is not None and took <= rfc_bound_s("kill", 1.0) + SLACK_S, took
    finally:
        hand_back_to_ours(tb, "d1", ka)


def test_our_master_and_a_higher_priority_keepalived(interop):
    tb = interop
    ensure_master(tb)
    stop_our_vrrp(tb, "d2")
    text = generated_keepalived_conf(tb.plan, "d2").replace("priority 100", "priority 200")
    ka = run_keepalived(tb, "d2", text)
    try:
        # keepalived's higher priority wins; our d1 becomes its backup.
        assert wait_until(lambda: tb.vip_holder() == "d2", 10)
        assert wait_until(
            lambda: all(i["state"] == "BACKUP" for i in vrrp_status(tb.run.dir, "d1")["instances"]),
            5,
        )
        failed_at = time.time()
        ka.send_signal(signal.SIGKILL)
        took = takeover_s(tb, failed_at, backup="d1")
        assert (
            took is not None and took <= rfc_bound_s("kill", 1.0, backup_priority=150) + SLACK_S
        ), took
    finally:
        hand_back_to_ours(tb, "d2", ka)


def test_tshark_decodes_our_adverts_as_valid_vrrp(interop):
    tb = interop
    ensure_master(tb)
    out = tb.net["c1"].cmd("timeout 10 tshark -i c1-eth0 -c 2 -f 'ip proto 112' -V 2>/dev/null")
    assert out.count("Virtual Router Redundancy Protocol") == 2, out
    assert "Virtual Rtr ID: 51" in out and "Priority: 150" in out
    assert (
        out.count("[Checksum Status: Good]") == 2
    )  # the VRRP checksum of each (tshark leaves the IP one unverified)
    assert "Time to Live: 255" in out
