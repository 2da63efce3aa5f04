"""keepalived.conf parser and renderer: a realistic LVS-NAT pair, errors with line numbers."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from testbed.keepalived_conf import load_config, parse_config, render_config
from testbed.keepalived_conf.model import (
    Authentication,
    ConfigError,
    HttpGet,
    Script,
    TcpCheck,
    TrackInterface,
    TrackScript,
    UrlCheck,
    VirtualAddress,
    check_timing,
)

# The NAT layout's director d1, as an LVS-HOWTO reader would write it for keepalived 2.2.
NAT_D1 = """\
! keepalived.conf for d1, the master director of the LVS-NAT pair
global_defs {
    router_id d1
    notification_email {
        admin@example.com
    }
    smtp_server 127.0.0.1
}

vrrp_script chk_director {
    script "/usr/local/bin/check_director --quiet"
    interval 2
    weight -20
    fall 2
    rise 2
}

vrrp_sync_group VG_NAT {
    group {
        VI_OUTER
        VI_INNER
    }
    notify_master "/etc/keepalived/notify.sh master"
    notify_backup "/etc/keepalived/notify.sh backup"
    notify_fault "/etc/keepalived/notify.sh fault"
}

vrrp_instance VI_OUTER {
    state MASTER
    interface d1-eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass lvsnat
    }
    virtual_ipaddress {
        10.0.1.100/24 dev d1-eth0 label d1-eth0:vip
    }
    track_interface {
        d1-eth1
    }
    track_script {
        chk_director
    }
    garp_master_delay 1
    garp_master_repeat 3
}

vrrp_instance VI_INNER {
    state MASTER
    interface d1-eth1
    virtual_router_id 52
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass lvsnat
    }
    virtual_ipaddress {
        192.168.0.254/24 dev d1-eth1
    }
    smtp_alert
}

virtual_server 10.0.1.100 80 {
    delay_loop 6
    lb_algo wlc
    lb_kind NAT
    persistence_timeout 50
    protocol TCP

    real_server 192.168.0.11 80 {
        weight 1
        inhibit_on_failure
        TCP_CHECK {
            connect_timeout 3
            connect_port 80
            retry 3
            delay_before_retry 3
        }
    }
    real_server 192.168.0.12 80 {
        weight 2
        HTTP_GET {
            url {
                path /index.html
                status_code 200
            }
            connect_timeout 3
            nb_get_retry 3
            delay_before_retry 2
        }
    }
}
"""


def parse(text: str):
    return parse_config(text, "keepalived.conf")


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


# ------------------------------------------------------------- the NAT pair


def test_nat_pair_instances():
    config, _ = parse(NAT_D1)
    assert config.global_defs.router_id == "d1"
    outer, inner = config.instances["VI_OUTER"], config.instances["VI_INNER"]
    assert (outer.state, outer.interface, outer.virtual_router_id, outer.priority) == (
        "MASTER",
        "d1-eth0",
        51,
        150,
    )
    assert outer.advert_int_s == 1 and outer.authentication == Authentication("lvsnat")
    assert outer.virtual_ipaddresses == [
        VirtualAddress(IPv4Address("10.0.1.100"), 24, dev="d1-eth0", label="d1-eth0:vip")
    ]
    assert outer.track_interfaces == [TrackInterface("d1-eth1")]
    assert outer.track_scripts == [TrackScript("chk_director")]
    assert (outer.garp_master_delay_s, outer.garp_master_repeat) == (1, 3)
    assert inner.virtual_router_id == 52 and inner.garp_master_delay_s is None
    assert config.effective_version(inner) == 2


def test_nat_pair_sync_group_and_script():
    config, _ = parse(NAT_D1)
    group = config.sync_groups["VG_NAT"]
    assert group.group == ["VI_OUTER", "VI_INNER"]
    assert group.notify_master == Script("/etc/keepalived/notify.sh master")
    assert config.sync_group_of("VI_INNER") is group
    script = config.scripts["chk_director"]
    assert script.script == "/usr/local/bin/check_director --quiet"
    assert (script.interval_s, script.weight, script.fall, script.rise) == (2, -20, 2, 2)


def test_nat_pair_virtual_server():
    config, _ = parse(NAT_D1)
    (vs,) = config.virtual_servers
    assert (vs.address, vs.port, vs.fwmark) == (IPv4Address("10.0.1.100"), 80, None)
    assert (vs.delay_loop_s, vs.lb_algo, vs.lb_kind, vs.persistence_timeout_s, vs.protocol) == (
        6,
        "wlc",
        "NAT",
        50,
        "TCP",
    )
    rs1, rs2 = vs.real_servers
    assert (rs1.address, rs1.port, rs1.weight, rs1.inhibit_on_failure) == (
        IPv4Address("192.168.0.11"),
        80,
        1,
        True,
    )
    assert rs1.checkers == [
        TcpCheck(connect_port=80, connect_timeout_s=3, retry=3, delay_before_retry_s=3)
    ]
    assert rs2.checkers == [  # HTTP_GET's nb_get_retry is retry
        HttpGet(
            urls=[UrlCheck("/index.html", ((200, 200),))],
            connect_timeout_s=3,
            retry=3,
            delay_before_retry_s=2,
        )
    ]
    # connect_timeout, retry, delay_before_retry, delay_loop, warmup (= delay_loop), alpha
    assert check_timing(vs, rs2, rs2.checkers[0]) == (3, 3, 2, 6, 6, False)


def test_nat_pair_warnings_name_file_and_line():
    _, warnings = parse(NAT_D1)
    assert [(w.file, w.line) for w in warnings] == [
        ("keepalived.conf", 4),
        ("keepalived.conf", 7),
        ("keepalived.conf", 64),
        ("keepalived.conf", 44),
    ]
    assert "notification_email" in warnings[0].message
    assert (
        str(warnings[2])
        == "keepalived.conf:64: 'smtp_alert' ignored (SMTP alerts: a lab sends no mail)"
    )
    assert "weights are ignored in a sync group" in warnings[3].message


def test_round_trip_through_the_renderer():
    config, _ = parse(NAT_D1)
    text = render_config(config)
    again, warnings = parse_config(text)
    assert again == config
    assert render_config(again) == text
    assert [w.message for w in warnings] == [
        "track_script chk_director: weights are ignored in a sync group"
    ]


def test_round_trip_keeps_quoting_and_optional_fields():
    text = """
    global_defs {
        vrrp_version 3
        vrrp_garp_master_refresh 60
    }
    vrrp_script chk {
        script "/bin/sh -c 'test -e /run/ok'"
        weight 10 reverse
        timeout 0.5
        init_fail
    }
    vrrp_instance "VI 1" {
        interface eth0
        virtual_router_id 1
        advert_int 0.25
        nopreempt
        preempt_delay 2.5
        unicast_src_ip 10.0.0.2
        unicast_peer {
            10.0.0.3
        }
        virtual_ipaddress {
            10.0.0.100 brd 10.0.0.255 dev eth0 scope global
        }
        track_interface {
            eth1 weight -10 reverse
            eth2 weight 0 reverse
        }
        track_script {
            chk weight 5 noreverse
        }
        notify "/usr/bin/logger -t \\"vrrp\\" state"
    }
    virtual_server fwmark 3 {
        lb_algo rr
        lb_kind DR
        persistence_timeout
        persistence_granularity 255.255.255.0
        real_server 10.0.0.5 { weight 2 }
    }
    """
    config, _ = parse(text)
    inst = config.instances["VI 1"]
    assert inst.advert_int_s == 0.25 and inst.version is None
    assert config.effective_version(inst) == 3
    assert inst.notify == Script('/usr/bin/logger -t "vrrp" state')
    assert inst.track_interfaces == [
        TrackInterface("eth1", -10, True),
        TrackInterface("eth2", 0, True),
    ]
    assert config.scripts["chk"].script == "/bin/sh -c 'test -e /run/ok'"
    assert config.virtual_servers[0].persistence_timeout_s == 360  # keepalived's default
    assert parse_config(render_config(config)).config == config


# ----------------------------------------------------------------- tokenizer


def test_braces_attached_separated_and_on_the_next_line():
    text = """\
vrrp_instance VI_1{
    virtual_router_id 9
    virtual_ipaddress
    {
        10.0.0.1/32}
    track_script {chk}
}
vrrp_script chk{
    script /bin/true
}
vrrp_sync_group G { group { VI_1 VI_2 }
}
vrrp_instance VI_2 {
    virtual_router_id 10
}
"""
    config, _ = parse(text)
    assert config.instances["VI_1"].virtual_ipaddresses == [
        VirtualAddress(IPv4Address("10.0.0.1"), 32)
    ]
    assert config.instances["VI_1"].track_scripts == [TrackScript("chk")]
    assert config.sync_groups["G"].group == ["VI_1", "VI_2"]


def test_comments_and_quotes():
    text = """\
# a comment
vrrp_instance VI_1 { ! another
    virtual_router_id 9   # trailing
    notify_master "/x.sh 'a b' #not-a-comment"
    notify_backup /y.sh!comment
    virtual_ipaddress {
        10.0.0.1
    }
}
"""
    config, warnings = parse(text)
    inst = config.instances["VI_1"]
    assert inst.notify_master == Script("/x.sh 'a b' #not-a-comment")
    assert inst.notify_backup == Script("/y.sh")
    assert warnings == []


def test_parameters_conditional_lines_and_static_blocks_are_read():
    text = """\
$PRIO=150
@d1 router_id d1
vrrp_instance VI_1 {
    virtual_router_id 9
    virtual_ipaddress {
        10.0.0.1 no_track
    }
    use_vmac
}
static_ipaddress {
    10.0.0.9/24 dev eth0
}
"""
    config, warnings = parse(text)
    assert [w.line for w in warnings] == [6, 8, 2]  # no_track, use_vmac, no @ID applies
    assert "@ID lines for d1 and no config id was given" in warnings[2].message
    assert "VI_1" in config.instances
    assert config.global_defs.router_id is None  # no config id: @d1 lines do not apply
    assert config.static_addresses == [VirtualAddress(IPv4Address("10.0.0.9"), 24, "eth0")]


def test_include_relative_glob_and_loop(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "keepalived.conf").write_text("include conf.d/*.conf\ninclude missing.conf\n")
    (tmp_path / "conf.d" / "a.conf").write_text(
        "vrrp_instance VI_A {\n    virtual_router_id 1\n"
        "    virtual_ipaddress {\n        10.0.0.1\n    }\n}\n"
    )
    (tmp_path / "conf.d" / "b.conf").write_text("include ../shared/vs.conf\n")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "vs.conf").write_text(
        "virtual_server 10.0.0.1 80 {\n    bogus 1\n    real_server 10.0.0.2 80 {}\n}\n"
    )
    config, warnings = load_config(tmp_path / "keepalived.conf")
    assert list(config.instances) == ["VI_A"]
    assert config.virtual_servers[0].port == 80
    assert sorted((w.file.replace(str(tmp_path), "T"), w.line) for w in warnings) == [
        ("T/conf.d/../shared/vs.conf", 2),  # unknown keyword 'bogus'
        ("T/keepalived.conf", 2),  # include missing.conf: no such file
    ]

    (tmp_path / "shared" / "vs.conf").write_text("include ../keepalived.conf\n")
    with pytest.raises(ConfigError, match="include loop") as info:
        load_config(tmp_path / "keepalived.conf")
    assert info.value.line == 1 and info.value.file.endswith("vs.conf")


# -------------------------------------------------------------------- errors

VALID = """\
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        10.0.1.100/24
    }
}
"""


def with_line(number: int, replacement: str) -> str:
    lines = VALID.splitlines()
    lines[number - 1] = replacement
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (with_line(5, "    priority"), 5, "'priority' needs a value"),
        (with_line(5, "    priority high"), 5, "'priority' needs a whole number, got 'high'"),
        (with_line(5, "    priority 0"), 5, "'priority' must be in 1..255, got 0"),
        (with_line(5, "    priority 256"), 5, "'priority' must be in 1..255, got 256"),
        (
            with_line(4, "    virtual_router_id 0"),
            4,
            "'virtual_router_id' must be in 1..255, got 0",
        ),
        (
            with_line(4, "    virtual_router_id 256"),
            4,
            "'virtual_router_id' must be in 1..255, got 256",
        ),
        (with_line(4, "    advert_int fast"), 4, "'advert_int' needs a number, got 'fast'"),
        (with_line(2, "    state PRIMARY"), 2, "'state' must be MASTER or BACKUP, got 'PRIMARY'"),
        (
            with_line(7, "        10.0.1.300/24"),
            7,
            "'virtual_ipaddress': '10.0.1.300' is not an IP address",
        ),
        (
            with_line(7, "        fd00::1/64"),
            7,
            "'virtual_ipaddress': IPv6 is not supported by this testbed",
        ),
        (with_line(8, "    "), 1, "unbalanced '{': this block is never closed"),
        (VALID + "}\n", 10, "unbalanced '}': no block is open"),
        (with_line(4, "    virtual_router_id"), 4, "'virtual_router_id' needs a value"),
        (with_line(4, "    "), 1, "vrrp_instance VI_1 has no virtual_router_id"),
        (with_line(3, '    interface "eth0'), 3, "unterminated quoted string"),
        (
            "vrrp_instance VI_1 {\n    virtual_router_id 1\n    virtual_ipaddress 10.0.0.1\n}\n",
            3,
            "'virtual_ipaddress' needs a { ... } block",
        ),
        (VALID + "{\n}\n", 10, "'{' without a keyword before it"),
    ],
)
def test_errors_carry_the_line(text, line, reason):
    error = error_of(text)
    assert (error.file, error.line, error.reason) == ("keepalived.conf", line, reason)
    assert str(error) == f"keepalived.conf:{line}: {reason}"


def test_sync_group_naming_an_unknown_instance():
    text = VALID + "vrrp_sync_group G {\n    group {\n        VI_1\n        VI_9\n    }\n}\n"
    error = error_of(text)
    assert (error.line, error.reason) == (13, "vrrp_sync_group G: no vrrp_instance VI_9")


def test_instance_in_two_sync_groups():
    group = "vrrp_sync_group {} {{\n    group {{\n        VI_1\n    }}\n}}\n"
    error = error_of(VALID + group.format("A") + group.format("B"))
    assert (error.line, error.reason) == (17, "vrrp_instance VI_1 is already in sync group A")


def test_track_script_naming_an_unknown_script():
    error = error_of(with_line(5, "    track_script {\n        nope\n    }"))
    assert (error.line, error.reason) == (5, "track_script: no vrrp_script nope")


def test_auth_type_ah_is_refused():
    error = error_of(
        with_line(5, "    authentication {\n        auth_type AH\n        auth_pass x\n    }")
    )
    assert error.line == 6 and "AH" in error.reason


def test_duplicate_vrid_on_one_interface():
    second = VALID.replace("VI_1", "VI_2").replace("eth0", "eth0")
    error = error_of(VALID + second)
    assert (error.line, error.reason) == (
        13,
        "virtual_router_id 51 is already used on eth0 by vrrp_instance VI_1",
    )


def test_v3_needs_a_virtual_address_and_v2_warns():
    bare = "vrrp_instance V {\n    virtual_router_id 1\n    version 3\n}\n"
    assert error_of(bare).reason == "vrrp_instance V: VRRPv3 needs a virtual_ipaddress"
    _, warnings = parse(bare.replace("version 3", "version 2"))
    assert warnings[0].message == "vrrp_instance V has no virtual_ipaddress"


def test_keepalived_completion_rules_become_warnings():
    text = VALID.replace(
        "    state BACKUP\n", "    state MASTER\n    nopreempt\n    preempt_delay 5\n"
    )
    text = text.replace("    priority 100\n", "    priority 100\n    advert_int 1.5\n")
    config, warnings = parse(text)
    assert [(w.line, w.message) for w in warnings] == [
        (8, "VRRPv2 advert_int must be whole seconds; it will be rounded"),
        (3, "nopreempt does not work with state MASTER; ignored"),
        (4, "preempt_delay does not work with state MASTER or nopreempt; ignored"),
    ]
    inst = config.instances["VI_1"]
    assert inst.effective_preempt and inst.effective_preempt_delay_s == 0


def test_priority_defaults_follow_keepalived():
    config, _ = parse(VALID.replace("    priority 100\n", "").replace("BACKUP", "MASTER"))
    assert config.instances["VI_1"].base_priority == 255 and config.instances["VI_1"].initial_master
    config, _ = parse(
        VALID.replace("    priority 100\n", "    priority 255\n").replace("    state BACKUP\n", "")
    )
    assert config.instances["VI_1"].initial_master


def test_checker_defaults():
    config, _ = parse(
        "virtual_server 10.0.0.1 80 { real_server 10.0.0.2 80 { TCP_CHECK {}\nHTTP_GET {} } }"
    )
    vs = config.virtual_servers[0]
    rs = vs.real_servers[0]
    assert check_timing(vs, rs, rs.checkers[0]) == (5.0, 1, 1.0, 60.0, 60.0, False)
    assert check_timing(vs, rs, rs.checkers[1]) == (5.0, 1, 3.0, 60.0, 60.0, False)


def test_status_code_ranges():
    text = """\
virtual_server 10.0.0.1 80 {
    real_server 10.0.0.2 80 {
        HTTP_GET {
            url {
                path /
                status_code 200-299 404
                digest 9b3a0c85a887a256d6939da88aabd8cd
            }
        }
    }
}
"""
    config, _ = parse(text)
    (url,) = config.virtual_servers[0].real_servers[0].checkers[0].urls
    assert url.status_codes == ((200, 299), (404, 404))
    assert url.accepts(204) and url.accepts(404) and not url.accepts(500)
    assert UrlCheck("/").accepts(299) and not UrlCheck("/").accepts(301)
    assert parse_config(render_config(config)).config == config
