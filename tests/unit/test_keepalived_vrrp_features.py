"""keepalived.conf's VRRP-side features against the parser and the model: virtual and
static routes, rules and addresses (keepalived's spellings turned into ip(8)'s),
lvs_sync_daemon in its old and new spelling, run-as users and script security,
check_unicast_src, and renaming interfaces for a lab host."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from testbed.keepalived_conf import parse_config, render_config
from testbed.keepalived_conf.ifmap import interfaces_of, parse_mapping, rename_interfaces
from testbed.keepalived_conf.model import ConfigError, LvsSyncDaemon, Route, Rule, Script

INSTANCE = """
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {{ 192.168.200.16 label eth0:1 }}
    {extra}
}}
"""


def parse(text: str):
    result = parse_config(text)
    assert parse_config(render_config(result.config)).config == result.config
    return result


def test_virtual_routes_in_keepalived_spelling_become_ip_route_arguments():
    config, warnings = parse(
        INSTANCE.format(
            extra="""virtual_routes {
        src 192.168.100.1 192.168.109.0/24 via 192.168.200.254 dev eth1
        192.168.112.0/24 via 192.168.100.254
        192.168.113.0/24 via 192.168.100.252 or 192.168.100.253 dev eth1
        blackhole 192.168.113.1/32
        0.0.0.0/0 gw 192.168.0.1 table 100
        10.9.0.0/16 dev eth2 scope link append no_track
    }"""
        )
    )
    routes = config.instances["VI_1"].virtual_routes
    assert [r.argv for r in routes] == [
        ("192.168.109.0/24", "via", "192.168.200.254", "dev", "eth1", "src", "192.168.100.1"),
        ("192.168.112.0/24", "via", "192.168.100.254"),
        (
            "192.168.113.0/24",
            *("nexthop", "via", "192.168.100.252", "dev", "eth1"),
            *("nexthop", "via", "192.168.100.253", "dev", "eth1"),
        ),
        ("blackhole", "192.168.113.1/32"),
        ("0.0.0.0/0", "via", "192.168.0.1", "table", "100"),
        ("10.9.0.0/16", "dev", "eth2", "scope", "link"),
    ]
    assert routes[-1] == Route(routes[-1].argv, append=True, no_track=True)
    assert warnings == []


def test_a_bad_route_is_skipped_like_keepalived_and_ipv6_is_refused():
    config, warnings = parse(
        "static_routes {\n 10.0.0.0/8 via 10.0.0.1 bogus 3\n 300.0.0.0/8 dev eth0\n"
        " 10.1.0.0/16 via 10.0.0.1\n}\n"
    )
    assert [r.argv[0] for r in config.static_routes] == ["10.1.0.0/16"]
    assert "unknown route keyword 'bogus'" in warnings[0].message
    assert "invalid route destination" in warnings[1].message
    with pytest.raises(ConfigError, match="IPv6"):
        parse_config("static_routes { 2001:db8::/64 dev eth0 }")


def test_rules_get_keepalived_preferences_and_invalid_addresses_skip_them():
    config, warnings = parse(
        "static_rules {\n from 192.168.100.0/24 table 1\n to 192.168.100./24 table 1\n}\n"
        + INSTANCE.format(
            extra="virtual_rules { from 10.0.0.0/8 lookup 2 priority 50\n to 10.1.0.0/16 table 3 }"
        )
    )
    assert config.static_rules == [
        Rule(("from", "192.168.100.0/24", "table", "1", "pref", "16383"))
    ]
    assert [r.argv for r in config.instances["VI_1"].virtual_rules] == [
        ("from", "10.0.0.0/8", "table", "2", "pref", "50"),
        ("to", "10.1.0.0/16", "table", "3", "pref", "16382"),
    ]
    assert "setting it to 16383" in warnings[0].message
    assert "rule skipped: invalid IP 192.168.100./24" in warnings[1].message


def test_static_addresses_and_default_interface():
    config, _ = parse(
        "global_defs { default_interface eth9 }\nstatic_ipaddress {\n"
        " 192.168.200.16 dev eth0 scope link\n 192.168.200.18\n}\n"
    )
    first, second = config.static_addresses
    assert (first.dev, first.scope, second.dev) == ("eth0", "link", None)
    assert config.global_defs.default_interface == "eth9"


def test_lvs_sync_daemon_new_and_old_spelling():
    config, _ = parse(
        "global_defs { lvs_sync_daemon eth1 VI_1 id 7 maxlen 1400 port 8849 ttl 1 "
        "group 224.0.0.82 }\n" + INSTANCE.format(extra="")
    )
    assert config.global_defs.lvs_sync_daemon == LvsSyncDaemon(
        "eth1", "VI_1", 7, 1400, 8849, 1, IPv4Address("224.0.0.82")
    )
    assert config.sync_id() == 7
    old, warnings = parse(INSTANCE.format(extra="lvs_sync_daemon_interface eth1"))
    assert old.global_defs.lvs_sync_daemon == LvsSyncDaemon("eth1", "VI_1")
    assert old.sync_id() == 51  # the instance's VRID, as keepalived takes it
    assert "deprecated" in warnings[0].message
    with pytest.raises(ConfigError, match="no vrrp_instance VI_9"):
        parse_config("global_defs { lvs_sync_daemon eth1 inst VI_9 }")


def test_script_users_and_security():
    config, _ = parse(
        "global_defs {\n script_user nobody nogroup\n enable_script_security\n}\n"
        "vrrp_script chk {\n script /bin/true\n user daemon\n}\n"
        + INSTANCE.format(extra='notify_master "/bin/notify.sh master" root root')
    )
    g = config.global_defs
    assert (g.script_user, g.script_group, g.enable_script_security) == (
        "nobody",
        "nogroup",
        True,
    )
    assert config.scripts["chk"].as_script == Script("/bin/true", "daemon")
    assert config.instances["VI_1"].notify_master == Script("/bin/notify.sh master", "root", "root")


def test_check_unicast_src_locally_and_globally():
    config, warnings = parse(INSTANCE.format(extra="check_unicast_src"))
    assert config.instances["VI_1"].check_unicast_src
    assert "without unicast_peer" in warnings[0].message
    config, _ = parse(
        "global_defs { vrrp_check_unicast_src }\n"
        + INSTANCE.format(extra="unicast_peer { 10.0.0.3 }")
    )
    assert config.instances["VI_1"].check_unicast_src


def test_interfaces_are_found_and_renamed_everywhere():
    text = (
        "global_defs { lvs_sync_daemon eth1 }\n"
        "static_ipaddress { 10.9.0.1/24 dev eth1 label eth1:s }\n"
        "static_rules { iif eth1 table 4 pref 10 }\n"
        + INSTANCE.format(
            extra="track_interface { eth1 weight 5 }\n"
            "virtual_routes { 10.8.0.0/16 via 10.0.0.1 or 10.0.0.2 dev eth1 }"
        )
        + "virtual_server 10.0.0.1 80 { real_server 10.0.0.2 80 { TCP_CHECK { bind_if eth1 } } }"
    )
    config = parse_config(text).config
    assert interfaces_of(config) == {"eth0", "eth1"}
    renamed = rename_interfaces(config, {"eth0": "d1-eth0", "eth1": "d1-eth1"})
    assert interfaces_of(renamed) == {"d1-eth0", "d1-eth1"}
    inst = renamed.instances["VI_1"]
    assert inst.virtual_ipaddresses[0].label == "d1-eth0:1"
    assert renamed.static_addresses[0].label == "d1-eth1:s"
    assert inst.virtual_routes[0].argv.count("d1-eth1") == 2
    assert renamed.virtual_servers[0].real_servers[0].checkers[0].bind_if == "d1-eth1"
    assert config.instances["VI_1"].interface == "eth0"  # the original is left alone


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        (["eth0"], "NAME=IFACE"),
        (["eth0=a-very-long-interface-name"], "not an interface name"),
        (["eth0=a", "eth0=b"], "maps eth0 twice"),
    ],
)
def test_bad_mappings(items, reason):
    with pytest.raises(ValueError, match=reason):
        parse_mapping(items)
