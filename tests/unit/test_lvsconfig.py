"""keepalived virtual_server blocks as ipvsadm argv lists: each keyword's flag, keepalived's
defaults (NAT forwarding spelled out, no scheduler written means wlc), and every command
accepted by the director's own ipvsadm front end."""

from __future__ import annotations

import pytest

from testbed.check.lvsconfig import (
    delete_real_server_argv,
    delete_service_argv,
    describe,
    describe_rs,
    director_warnings,
    real_server_argv,
    service_argv,
    startup_commands,
)
from testbed.director import ipvsadm
from testbed.director.model import Director
from testbed.keepalived_conf import parse_config


def one_vs(body: str, head: str = "10.0.1.100 80"):
    config = parse_config(f"virtual_server {head} {{\n{body}\n}}\n").config
    return config.virtual_servers[0]


RS = "real_server 192.168.0.11 80 { weight 3 }"


def test_tcp_service_with_scheduler():
    vs = one_vs(f"lb_algo rr\nlb_kind NAT\nprotocol TCP\n{RS}")
    assert service_argv(vs) == ["-A", "-t", "10.0.1.100:80", "-s", "rr"]
    assert real_server_argv(vs, vs.real_servers[0]) == [
        "-a",
        "-t",
        "10.0.1.100:80",
        "-r",
        "192.168.0.11:80",
        "-m",
        "-w",
        "3",
    ]


def test_udp_service():
    vs = one_vs(f"lb_algo wrr\nprotocol UDP\n{RS}", head="10.0.1.100 7")
    assert service_argv(vs) == ["-A", "-u", "10.0.1.100:7", "-s", "wrr"]
    assert real_server_argv(vs, vs.real_servers[0])[1:3] == ["-u", "10.0.1.100:7"]


def test_fwmark_service_and_real_server_without_port():
    vs = one_vs("lb_algo sh\nreal_server 192.168.0.12 { weight 1 }", head="fwmark 5")
    assert service_argv(vs) == ["-A", "-f", "5", "-s", "sh"]
    assert real_server_argv(vs, vs.real_servers[0]) == [
        "-a",
        "-f",
        "5",
        "-r",
        "192.168.0.12",
        "-m",
        "-w",
        "1",
    ]


@pytest.mark.parametrize(("kind", "flag"), [("NAT", "-m"), ("DR", "-g"), ("TUN", "-i")])
def test_lb_kind_is_the_forwarding_flag(kind, flag):
    vs = one_vs(f"lb_kind {kind}\n{RS}")
    assert real_server_argv(vs, vs.real_servers[0])[5] == flag


def test_no_lb_kind_is_keepalived_nat_not_ipvsadm_dr():
    """keepalived forwards by NAT unless told otherwise; ipvsadm's own default is -g."""
    vs = one_vs(RS)
    assert vs.lb_kind is None
    assert "-m" in real_server_argv(vs, vs.real_servers[0])


def test_no_lb_algo_writes_no_scheduler():
    """Both keepalived and ipvsadm default to wlc, so nothing is written."""
    assert service_argv(one_vs(RS)) == ["-A", "-t", "10.0.1.100:80"]


def test_persistence_timeout_and_granularity():
    vs = one_vs(f"lb_algo rr\npersistence_timeout 300\npersistence_granularity 255.255.255.0\n{RS}")
    assert service_argv(vs) == [
        "-A",
        "-t",
        "10.0.1.100:80",
        "-s",
        "rr",
        "-p",
        "300",
        "-M",
        "255.255.255.0",
    ]


def test_persistence_timeout_without_value_is_six_minutes():
    vs = one_vs(f"persistence_timeout\n{RS}")
    assert service_argv(vs)[-2:] == ["-p", "360"]


def test_edit_and_delete_forms_and_weight_override():
    vs = one_vs(f"lb_algo rr\n{RS}")
    rs = vs.real_servers[0]
    assert service_argv(vs, edit=True)[0] == "-E"
    assert real_server_argv(vs, rs, weight=0, edit=True) == [
        "-e",
        "-t",
        "10.0.1.100:80",
        "-r",
        "192.168.0.11:80",
        "-m",
        "-w",
        "0",
    ]
    assert delete_real_server_argv(vs, rs) == ["-d", "-t", "10.0.1.100:80", "-r", "192.168.0.11:80"]
    assert delete_service_argv(vs) == ["-D", "-t", "10.0.1.100:80"]


def test_startup_commands_are_each_service_then_its_real_servers():
    config = parse_config(
        """
        virtual_server 10.0.1.100 80 {
            lb_algo rr
            real_server 192.168.0.11 80 { weight 1 }
            real_server 192.168.0.12 80 { weight 2 }
        }
        virtual_server 10.0.1.100 7 {
            protocol UDP
            real_server 192.168.0.11 7 { weight 1 }
        }
        """
    ).config
    assert [argv[0] for argv in startup_commands(config)] == ["-A", "-a", "-a", "-A", "-a"]
    assert startup_commands(config)[3] == ["-A", "-u", "10.0.1.100:7"]


def test_every_translation_is_accepted_by_the_directors_ipvsadm():
    config = parse_config(
        """
        virtual_server 10.0.1.100 80 {
            lb_algo wlc
            lb_kind NAT
            persistence_timeout 120
            persistence_granularity 255.255.255.0
            real_server 192.168.0.11 80 { weight 1 }
        }
        virtual_server 10.0.0.100 7 {
            lb_algo rr
            lb_kind DR
            protocol UDP
            real_server 10.0.0.11 7 { weight 2 }
        }
        virtual_server fwmark 9 {
            lb_algo sh
            lb_kind TUN
            real_server 10.0.0.12 { weight 1 }
        }
        """
    ).config
    director = Director()
    for argv in startup_commands(config):
        result = ipvsadm.run(argv, director)
        assert result.rc == 0, (argv, result.err)
    listing = ipvsadm.run(["-L", "-n"], director).out
    assert "TCP  10.0.1.100:80 wlc persistent 120 mask 255.255.255.0" in listing
    assert "10.0.0.11:7" in listing and "Route" in listing and "Tunnel" in listing
    vs = config.virtual_servers[0]
    for argv in (
        real_server_argv(vs, vs.real_servers[0], weight=0, edit=True),
        delete_real_server_argv(vs, vs.real_servers[0]),
        delete_service_argv(vs),
    ):
        assert ipvsadm.run(argv, director).rc == 0, argv


def test_describe_as_keepalived_logs_it():
    vs = one_vs(RS)
    assert describe(vs) == "[10.0.1.100]:tcp:80"
    assert describe_rs(vs.real_servers[0]) == "[192.168.0.11]:80"
    assert describe(one_vs(RS, head="fwmark 3")) == "FWM 3"


def test_director_warnings_name_what_the_director_refuses():
    config = parse_config(
        "virtual_server 10.0.1.100 80 { lb_algo lblcr\nprotocol SCTP\n" + RS + " }\n"
    ).config
    warnings = director_warnings(config)
    assert any("lblcr is not implemented" in w for w in warnings)
    assert any("SCTP" in w for w in warnings)
    assert director_warnings(parse_config(f"virtual_server 10.0.1.100 80 {{ {RS} }}").config) == []
