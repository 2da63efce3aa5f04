"""The VRRP daemon without root: two daemons back to back through fake LAN segments on a
fake clock (vrrp_fakes.Sim), with the NAT layouts' generated keepalived.conf unless a test
needs something else. What is checked is what a tcpdump and `ip monitor` beside keepalived
would show: who advertises with which priority when, the order of VIP commands, GARP
counts, notify scripts and their arguments, and the counters."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from ipaddress import IPv4Address

import pytest

from testbed.check.checker import CheckerThread, HealthChecker, IpvsResult
from testbed.keepalived_conf import parse_config
from testbed.keepalived_conf.model import VirtualAddress
from testbed.net.daemon_configs import nat_pair_config
from testbed.runtime.control import request
from testbed.topo.plan import make_plan
from testbed.vrrp.daemon import (
    CONTROL,
    DaemonError,
    VrrpDaemon,
    check_runnable,
    default_name,
    drop_bucket,
    vip_argv,
)
from testbed.vrrp.packet import Advert, AuthType, DropReason, encode
from tests.unit.vrrp_fakes import FakeHost, Segment, Sim, ipv4_datagram

SKEW_100_S = (256 - 100) / 256  # d2's Skew_Time
DOWN_100_S = 3 + SKEW_100_S  # d2's Master_Down_Interval with advert_int 1: 3.609 s
DOWN_150_S = 3 + (256 - 150) / 256  # d1's: 3.414 s
NAT_IFS = {
    "d1": {"d1-eth0": ("10.0.1.2", "outer"), "d1-eth1": ("192.168.0.2", "inner")},
    "d2": {"d2-eth0": ("10.0.1.3", "outer"), "d2-eth1": ("192.168.0.3", "inner")},
}
OUTER_VIP = ("ip", "addr", "add", "10.0.1.100/24", "dev", "d1-eth0")
INNER_VIP = ("ip", "addr", "add", "192.168.0.254/24", "dev", "d1-eth1")


def nat_pair(sim: Sim, **kwargs) -> tuple[FakeHost, FakeHost]:
    """d1 and d2 of the NAT layout with the generated configuration."""
    plan = make_plan("nat")
    return tuple(  # type: ignore[return-value]
        sim.add(d, nat_pair_config(plan, d, **kwargs), NAT_IFS[d]) for d in ("d1", "d2")
    )


def elected() -> Sim:
    sim = Sim()
    nat_pair(sim)
    sim.start("d1", "d2")
    sim.run_until(6.0)
    return sim


def index(events: list[tuple], event: tuple) -> int:
    return events.index(event)


# ------------------------------------------------------------------ election, failover


def test_the_higher_priority_is_elected():
    sim = elected()
    assert sim.state("d1") == {"VI_OUTER": "MASTER", "VI_INNER": "MASTER"}
    assert sim.state("d2") == {"VI_OUTER": "BACKUP", "VI_INNER": "BACKUP"}
    # Both start as backups; d1's Master_Down_Interval (3 + 106/256 s) runs out first.
    assert sim.became("d1", "VI_OUTER", "MASTER") == [pytest.approx(DOWN_150_S)]
    assert sim.became("d1", "VI_INNER", "MASTER") == [pytest.approx(DOWN_150_S)]
    assert sim.status("d2", "VI_OUTER")["master"] == "10.0.1.2"
    assert sim.status("d2", "VI_INNER")["master"] == "192.168.0.2"
    assert sim.status("d1", "VI_OUTER")["master"] == "10.0.1.2"
    # Adverts at 3.414, 4.414 and 5.414 s on each segment.
    assert sim.status("d1", "VI_OUTER")["adverts_sent"] == 3
    assert sim.status("d2", "VI_OUTER")["adverts_received"] == 3
    assert sim.status("d2", "VI_OUTER")["last_advert"] == {"from": "10.0.1.2", "priority": 150}
    assert [g["state"] for g in sim.daemons["d1"].status()["groups"]] == ["MASTER"]
    assert [g["state"] for g in sim.daemons["d2"].status()["groups"]] == ["BACKUP"]
    assert all(p == 150 for _, _, p in sim.segments["outer"].adverts())


def test_backup_takes_over_3_61_s_after_the_master_stops_advertising():
    sim = elected()
    sim.run_until(10.0)
    sim.crash("d1")
    sim.run_until(20.0)
    for segment, instance, d1_ip in (
        ("outer", "VI_OUTER", "10.0.1.2"),
        ("inner", "VI_INNER", "192.168.0.2"),
    ):
        last_s = max(t for t, _, _ in sim.segments[segment].adverts(d1_ip))
        (takeover_s,) = sim.became("d2", instance, "MASTER")
        assert takeover_s - last_s == pytest.approx(DOWN_100_S)  # 3.609 s
    assert sim.state("d2") == {"VI_OUTER": "MASTER", "VI_INNER": "MASTER"}
    assert sim.status("d2", "VI_OUTER")["master"] == "10.0.1.3"


def test_sigterm_shutdown_sends_priority_0_and_the_backup_takes_over_after_skew_time():
    sim = elected()
    sim.run_until(10.25)
    sim.shutdown("d1")
    for segment in ("outer", "inner"):
        assert [(t, p) for t, _, p in sim.segments[segment].adverts() if p == 0] == [(10.25, 0)]
    sim.run_until(12.0)
    for instance in ("VI_OUTER", "VI_INNER"):
        (takeover_s,) = sim.became("d2", instance, "MASTER")
        assert takeover_s - 10.25 == pytest.approx(SKEW_100_S)  # ~0.61 s
        assert sim.became("d1", instance, "STOP") == [10.25]
    assert sim.state("d1") == {"VI_OUTER": "INIT", "VI_INNER": "INIT"}


def test_vip_commands_come_after_the_advert_and_before_the_garps():
    sim = Sim()
    d1, _ = nat_pair(sim)
    sim.start("d1", "d2")
    sim.run_until(2.0)
    assert d1.of("ip") == []  # backups hold no VIPs
    sim.run_until(4.0)
    events = d1.take()
    for ifname, vip_add, vip in (
        ("d1-eth0", OUTER_VIP, "10.0.1.100"),
        ("d1-eth1", INNER_VIP, "192.168.0.254"),
    ):
        advert = ("advert", ifname, "224.0.0.18", 150)
        garp = ("garp", ifname, vip)
        assert index(events, advert) < index(events, vip_add) < index(events, garp)
    assert [e for e in events if e[0] == "ip"] in ([OUTER_VIP, INNER_VIP], [INNER_VIP, OUTER_VIP])
    sim.run_until(10.0)
    d1.take()
    sim.shutdown("d1")
    events = d1.take()
    for ifname, vip in (("d1-eth0", "10.0.1.100/24"), ("d1-eth1", "192.168.0.254/24")):
        zero = ("advert", ifname, "224.0.0.18", 0)
        delete = ("ip", "addr", "del", vip, "dev", ifname)
        assert index(events, zero) < index(events, delete)
    assert all(e[0] != "garp" for e in events)


def test_gratuitous_arps_with_keepalived_counts():
    """garp_master_repeat 5 at once, 5 more garp_master_delay (5 s) later, no refresh."""
    sim = Sim()
    d1, _ = nat_pair(sim)
    sim.start("d1", "d2")
    sim.run_until(3.5)
    garps = d1.take()
    assert [e for e in garps if e[0] == "garp"].count(("garp", "d1-eth0", "10.0.1.100")) == 5
    assert [e for e in garps if e[0] == "garp"].count(("garp", "d1-eth1", "192.168.0.254")) == 5
    sim.run_until(DOWN_150_S + 4.9)
    assert d1.take() and not d1.of("garp")
    sim.run_until(DOWN_150_S + 5.1)
    assert d1.of("garp").count(("garp", "d1-eth0", "10.0.1.100")) == 5
    d1.take()
    sim.run_until(60.0)
    assert d1.of("garp") == []
    assert sim.status("d1", "VI_OUTER")["garps_sent"] == 10


def test_garp_settings_from_global_defs_are_followed():
    config = nat_pair_config(make_plan("nat"), "d1")
    config.global_defs = dataclasses.replace(
        config.global_defs,
        vrrp_garp_master_repeat=2,
        vrrp_garp_master_delay_s=1.0,
        vrrp_garp_master_refresh_s=10.0,
        vrrp_garp_master_refresh_repeat=1,
    )
    sim = Sim()
    d1 = sim.add("d1", config, NAT_IFS["d1"])
    sim.start("d1")
    sim.run_until(DOWN_150_S + 0.5)
    assert d1.of("garp").count(("garp", "d1-eth0", "10.0.1.100")) == 2
    sim.run_until(DOWN_150_S + 1.5)
    assert d1.of("garp").count(("garp", "d1-eth0", "10.0.1.100")) == 4
    sim.run_until(DOWN_150_S + 10.5)
    assert d1.of("garp").count(("garp", "d1-eth0", "10.0.1.100")) == 5


# ---------------------------------------------------------------------- notify scripts

NOTIFY_CONF = """
global_defs { router_id d1 }
vrrp_sync_group VG {
    group { VI_1 }
    notify /etc/keepalived/group.sh
    notify_master /etc/keepalived/group-master.sh
}
vrrp_instance VI_1 {
    interface d1-eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress { 10.0.1.100/24 }
    notify_master "/etc/keepalived/master.sh --now"
    notify_backup "logger -t vrrp backup"
    notify_stop /etc/keepalived/stop.sh
    notify /etc/keepalived/notify.sh
}
"""


def test_notify_scripts_run_with_keepalived_arguments():
    sim = Sim()
    executables = {
        f"/etc/keepalived/{s}.sh" for s in ("group", "group-master", "master", "stop", "notify")
    }
    host = sim.add(
        "d1",
        parse_config(NOTIFY_CONF).config,
        {"d1-eth0": ("10.0.1.2", "outer")},
        executables=executables,
    )
    sim.start("d1")
    assert host.of("spawn") == [
        ("spawn", "/bin/sh", "-c", "logger -t vrrp backup"),  # not an executable file: sh -c
        ("spawn", "/etc/keepalived/notify.sh", "INSTANCE", "VI_1", "BACKUP", "150"),
        ("spawn", "/etc/keepalived/group.sh", "GROUP", "VG", "BACKUP", "0"),
    ]
    host.take()
    sim.run_until(5.0)
    assert host.of("spawn") == [
        ("spawn", "/etc/keepalived/master.sh", "--now"),
        ("spawn", "/etc/keepalived/notify.sh", "INSTANCE", "VI_1", "MASTER", "150"),
        ("spawn", "/etc/keepalived/group-master.sh"),
        ("spawn", "/etc/keepalived/group.sh", "GROUP", "VG", "MASTER", "0"),
    ]
    host.take()
    sim.shutdown("d1")
    assert host.of("spawn") == [
        ("spawn", "/etc/keepalived/stop.sh"),
        ("spawn", "/etc/keepalived/notify.sh", "INSTANCE", "VI_1", "STOP", "150"),
        ("spawn", "/etc/keepalived/group.sh", "GROUP", "VG", "STOP", "0"),
    ]


def test_notify_scripts_never_block_and_failures_are_reaped():
    sim = Sim()
    host = sim.add("d1", parse_config(NOTIFY_CONF).config, {"d1-eth0": ("10.0.1.2", "outer")})
    host.script_rc["/bin/sh"] = None  # the backup notify never ends
    sim.start("d1")
    sim.run_until(5.0)  # still becomes master on time
    assert sim.became("d1", "VI_1", "MASTER") == [pytest.approx(DOWN_150_S)]
    daemon = sim.daemons["d1"]
    daemon.shutdown(sim.now)
    daemon.wait_for_children(0.05)
    assert all(c.killed for c in host.children if c.rc is None)


def test_disabled_scripts_never_run_and_a_disabled_track_script_is_untracked():
    """keepalived drops a track script it cannot run from the instances tracking it (so it
    neither fails nor weighs), and never runs a disabled notify script."""
    conf = NOTIFY_CONF.replace(
        "    notify /etc/keepalived/notify.sh\n",
        "    notify /etc/keepalived/notify.sh\n    track_script { chk }\n",
    )
    conf = "vrrp_script chk {\n    script /usr/local/bin/chk\n    weight -50\n}\n" + conf
    sim = Sim()
    sim.add(
        "d1",
        parse_config(conf).config,
        {"d1-eth0": ("10.0.1.2", "outer")},
        disabled={"/usr/local/bin/chk", "/etc/keepalived/notify.sh"},
    )
    host = sim.hosts["d1"]
    warnings = sim.daemons["d1"].warnings
    assert any("Disabling track script chk" in w for w in warnings)
    assert any("/etc/keepalived/notify.sh" in w for w in warnings)
    sim.start("d1")
    sim.run_until(5.0)
    assert sim.status("d1", "VI_1")["tracked_scripts"] == {}
    assert sim.became("d1", "VI_1", "MASTER") == [pytest.approx(DOWN_150_S)]
    spawned = [e[1:] for e in host.of("spawn")]
    assert all(
        "/usr/local/bin/chk" not in argv and "/etc/keepalived/notify.sh" not in argv
        for argv in spawned
    )


# ------------------------------------------------------- routes, rules, static entries

ROUTES_CONF = """
static_ipaddress { 10.9.0.1/24 dev d1-eth0 }
static_routes { 10.8.0.0/16 via 10.0.1.254 }
static_rules { from 10.8.0.0/16 table 8 pref 100 }
vrrp_instance VI_1 {
    interface d1-eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress { 10.0.1.100/24 }
    virtual_routes { 10.7.0.0/16 gw 10.0.1.253 dev d1-eth0 }
    virtual_rules { to 10.7.0.0/16 lookup 7 preference 70 }
}
"""


def test_virtual_routes_follow_the_vips_and_static_entries_the_daemon():
    sim = Sim()
    host = sim.add("d1", parse_config(ROUTES_CONF).config, {"d1-eth0": ("10.0.1.2", "outer")})
    sim.start("d1")
    assert host.of("ip") == [
        ("ip", "addr", "add", "10.9.0.1/24", "dev", "d1-eth0"),
        ("ip", "route", "add", "10.8.0.0/16", "via", "10.0.1.254"),
        ("ip", "rule", "add", "from", "10.8.0.0/16", "table", "8", "pref", "100"),
    ]
    host.take()
    sim.run_until(5.0)  # MASTER: VIPs, then routes, then rules
    assert host.of("ip") == [
        ("ip", "addr", "add", "10.0.1.100/24", "dev", "d1-eth0"),
        ("ip", "route", "add", "10.7.0.0/16", "via", "10.0.1.253", "dev", "d1-eth0"),
        ("ip", "rule", "add", "to", "10.7.0.0/16", "table", "7", "pref", "70"),
    ]
    host.take()
    sim.shutdown("d1")  # rules, routes, VIPs; then the static entries in reverse
    assert host.of("ip") == [
        ("ip", "rule", "del", "to", "10.7.0.0/16", "table", "7", "pref", "70"),
        ("ip", "route", "del", "10.7.0.0/16", "via", "10.0.1.253", "dev", "d1-eth0"),
        ("ip", "addr", "del", "10.0.1.100/24", "dev", "d1-eth0"),
        ("ip", "rule", "del", "from", "10.8.0.0/16", "table", "8", "pref", "100"),
        ("ip", "route", "del", "10.8.0.0/16", "via", "10.0.1.254"),
        ("ip", "addr", "del", "10.9.0.1/24", "dev", "d1-eth0"),
    ]


def test_check_unicast_src_drops_adverts_from_strangers():
    conf = """
    vrrp_instance VI_1 {
        interface d1-eth0
        virtual_router_id 51
        priority 100
        unicast_peer { 10.0.1.3 }
        check_unicast_src
        virtual_ipaddress { 10.0.1.100/24 }
    }
    """
    sim = Sim()
    host = sim.add("d1", parse_config(conf).config, {"d1-eth0": ("10.0.1.2", "outer")})
    sim.start("d1")
    advert = Advert(version=2, vrid=51, priority=200, addresses=(IPv4Address("10.0.1.100"),))
    stranger = IPv4Address("10.0.1.66")
    payload = encode(advert, stranger, IPv4Address("10.0.1.2"))
    host.sockets[0].inbox.append(ipv4_datagram(stranger, IPv4Address("10.0.1.2"), payload))
    sim.run_until(0.5)
    assert sim.status("d1", "VI_1")["drop_reasons"] == {"NOT_A_PEER": 1}


# ------------------------------------------------------------------- sync group, faults


def test_a_higher_priority_advert_on_one_segment_sends_the_whole_group_to_backup():
    sim = elected()
    d1 = sim.hosts["d1"]
    d1.take()
    intruder = Advert(2, 52, 200, (IPv4Address("192.168.0.254"),))
    src = IPv4Address("192.168.0.9")
    inner_socket = next(s for s in d1.sockets if s.ifname == "d1-eth1")
    inner_socket.inbox.append(ipv4_datagram(src, IPv4Address("224.0.0.18"), encode(intruder)))
    sim.run_until(6.5)
    assert sim.state("d1") == {"VI_OUTER": "BACKUP", "VI_INNER": "BACKUP"}
    assert sim.became("d1", "VI_OUTER", "BACKUP")[-1] == sim.became("d1", "VI_INNER", "BACKUP")[-1]
    deleted = [e[3] for e in d1.of("ip") if e[2] == "del"]
    assert sorted(deleted) == ["10.0.1.100/24", "192.168.0.254/24"]
    assert sim.status("d1", "VI_INNER")["master"] == "192.168.0.9"


def test_losing_one_nic_faults_both_instances_and_the_pair_fails_over_together():
    sim = elected()
    d1 = sim.hosts["d1"]
    sim.run_until(10.05)
    d1.take()
    d1.links["d1-eth1"] = False
    sim.run_until(10.2)
    assert sim.state("d1") == {"VI_OUTER": "FAULT", "VI_INNER": "FAULT"}
    events = d1.take()
    assert ("advert", "d1-eth0", "224.0.0.18", 0) in events  # the inner one cannot leave
    assert sorted(e[3] for e in events if e[:3] == ("ip", "addr", "del")) == [
        "10.0.1.100/24",
        "192.168.0.254/24",
    ]
    status = sim.status("d1", "VI_OUTER")
    assert status["tracked_interfaces"] == {"d1-eth0": True, "d1-eth1": False}
    assert status["master"] is None
    assert sim.status("d1", "VI_INNER")["send_errors"] == 1
    sim.run_until(15.0)
    assert sim.state("d2") == {"VI_OUTER": "MASTER", "VI_INNER": "MASTER"}
    outer_s, inner_s = (sim.became("d2", i, "MASTER")[0] for i in ("VI_OUTER", "VI_INNER"))
    assert outer_s == inner_s  # the sync group waits until both instances want to be master
    # The NIC comes back: d1 returns as backup and, with the higher priority, preempts.
    d1.links["d1-eth1"] = True
    sim.run_until(15.2)
    assert sim.state("d1") == {"VI_OUTER": "BACKUP", "VI_INNER": "BACKUP"}
    sim.run_until(20.0)
    assert sim.state("d1") == {"VI_OUTER": "MASTER", "VI_INNER": "MASTER"}
    assert sim.state("d2") == {"VI_OUTER": "BACKUP", "VI_INNER": "BACKUP"}


def test_fault_test_op_overrides_the_link_and_clears():
    sim = elected()
    daemon = sim.daemons["d1"]
    reply = daemon.handle_request({"op": "fault-test", "interface": "d1-eth0", "up": False})
    assert reply["rc"] == 0
    assert {i["state"] for i in reply["status"]["instances"]} == {"FAULT"}
    assert reply["status"]["link_overrides"] == {"d1-eth0": False}
    sim.run_until(7.0)
    assert sim.state("d1") == {"VI_OUTER": "FAULT", "VI_INNER": "FAULT"}
    reply = daemon.handle_request({"op": "fault-test", "interface": "d1-eth0", "up": None})
    assert reply["status"]["link_overrides"] == {}
    assert sim.state("d1") == {"VI_OUTER": "BACKUP", "VI_INNER": "BACKUP"}
    bad = daemon.handle_request({"op": "fault-test", "interface": "eth9", "up": False})
    assert bad["rc"] == 2 and "d1-eth0, d1-eth1" in bad["err"]
    for odd in ({"interface": ["d1-eth0"], "up": False}, {"interface": "d1-eth0", "up": "no"}):
        assert daemon.handle_request({"op": "fault-test", **odd})["rc"] == 2


# ----------------------------------------------------------------------- vrrp_script

SCRIPT_CONF = """
vrrp_script chk_director {
    script /usr/local/bin/chk_director
    interval 1
    weight -60
    fall 2
    rise 1
}
vrrp_instance VI_1 {
    interface %(if)s
    virtual_router_id 51
    priority %(prio)d
    virtual_ipaddress { 10.0.1.100/24 }
    %(track)s
}
"""


def script_pair() -> tuple[Sim, FakeHost]:
    sim = Sim()
    d1 = sim.add(
        "d1",
        parse_config(
            SCRIPT_CONF % {"if": "d1-eth0", "prio": 150, "track": "track_script { chk_director }"}
        ).config,
        {"d1-eth0": ("10.0.1.2", "outer")},
        executables={"/usr/local/bin/chk_director"},
    )
    sim.add(
        "d2",
        parse_config(SCRIPT_CONF % {"if": "d2-eth0", "prio": 100, "track": ""}).config,
        {"d2-eth0": ("10.0.1.3", "outer")},
    )
    sim.start("d1", "d2")
    return sim, d1


def test_a_failing_track_script_lowers_the_priority_and_the_peer_preempts():
    sim, d1 = script_pair()
    sim.run_until(8.0)
    assert sim.state("d1") == {"VI_1": "MASTER"}
    assert ("spawn", "/usr/local/bin/chk_director") in d1.events  # exec'd, every second
    d1.script_rc["/usr/local/bin/chk_director"] = 1
    sim.run_until(9.5)
    assert sim.status("d1", "VI_1")["effective_priority"] == 150  # one failure; fall is 2
    sim.run_until(10.5)
    assert sim.status("d1", "VI_1")["effective_priority"] == 90
    assert sim.daemons["d1"].status()["scripts"]["chk_director"]["ok"] is False
    sim.run_until(16.0)
    assert sim.state("d2") == {"VI_1": "MASTER"} and sim.state("d1") == {"VI_1": "BACKUP"}
    d1.script_rc["/usr/local/bin/chk_director"] = 0  # rise 1: one success is enough
    sim.run_until(22.0)
    assert sim.status("d1", "VI_1")["effective_priority"] == 150
    assert sim.state("d1") == {"VI_1": "MASTER"}


def test_an_unweighted_script_that_hangs_is_killed_and_means_fault():
    conf = SCRIPT_CONF.replace("weight -60", "timeout 0.5") % {
        "if": "d1-eth0",
        "prio": 150,
        "track": "track_script { chk_director }",
    }
    sim = Sim()
    host = sim.add("d1", parse_config(conf).config, {"d1-eth0": ("10.0.1.2", "outer")})
    host.script_rc["/bin/sh"] = None  # not executable here, so run by sh -c; never ends
    sim.start("d1")
    sim.run_until(0.9)
    assert host.children[0].killed
    assert sim.state("d1") == {"VI_1": "FAULT"}
    host.script_rc["/bin/sh"] = 0
    sim.run_until(1.5)
    assert sim.state("d1") == {"VI_1": "BACKUP"}


# ------------------------------------------------------------------ receiving and drops


def test_drops_are_counted_by_reason_and_bucket():
    sim = elected()
    d2 = sim.hosts["d2"]
    outer = next(s for s in d2.sockets if s.ifname == "d2-eth0")
    group = IPv4Address("224.0.0.18")
    peer = IPv4Address("10.0.1.9")
    vip = (IPv4Address("10.0.1.100"),)
    outer.inbox.extend(
        [
            b"\x45\x00\x00",  # truncated
            ipv4_datagram(peer, group, encode(Advert(2, 99, 100, vip))),  # someone else's VRID
            ipv4_datagram(
                peer,
                group,
                encode(Advert(2, 51, 200, vip, auth_type=AuthType.PASS, auth_data=b"secret")),
            ),
            ipv4_datagram(peer, group, encode(Advert(2, 51, 200, vip)), ttl=254),
            ipv4_datagram(peer, group, encode(Advert(2, 51, 200, vip, interval_cs=300))),
        ]
    )
    sim.run_until(6.5)
    status = sim.status("d2", "VI_OUTER")
    assert status["drops"] == {"malformed": 1, "other_vrid": 1, "misconfigured": 3}
    assert status["drop_reasons"] == {
        "TOO_SHORT": 1,
        "OTHER_VRID": 1,
        "AUTH_MISMATCH": 1,
        "BAD_TTL": 1,
        "INTERVAL_MISMATCH": 1,
    }
    assert sim.status("d2", "VI_INNER")["drops"] == {
        "malformed": 0,
        "other_vrid": 0,
        "misconfigured": 0,
    }
    assert sim.state("d2") == {"VI_OUTER": "BACKUP", "VI_INNER": "BACKUP"}  # none was obeyed


def test_drop_buckets():
    assert drop_bucket(DropReason.BAD_CHECKSUM) == "malformed"
    assert drop_bucket(DropReason.OTHER_VRID) == "other_vrid"
    assert drop_bucket(DropReason.ADDRESS_MISMATCH) == "misconfigured"


def test_nat1_instances_share_a_socket_without_counting_each_other_as_other_vrid():
    sim = Sim()
    plan = make_plan("nat1")
    for d, ip in (("d1", "10.0.1.2"), ("d2", "10.0.1.3")):
        sim.add(d, nat_pair_config(plan, d), {f"{d}-eth0": (ip, "lan")})
    sim.start("d1", "d2")
    sim.run_until(8.0)
    assert sim.state("d1") == {"VI_OUTER": "MASTER", "VI_INNER": "MASTER"}
    assert len(sim.hosts["d2"].sockets) == 1
    for instance in ("VI_OUTER", "VI_INNER"):
        status = sim.status("d2", instance)
        assert status["adverts_received"] == 5
        assert sum(status["drops"].values()) == 0
    # Both instances advertise from the NIC's primary address.
    assert {str(src) for _, src, _ in sim.segments["lan"].adverts()} == {"10.0.1.2"}


UNICAST_CONF = """
vrrp_instance VI_1 {
    interface %(if)s
    virtual_router_id 51
    priority %(prio)d
    unicast_src_ip %(src)s
    unicast_peer {
        %(peer)s
    }
    virtual_ipaddress { 10.0.1.100/24 }
}
"""


def test_unicast_peers_get_the_adverts_and_ttl_is_not_checked():
    sim = Sim()
    for d, prio, src, peer in (
        ("d1", 150, "10.0.1.2", "10.0.1.3"),
        ("d2", 100, "10.0.1.3", "10.0.1.2"),
    ):
        conf = UNICAST_CONF % {"if": f"{d}-eth0", "prio": prio, "src": src, "peer": peer}
        sim.add(d, parse_config(conf).config, {f"{d}-eth0": (src, "lan")})
    sim.segment("lan").ttl = 64  # keepalived does not insist on 255 for unicast
    sim.start("d1", "d2")
    sim.run_until(6.0)
    assert sim.state("d1") == {"VI_1": "MASTER"} and sim.state("d2") == {"VI_1": "BACKUP"}
    destinations = {IPv4Address(d[16:20]) for _, d in sim.segments["lan"].wire}
    assert destinations == {IPv4Address("10.0.1.3")}
    assert sim.status("d2", "VI_1")["adverts_received"] == 3
    assert sim.status("d1", "VI_1")["unicast_peers"] == ["10.0.1.3"]


def test_vrrp_v3_pair_with_fast_adverts():
    sim = Sim()
    nat_pair(sim, version=3, advert_int_s=0.1)
    sim.start("d1", "d2")
    sim.run_until(2.0)
    assert sim.state("d1") == {"VI_OUTER": "MASTER", "VI_INNER": "MASTER"}
    sim.crash("d1")
    sim.run_until(3.0)
    last_s = max(t for t, _, _ in sim.segments["outer"].adverts("10.0.1.2"))
    (takeover_s,) = sim.became("d2", "VI_OUTER", "MASTER")
    assert takeover_s - last_s == pytest.approx(0.3 + 156 * 0.1 / 256)  # 0.361 s


# ------------------------------------------------------------------ status and control


def test_status_is_json_with_transitions_on_both_clocks():
    sim = elected()
    status = sim.daemons["d1"].status()
    json.dumps(status)
    inst = status["instances"][0]
    assert [(t["previous"], t["state"]) for t in inst["transitions"]] == [
        ("INIT", "BACKUP"),
        ("BACKUP", "MASTER"),
    ]
    master = inst["transitions"][-1]
    assert master["wall_s"] - master["monotonic_s"] == pytest.approx(1_700_000_000.0)
    assert inst["vips"] == ["10.0.1.100/24"]
    assert (inst["vrid"], inst["version"], inst["advert_int_s"]) == (51, 2, 1.0)
    assert status["links"] == {"d1-eth0": True, "d1-eth1": True}
    assert status["virtual_servers"] == []


def test_the_checkers_status_joins_the_daemons():
    sim = elected()
    daemon = sim.daemons["d1"]
    checker = HealthChecker(
        nat_pair_config(make_plan("nat"), "d1"), lambda argv: IpvsResult(0, "", "")
    )
    daemon.checker = CheckerThread(checker)
    try:
        checker.start(sim.now)
        services = json.loads(json.dumps(daemon.status()))["virtual_servers"]
        assert [vs["service"] for vs in services] == ["[10.0.1.100]:tcp:80", "[10.0.1.100]:udp:7"]
        assert all(vs["applied"] for vs in services)
        assert len(services[0]["real_servers"]) == 3
    finally:
        daemon.checker.stop()


def test_control_ops():
    sim = elected()
    daemon = sim.daemons["d1"]
    assert daemon.running
    assert daemon.handle_request({"op": "status"})["rc"] == 0
    reply = daemon.handle_request({"op": "shutdown"})
    assert reply["rc"] == 0 and not daemon.running
    unknown = daemon.handle_request({"op": "reload"})
    assert unknown["rc"] == 2 and "reload" in unknown["err"]


def test_the_real_loop_serves_control_and_shuts_down_cleanly(tmp_path, monkeypatch):
    """run() on the real clock: VRRPv3 at 0.1 s, status over the control socket, shutdown op."""
    monkeypatch.setenv("LVS_TESTBED_RUN_DIR", str(tmp_path))
    segment = Segment("outer", time.monotonic)
    host = FakeHost("d1", {"d1-eth0": ("10.0.1.2", segment)})
    config = parse_config(
        "vrrp_instance VI_1 { interface d1-eth0\nvirtual_router_id 51\npriority 150\n"
        "version 3\nadvert_int 0.1\nvirtual_ipaddress { 10.0.1.100/24 } }"
    ).config
    daemon = VrrpDaemon(config, host, name="d1")
    sock_path = daemon.serve_control(tmp_path)
    assert sock_path == tmp_path / "d1.vrrp.sock"
    assert json.loads((tmp_path / "d1.vrrp.json").read_text())["socket"] == str(sock_path)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        deadline = time.monotonic() + 5.0
        state = None
        while time.monotonic() < deadline and state != "MASTER":
            time.sleep(0.05)
            status = request(sock_path, {"op": "status"}, what=CONTROL.what)["status"]
            state = status["instances"][0]["state"]
        assert state == "MASTER"
        assert request(sock_path, {"op": "shutdown"})["rc"] == 0
        thread.join(5.0)
        assert not thread.is_alive()
    finally:
        daemon.stop()
        thread.join(5.0)
        daemon.close()
    assert segment.adverts()[-1][2] == 0
    assert host.events[-1] == ("ip", "addr", "del", "10.0.1.100/24", "dev", "d1-eth0")
    assert not sock_path.exists() and not (tmp_path / "d1.vrrp.json").exists()
    assert host.closed and all(s.closed for s in host.sockets)


# ------------------------------------------------------------------ setup and helpers


def test_an_interface_without_an_address_is_refused_before_anything_runs():
    host = FakeHost("d1", {})
    with pytest.raises(DaemonError, match="d1-eth0 does not exist or has no IPv4 address"):
        VrrpDaemon(nat_pair_config(make_plan("nat"), "d1"), host, name="d1")
    assert host.closed


def test_an_instance_without_interface_is_refused():
    config = parse_config(
        "vrrp_instance VI_1 { virtual_router_id 51\nvirtual_ipaddress { 10.0.1.100 } }"
    ).config
    with pytest.raises(DaemonError, match="has no interface"):
        check_runnable(config)
    with pytest.raises(DaemonError, match="has no interface"):
        VrrpDaemon(config, FakeHost("d1", {}), name="d1")


def test_two_unicast_instances_with_one_vrid_on_one_interface_are_refused():
    conf = "".join(
        UNICAST_CONF.replace("VI_1", name)
        % {"if": "d1-eth0", "prio": 100, "src": "10.0.1.2", "peer": peer}
        for name, peer in (("VI_A", "10.0.1.3"), ("VI_B", "10.0.1.4"))
    )
    sim = Sim()
    with pytest.raises(DaemonError, match="VRID 51 is already used on d1-eth0 by VI_A"):
        sim.add("d1", parse_config(conf).config, {"d1-eth0": ("10.0.1.2", "lan")})


def test_vip_argv():
    vip = VirtualAddress(IPv4Address("10.0.1.100"))
    assert vip_argv("add", vip, "eth0") == ["addr", "add", "10.0.1.100/32", "dev", "eth0"]
    full = VirtualAddress(
        IPv4Address("10.0.1.100"),
        24,
        dev="eth1",
        label="eth1:vip",
        brd=IPv4Address("10.0.1.255"),
        scope="global",
    )
    assert vip_argv("add", full, "eth0") == [
        "addr",
        "add",
        "10.0.1.100/24",
        "dev",
        "eth1",
        "brd",
        "10.0.1.255",
        "scope",
        "global",
        "label",
        "eth1:vip",
    ]
    assert vip_argv("del", full, "eth0") == ["addr", "del", "10.0.1.100/24", "dev", "eth1"]


def test_default_name():
    assert default_name(nat_pair_config(make_plan("nat"), "d2")) == "d2"
    config = parse_config("vrrp_instance VI_1 { interface d7-eth0\nvirtual_router_id 1 }").config
    assert default_name(config) == "d7"
    assert default_name(parse_config("").config) == "vrrp"


@pytest.mark.parametrize(
    "message",
    [
        {"op": None},
        {"op": ["status"]},
        {"op": "status", "verbose": True},
        {"op": "fault-test"},
        {"op": "fault-test", "interface": "d1-eth0", "up": 1},
        {"op": "fault-test", "interface": {"d1-eth0": 1}, "up": False},
    ],
)
def test_a_malformed_control_request_is_answered_and_changes_nothing(message):
    """A wrong request to the VRRP daemon must never end it: a dead master daemon is a
    failover."""
    sim = elected()
    daemon = sim.daemons["d1"]
    reply = daemon.handle_request(message)
    assert reply["rc"] == 2 and reply["err"].startswith("bad control request")
    assert daemon.running and daemon.status()["link_overrides"] == {}


def test_every_operation_the_daemon_answers_has_a_schema():
    """An operation missing from CONTROL_SCHEMAS would be refused as unknown."""
    import inspect
    import re

    from testbed.vrrp import daemon as daemon_module

    source = inspect.getsource(daemon_module.VrrpDaemon.handle_request)
    assert set(re.findall(r'op == "([a-z-]+)"', source)) == set(daemon_module.CONTROL_SCHEMAS)
