"""keepalived virtual_server blocks as ipvsadm argv lists: each keyword's flag, keepalived's
defaults (NAT forwarding spelled out, no scheduler written means wlc), groups as one service
per member, and every command accepted by the director's own ipvsadm front end."""

from __future__ import annotations

import pytest

from testbed.check.lvsconfig import (
    delete_dest_argv,
    delete_service_argv,
    dest_argv,
    director_warnings,
    rs_dest,
    service_argv,
    services,
    sorry_dest,
    startup_commands,
    timeouts_argv,
)
from testbed.director import ipvsadm
from testbed.director.model import Director
from testbed.keepalived_conf import parse_config
from testbed.keepalived_conf.model import describe


def one(body: str, head: str = "10.0.1.100 80", before: str = ""):
    config = parse_config(f"{before}\nvirtual_server {head} {{\n{body}\n}}\n").config
    vs = config.virtual_servers[0]
    return config, vs, services(vs, config)


RS = "real_server 192.168.0.11 80 { weight 3 }"


def rs_argv(vs, svc, index=0, weight=None, edit=False):
    rs = vs.real_servers[index]
    return dest_argv(svc, rs_dest(vs, rs), rs.weight if weight is None else weight, edit)


def test_tcp_service_with_scheduler():
    _, vs, (svc,) = one(f"lb_algo rr\nlb_kind NAT\nprotocol TCP\n{RS}")
    assert service_argv(vs, svc) == ["-A", "-t", "10.0.1.100:80", "-s", "rr"]
    assert rs_argv(vs, svc) == [
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
    _, vs, (svc,) = one(f"lb_algo wrr\nprotocol UDP\n{RS}", head="10.0.1.100 7")
    assert service_argv(vs, svc) == ["-A", "-u", "10.0.1.100:7", "-s", "wrr"]


def test_fwmark_service_and_real_server_without_port():
    _, vs, (svc,) = one("lb_algo sh\nreal_server 192.168.0.12 { weight 1 }", head="fwmark 5")
    assert service_argv(vs, svc) == ["-A", "-f", "5", "-s", "sh"]
    assert rs_argv(vs, svc) == ["-a", "-f", "5", "-r", "192.168.0.12", "-m", "-w", "1"]


@pytest.mark.parametrize(("kind", "flag"), [("NAT", "-m"), ("DR", "-g"), ("TUN", "-i")])
def test_lb_kind_is_the_forwarding_flag(kind, flag):
    _, vs, (svc,) = one(f"lb_kind {kind}\n{RS}")
    assert rs_argv(vs, svc)[5] == flag


def test_a_real_servers_own_lvs_method_wins():
    _, vs, (svc,) = one(f"lb_kind NAT\nreal_server 192.168.0.11 80 {{ lvs_method DR }}\n{RS}")
    assert rs_argv(vs, svc, 0)[5] == "-g"
    assert rs_argv(vs, svc, 1)[5] == "-m"


def test_no_lb_kind_is_keepalived_nat_not_ipvsadm_dr():
    """keepalived forwards by NAT unless told otherwise; ipvsadm's own default is -g."""
    _, vs, (svc,) = one(RS)
    assert vs.lb_kind is None
    assert "-m" in rs_argv(vs, svc)


def test_no_lb_algo_writes_no_scheduler():
    """Both keepalived and ipvsadm default to wlc, so nothing is written."""
    _, vs, (svc,) = one(RS)
    assert service_argv(vs, svc) == ["-A", "-t", "10.0.1.100:80"]


def test_persistence_timeout_and_granularity():
    _, vs, (svc,) = one(
        f"lb_algo rr\npersistence_timeout 300\npersistence_granularity 255.255.255.0\n{RS}"
    )
    assert service_argv(vs, svc)[-4:] == ["-p", "300", "-M", "255.255.255.0"]


def test_persistence_timeout_without_value_is_six_minutes():
    _, vs, (svc,) = one(f"persistence_timeout\n{RS}")
    assert service_argv(vs, svc)[-2:] == ["-p", "360"]


def test_thresholds_are_x_and_y():
    _, vs, (svc,) = one("real_server 192.168.0.11 80 { uthreshold 100\nlthreshold 20 }")
    assert rs_argv(vs, svc)[-4:] == ["-x", "100", "-y", "20"]


def test_edit_and_delete_forms_and_weight_override():
    _, vs, (svc,) = one(f"lb_algo rr\n{RS}")
    dest = rs_dest(vs, vs.real_servers[0])
    assert service_argv(vs, svc, edit=True)[0] == "-E"
    assert rs_argv(vs, svc, weight=0, edit=True)[0::7] == ["-e", "0"]
    assert delete_dest_argv(svc, dest) == ["-d", "-t", "10.0.1.100:80", "-r", "192.168.0.11:80"]
    assert delete_service_argv(svc) == ["-D", "-t", "10.0.1.100:80"]


def test_a_group_is_one_service_per_address_and_mark():
    config, vs, svcs = one(
        RS,
        head="group G",
        before="virtual_server_group G {\n10.0.1.100 80\n10.0.2.1-3 8080\nfwmark 7\n}",
    )
    assert describe(vs) == "group G"
    assert svcs == [
        ("-t", "10.0.1.100:80"),
        ("-t", "10.0.2.1:8080"),
        ("-t", "10.0.2.2:8080"),
        ("-t", "10.0.2.3:8080"),
        ("-f", "7"),
    ]
    assert len(startup_commands(config)) == 2 * len(svcs)


def test_sorry_server_destination_takes_its_own_method():
    _, vs, (svc,) = one(
        f"lb_kind DR\nsorry_server 192.168.0.99 80\nsorry_server_lvs_method NAT\n{RS}"
    )
    assert dest_argv(svc, sorry_dest(vs, vs.sorry_server), 1)[3:6] == [
        "-r",
        "192.168.0.99:80",
        "-m",
    ]


def test_lvs_timeouts_are_ipvsadm_set():
    config, _, _ = one(RS, before="global_defs { lvs_timeouts tcp 7200 udp 60 }")
    assert timeouts_argv(config.global_defs.lvs_timeouts) == ["--set", "7200", "0", "60"]


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
        global_defs { lvs_timeouts tcp 600 tcpfin 60 udp 30 }
        virtual_server 10.0.1.100 80 {
            lb_algo wlc
            lb_kind NAT
            persistence_timeout 120
            persistence_granularity 255.255.255.0
            real_server 192.168.0.11 80 { weight 1
                uthreshold 50
                lthreshold 10 }
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
    assert ipvsadm.run(timeouts_argv(config.global_defs.lvs_timeouts), director).rc == 0
    for argv in startup_commands(config):
        result = ipvsadm.run(argv, director)
        assert result.rc == 0, (argv, result.err)
    listing = ipvsadm.run(["-L", "-n"], director).out
    assert "TCP  10.0.1.100:80 wlc persistent 120 mask 255.255.255.0" in listing
    assert "10.0.0.11:7" in listing and "Route" in listing and "Tunnel" in listing
    vs = config.virtual_servers[0]
    (svc,) = services(vs, config)
    for argv in (
        dest_argv(svc, rs_dest(vs, vs.real_servers[0]), 0, edit=True),
        delete_dest_argv(svc, rs_dest(vs, vs.real_servers[0])),
        delete_service_argv(svc),
    ):
        assert ipvsadm.run(argv, director).rc == 0, argv


def test_describe_as_keepalived_logs_it():
    _, vs, _ = one(RS)
    assert describe(vs) == "[10.0.1.100]:tcp:80"
    assert rs_dest(vs, vs.real_servers[0]).describe() == "[192.168.0.11]:80"
    assert describe(one(RS, head="fwmark 3")[1]) == "FWM 3"


def test_director_warnings_name_what_the_director_refuses():
    config = parse_config(
        "virtual_server 10.0.1.100 80 { lb_algo lblcr\nprotocol SCTP\n" + RS + " }\n"
    ).config
    warnings = director_warnings(config)
    assert any("lblcr is not implemented" in w for w in warnings)
    assert any("SCTP" in w for w in warnings)
    assert director_warnings(parse_config(f"virtual_server 10.0.1.100 80 {{ {RS} }}").config) == []
