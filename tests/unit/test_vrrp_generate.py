"""The NAT layouts' default keepalived.conf: what each director gets, round trip through the
parser, and that the daemon and the director accept it."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from testbed.check.lvsconfig import startup_commands
from testbed.director import ipvsadm
from testbed.director.model import Director
from testbed.keepalived_conf import parse_config, render_config
from testbed.keepalived_conf.model import HttpGet, TrackInterface, UdpCheck, VirtualAddress
from testbed.net.daemon_configs import GenerateError, nat_pair_config
from testbed.topo.plan import LayoutParams, make_plan
from testbed.vrrp.daemon import check_runnable
from testbed.vrrp.state import InstanceParams


@pytest.mark.parametrize("layout", ["nat", "nat1"])
@pytest.mark.parametrize("director", ["d1", "d2"])
@pytest.mark.parametrize(("version", "advert_int_s"), [(2, 1.0), (2, 3.0), (3, 1.0), (3, 0.25)])
def test_round_trip_through_the_parser(layout, director, version, advert_int_s):
    config = nat_pair_config(
        make_plan(layout), director, version=version, advert_int_s=advert_int_s
    )
    parsed = parse_config(render_config(config))
    assert parsed.warnings == []
    assert parsed.config == config
    check_runnable(parsed.config)


def test_d1_is_master_150_and_d2_backup_100():
    plan = make_plan("nat")
    for director, state, priority in (("d1", "MASTER", 150), ("d2", "BACKUP", 100)):
        config = nat_pair_config(plan, director)
        assert config.global_defs.router_id == director
        assert {i.state for i in config.instances.values()} == {state}
        assert {i.priority for i in config.instances.values()} == {priority}


def test_nat_instances_on_their_nics_with_the_vips_and_each_tracking_the_other_nic():
    config = nat_pair_config(make_plan("nat"), "d1")
    outer, inner = config.instances["VI_OUTER"], config.instances["VI_INNER"]
    assert (outer.interface, outer.virtual_router_id) == ("d1-eth0", 51)
    assert (inner.interface, inner.virtual_router_id) == ("d1-eth1", 52)
    assert outer.virtual_ipaddresses == [
        VirtualAddress(IPv4Address("10.0.1.100"), 24, dev="d1-eth0")
    ]
    assert inner.virtual_ipaddresses == [
        VirtualAddress(IPv4Address("192.168.0.254"), 24, dev="d1-eth1")
    ]
    assert outer.track_interfaces == [TrackInterface("d1-eth1")]
    assert inner.track_interfaces == [TrackInterface("d1-eth0")]
    assert config.sync_groups["VG_NAT"].group == ["VI_OUTER", "VI_INNER"]


def test_nat1_puts_both_instances_on_the_one_nic_without_tracking():
    config = nat_pair_config(make_plan("nat1"), "d2")
    assert {i.interface for i in config.instances.values()} == {"d2-eth0"}
    assert all(not i.track_interfaces for i in config.instances.values())
    assert [v.dev for i in config.instances.values() for v in i.virtual_ipaddresses] == [
        "d2-eth0",
        "d2-eth0",
    ]


def test_tracking_can_be_left_out():
    config = nat_pair_config(make_plan("nat"), "d1", track_other_nic=False)
    assert all(not i.track_interfaces for i in config.instances.values())


def test_version_and_interval():
    config = nat_pair_config(make_plan("nat"), "d1", version=3, advert_int_s=0.5)
    assert config.global_defs.vrrp_version == 3
    params = InstanceParams.from_config(config, "VI_OUTER", IPv4Address("10.0.1.2"))
    assert (params.version, params.advert_int_cs) == (3, 50)


def test_virtual_servers_cover_every_service_and_real_server():
    plan = make_plan("nat", LayoutParams(n_rs=4, scheduler="wlc"))
    config = nat_pair_config(plan, "d1")
    http, echo = config.virtual_servers
    assert (str(http.address), http.port, http.protocol) == ("10.0.1.100", 80, "TCP")
    assert (echo.port, echo.protocol) == (7, "UDP")
    for vs in (http, echo):
        assert (vs.lb_algo, vs.lb_kind) == ("wlc", "NAT")
        assert [str(rs.address) for rs in vs.real_servers] == [
            "192.168.0.11",
            "192.168.0.12",
            "192.168.0.13",
            "192.168.0.14",
        ]
        assert all(rs.inhibit_on_failure and rs.weight == 1 for rs in vs.real_servers)
    for rs in http.real_servers:
        (check,) = rs.checkers
        assert isinstance(check, HttpGet)
        assert [(u.path, u.status_codes) for u in check.urls] == [("/", ((200, 200),))]
    for rs in echo.real_servers:  # the echo service is checked too: it must answer
        (check,) = rs.checkers
        assert isinstance(check, UdpCheck) and check.require_reply


def test_the_director_accepts_the_generated_services():
    director = Director()
    for argv in startup_commands(nat_pair_config(make_plan("nat"), "d2")):
        assert ipvsadm.run(argv, director).rc == 0, argv
    assert len(director.services()) == 2


@pytest.mark.parametrize(
    ("layout", "director", "kwargs", "message"),
    [
        ("dr", "d1", {}, "no director pair"),
        ("nat", "d3", {}, "unknown director"),
        ("nat", "d1", {"version": 4}, "version must be 2 or 3"),
        ("nat", "d1", {"advert_int_s": 0.5}, "whole seconds"),
        ("nat", "d1", {"version": 3, "advert_int_s": 41.0}, "advert interval"),
        ("nat", "d1", {"advert_int_s": 0.0, "version": 3}, "advert interval"),
    ],
)
def test_refusals(layout, director, kwargs, message):
    with pytest.raises(GenerateError, match=message):
        nat_pair_config(make_plan(layout), director, **kwargs)
