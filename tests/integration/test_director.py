"""The userspace director end to end: real HTTP and UDP through the VIP in DR and NAT."""

from __future__ import annotations

import sys
from collections import Counter

import pytest

from testbed.net.network import Testbed
from testbed.topo.plan import LayoutParams, ipvsadm_rules

from .helpers import dest_counter, http_get, ipvsadm, udp_echo, who_served


def reset_rules(tb) -> None:
    d1 = tb.net["d1"]
    rc, out = ipvsadm(d1, "-C")
    assert rc == 0, out
    rules = tb.run.dir / "rules.ipvsadm"
    rules.write_text(ipvsadm_rules(tb.plan))
    rc, out = ipvsadm(d1, f"-R < {rules}")
    assert rc == 0, out


@pytest.fixture(scope="module", params=["dr", "nat"])
def tb(request):
    with Testbed(request.param, LayoutParams(n_rs=3, n_clients=2)) as testbed:
        testbed.wait_ready()
        yield testbed


@pytest.fixture
def fresh(tb):
    reset_rules(tb)
    return tb


def test_http_from_several_clients_is_spread_evenly_by_rr(fresh):
    tb = fresh
    served = Counter()
    for client in ("c1", "c2"):
        served.update(who_served(tb.net[client], tb.plan.vip, 6))
    assert served == Counter({"rs1": 4, "rs2": 4, "rs3": 4}), served


def test_udp_echo_through_the_vip(fresh):
    tb = fresh
    for client in ("c1", "c2"):
        assert udp_echo(tb.net[client], tb.plan.vip)


def test_replies_bypass_the_director_in_dr_and_pass_it_in_nat(fresh):
    tb = fresh
    who_served(tb.net["c1"], tb.plan.vip, 3)
    d1 = tb.net["d1"]
    out_pkts = sum(
        dest_counter(d1, f"{tb.plan.vip}:80", f"{rs.ip}:80", column=3) for rs in tb.plan.realservers
    )
    in_pkts = sum(
        dest_counter(d1, f"{tb.plan.vip}:80", f"{rs.ip}:80", column=2) for rs in tb.plan.realservers
    )
    assert in_pkts > 0
    if tb.plan.layout == "dr":
        assert out_pkts == 0
    else:
        assert out_pkts > 0


def test_weight_zero_quiesces_new_flows_but_existing_ones_continue(fresh):
    tb = fresh
    c1, d1 = tb.net["c1"], tb.net["d1"]
    vip = tb.plan.vip
    assert udp_echo(c1, vip, sport=40001)  # this flow now belongs to one real server
    owner = next(
        rs for rs in tb.plan.realservers if dest_counter(d1, f"{vip}:7", f"{rs.ip}:7", "-u", 2) == 1
    )
    rc, out = ipvsadm(
        d1, f"-e -u {vip}:7 -r {owner.ip}:7 {'-g' if tb.plan.layout == 'dr' else '-m'} -w 0"
    )
    assert rc == 0, out
    assert udp_echo(c1, vip, sport=40001)  # the existing flow goes on
    assert dest_counter(d1, f"{vip}:7", f"{owner.ip}:7", "-u", 2) == 2
    for sport in range(40010, 40016):  # new flows avoid the quiesced server
        assert udp_echo(c1, vip, sport=sport)
    assert dest_counter(d1, f"{vip}:7", f"{owner.ip}:7", "-u", 2) == 2
    rc, out = ipvsadm(d1, "-L -n")
    assert f"{owner.ip}:7" in out and " 0 " in out


def test_deleting_a_real_server_drops_its_flows_and_reschedules_new_ones(fresh):
    """As IPVS with expire_nodest_conn=0: packets of connections to a deleted real server
    are dropped silently; new connections go to the others."""
    tb = fresh
    c1, d1 = tb.net["c1"], tb.net["d1"]
    vip = tb.plan.vip
    assert udp_echo(c1, vip, sport=40100)
    owner = next(
        rs for rs in tb.plan.realservers if dest_counter(d1, f"{vip}:7", f"{rs.ip}:7", "-u", 2) == 1
    )
    rc, out = ipvsadm(d1, f"-d -u {vip}:7 -r {owner.ip}:7")
    assert rc == 0, out
    assert not udp_echo(c1, vip, sport=40100)
    assert udp_echo(c1, vip, sport=40101)
    assert "real-server-deleted" in d1.cmd("lvs-testbed director stats")


def test_no_open_relay_to_real_servers_own_addresses(fresh):
    tb = fresh
    c1, d1 = tb.net["c1"], tb.net["d1"]
    rs1 = tb.plan.realservers[0]
    director_ip = tb.plan.node("d1").ip
    if tb.plan.layout == "nat":
        # Point the client's route for the private network at the director and try to
        # reach a real server directly: the director must not forward it.
        c1.cmd(f"ip route replace 192.168.0.0/24 via {director_ip}")
        try:
            assert http_get(c1, f"http://{rs1.ip}/", timeout_s=1.5) == ""
            assert not udp_echo(c1, rs1.ip)
        finally:
            c1.cmd("ip route del 192.168.0.0/24")
    else:
        # In DR the real servers share the director's LAN: a client frame sent to the
        # director's MAC for a real server's address must not be forwarded either.
        fw = tb.net["fw"]
        fw.cmd(f"ip route replace {rs1.ip}/32 via {director_ip}")
        try:
            assert http_get(c1, f"http://{rs1.ip}/", timeout_s=1.5) == ""
        finally:
            fw.cmd(f"ip route del {rs1.ip}/32")
    stats = d1.cmd("lvs-testbed director stats")
    assert "not-for-a-service" in stats


def test_bad_ipvsadm_commands_fail_and_change_nothing(fresh):
    tb = fresh
    d1 = tb.net["d1"]
    _rc, before = ipvsadm(d1, "-S -n")
    for bad in (
        "-A -t 10.0.0.1:80 -s nosuch",
        "-a -t 1.2.3.4:80 -r 10.0.0.11",
        "--bogus",
        "-A -t notanip:80",
        f"-A -t {tb.plan.vip}:80",
    ):
        rc, out = ipvsadm(d1, bad)
        assert rc != 0, (bad, out)
    _rc, after = ipvsadm(d1, "-S -n")
    assert after == before


def test_director_keeps_serving_through_10000_malformed_frames(fresh):
    tb = fresh
    c1, d1 = tb.net["c1"], tb.net["d1"]
    # In DR the client's frames reach the firewall, not the director: flood from the segment
    # the director is on (the firewall's LAN side in DR, the outer segment in NAT).
    if tb.plan.layout == "dr":
        sender, iface, src = tb.net["fw"], "fw-eth1", "10.0.0.1"
    else:
        sender, iface, src = c1, "c1-eth0", c1.IP()
    dmac = d1.intf(tb.plan.node("d1").intfs[0].name).MAC()
    out = sender.cmd(
        f"{sys.executable} -m testbed.traffic.rawsend --iface {iface} --dst-mac {dmac} "
        f"--dst-ip {tb.plan.vip} --src-ip {src} --count 10000"
    )
    assert int(out.strip().splitlines()[-1]) >= 9000
    assert sorted(who_served(c1, tb.plan.vip, 3)) == ["rs1", "rs2", "rs3"]
    import json

    stats = json.loads(d1.cmd("lvs-testbed director stats --json"))
    dropped = sum(stats["frames"]["dropped"].values()) + sum(stats["frames"]["ignored"].values())
    assert dropped >= 9000
    assert not any(k.startswith("error:") for k in stats["frames"]["dropped"])
