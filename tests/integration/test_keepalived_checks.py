"""keepalived.conf's health checks in the NAT layout, brought up as a user brings their own
file: ``up --config`` with one file for both directors (``@d1``/``@d2`` lines), its
interfaces ``eth0``/``eth1`` mapped to each director's outer and inner NIC. Real traffic,
real checks against the real servers' services:

* a MISC_CHECK script that exits 1 takes its real server out, and back when it exits 0;
* a UDP_CHECK on the echo service takes a real server whose echo stops answering out;
* every real server of a service down brings the sorry server in (clients are served by it),
  and one coming back takes it out;
* SSL_GET against the real servers' HTTPS; below the quorum the quorum_down script runs,
  and quorum_up when it is reached again;
* the master holds the instance's virtual routes and rules, the backup does not; both hold
  the static address.

One layout for the module (building one takes most of the time); each test puts back what
it changed.
"""

from __future__ import annotations

import stat
import textwrap
from pathlib import Path

import pytest

from testbed.net.daemon_configs import UserConfig
from testbed.net.network import Testbed
from testbed.topo.plan import LayoutParams

from .failover_helpers import wait_until
from .helpers import http_get, udp_echo

VIP = "10.0.1.100"
CHANGE_S = 20.0  # generous: checks every second, but the machine is shared

CONF = """\
global_defs {{
    script_user root
}}
static_ipaddress {{
    10.99.0.1/32 dev eth1
}}
vrrp_sync_group VG {{
    group {{
        VI_OUT
        VI_IN
    }}
}}
vrrp_instance VI_OUT {{
    @d1 state MASTER
    @d2 state BACKUP
    interface eth0
    virtual_router_id 71
    @d1 priority 150
    @d2 priority 100
    advert_int 1
    virtual_ipaddress {{
        10.0.1.100/24 dev eth0
    }}
}}
vrrp_instance VI_IN {{
    @d1 state MASTER
    @d2 state BACKUP
    interface eth1
    virtual_router_id 72
    @d1 priority 150
    @d2 priority 100
    advert_int 1
    virtual_ipaddress {{
        192.168.0.254/24 dev eth1
    }}
    virtual_routes {{
        10.98.0.0/16 via 192.168.0.11 dev eth1
    }}
    virtual_rules {{
        from 10.97.0.0/16 table 97 pref 970
    }}
}}

# HTTP through MISC_CHECK scripts (a flag file per real server), rs3 the sorry server
virtual_server 10.0.1.100 80 {{
    delay_loop 1
    warmup 0
    lb_algo rr
    lb_kind NAT
    sorry_server 192.168.0.13 80
    real_server 192.168.0.11 80 {{
        MISC_CHECK {{
            misc_path "{check} rs1"
        }}
    }}
    real_server 192.168.0.12 80 {{
        MISC_CHECK {{
            misc_path "{check} rs2"
        }}
    }}
}}

# the echo service, checked as the generated configuration checks it
virtual_server 10.0.1.100 7 {{
    delay_loop 1
    warmup 0
    lb_algo rr
    lb_kind NAT
    protocol UDP
    real_server 192.168.0.11 7 {{
        UDP_CHECK {{
            require_reply
            connect_timeout 1
            retry 0
        }}
    }}
    real_server 192.168.0.12 7 {{
        UDP_CHECK {{
            require_reply
            connect_timeout 1
            retry 0
        }}
    }}
}}

# HTTPS checked with SSL_GET; quorum 2 of 3, scripts leave a trace
virtual_server 10.0.1.100 443 {{
    delay_loop 1
    warmup 0
    lb_algo rr
    lb_kind NAT
    quorum 2
    quorum_up "{quorum} up"
    quorum_down "{quorum} down"
    real_server 192.168.0.11 443 {{
        SSL_GET {{
            url {{
                path /
                status_code 200
            }}
            connect_timeout 1
            retry 0
        }}
    }}
    real_server 192.168.0.12 443 {{
        SSL_GET {{
            url {{
                path /
            }}
            connect_timeout 1
            retry 0
        }}
    }}
    real_server 192.168.0.13 443 {{
        SSL_GET {{
            url {{
                path /
            }}
            connect_timeout 1
            retry 0
        }}
    }}
}}
"""


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    work = tmp_path_factory.mktemp("keepalived-checks")
    flags = work / "flags"
    flags.mkdir()
    check = script(work / "check.sh", f'[ ! -e "{flags}/down-$1" ]\n')
    quorum = script(work / "quorum.sh", f'echo "$1" >> "{work}/quorum-$(hostname)-$$"\n')
    conf = work / "keepalived.conf"
    conf.write_text(CONF.format(check=check, quorum=quorum))
    configs = {
        d: UserConfig(str(conf), None, {"eth0": f"{d}-eth0", "eth1": f"{d}-eth1"})
        for d in ("d1", "d2")
    }
    with Testbed("nat", LayoutParams(n_rs=3, n_clients=1), configs=configs) as tb:
        assert tb.wait_ready()
        assert wait_until(lambda: in_pool(tb, "-t", "80") == {"192.168.0.11", "192.168.0.12"}, 30)
        yield tb, flags, work


def in_pool(tb: Testbed, flag: str, port: str) -> set[str]:
    """The real servers with a weight above 0 in d1's service VIP:port."""
    _rc, out = tb.ipvsadm(f"-L -n {flag} {VIP}:{port}", "d1")
    pool = set()
    for line in out.splitlines():
        words = line.split()
        if words and words[0] == "->" and words[1][0].isdigit() and int(words[3]) > 0:
            pool.add(words[1].rsplit(":", 1)[0])
    return pool


def nft_block(tb: Testbed, host: str, rule: str) -> None:
    tb.net[host].cmd(
        "nft add table inet kacheck; "
        "nft add chain inet kacheck input '{ type filter hook input priority 0; }'; "
        f"nft add rule inet kacheck input {rule}"
    )


def nft_unblock(tb: Testbed, host: str) -> None:
    tb.net[host].cmd("nft delete table inet kacheck 2>/dev/null")


def test_a_misc_check_that_exits_1_takes_its_real_server_out_and_back(lab):
    tb, flags, _ = lab
    (flags / "down-rs1").touch()
    try:
        assert wait_until(lambda: in_pool(tb, "-t", "80") == {"192.168.0.12"}, CHANGE_S)
        assert {http_get(tb.net["c1"], f"http://{VIP}/").split()[0] for _ in range(4)} == {"rs2"}
    finally:
        (flags / "down-rs1").unlink()
    assert wait_until(lambda: in_pool(tb, "-t", "80") == {"192.168.0.11", "192.168.0.12"}, CHANGE_S)


def test_udp_check_takes_out_a_real_server_whose_echo_does_not_answer(lab):
    tb, _, _ = lab
    assert wait_until(lambda: in_pool(tb, "-u", "7") == {"192.168.0.11", "192.168.0.12"}, CHANGE_S)
    nft_block(tb, "rs1", "udp dport 7 drop")
    try:
        assert wait_until(lambda: in_pool(tb, "-u", "7") == {"192.168.0.12"}, CHANGE_S)
        assert udp_echo(tb.net["c1"], VIP)  # the service goes on, from rs2
        assert in_pool(tb, "-t", "80") == {"192.168.0.11", "192.168.0.12"}  # tcp untouched
    finally:
        nft_unblock(tb, "rs1")
    assert wait_until(lambda: in_pool(tb, "-u", "7") == {"192.168.0.11", "192.168.0.12"}, CHANGE_S)


def test_all_real_servers_down_bring_the_sorry_server_in_and_one_back_takes_it_out(lab):
    tb, flags, _ = lab
    for rs in ("rs1", "rs2"):
        (flags / f"down-{rs}").touch()
    try:
        assert wait_until(lambda: in_pool(tb, "-t", "80") == {"192.168.0.13"}, CHANGE_S)
        assert http_get(tb.net["c1"], f"http://{VIP}/").startswith("rs3")
        (flags / "down-rs2").unlink()
        assert wait_until(lambda: in_pool(tb, "-t", "80") == {"192.168.0.12"}, CHANGE_S)
        assert http_get(tb.net["c1"], f"http://{VIP}/").startswith("rs2")
    finally:
        for rs in ("rs1", "rs2"):
            (flags / f"down-{rs}").unlink(missing_ok=True)
    assert wait_until(lambda: in_pool(tb, "-t", "80") == {"192.168.0.11", "192.168.0.12"}, CHANGE_S)


def quorum_calls(work: Path) -> list[str]:
    return [line for f in sorted(work.glob("quorum-*")) for line in f.read_text().split()]


def test_ssl_get_and_quorum_below_threshold_runs_quorum_down(lab):
    tb, _, work = lab
    everyone = {"192.168.0.11", "192.168.0.12", "192.168.0.13"}
    assert wait_until(lambda: in_pool(tb, "-t", "443") == everyone, CHANGE_S)  # SSL_GET passes
    assert "down" not in quorum_calls(work)
    nft_block(tb, "rs1", "tcp dport 443 reject with tcp reset")
    try:
        assert wait_until(lambda: in_pool(tb, "-t", "443") == everyone - {"192.168.0.11"}, CHANGE_S)
        assert "down" not in quorum_calls(work)  # 2 of 3 is still the quorum
        nft_block(tb, "rs2", "tcp dport 443 reject with tcp reset")
        try:
            # (d2's checker runs the same script: wait for d1's director as well)
            assert wait_until(
                lambda: (
                    "down" in quorum_calls(work) and in_pool(tb, "-t", "443") == {"192.168.0.13"}
                ),  # no sorry server: it stays
                CHANGE_S,
            )
        finally:
            nft_unblock(tb, "rs2")
        assert wait_until(lambda: "up" in quorum_calls(work), CHANGE_S)
    finally:
        nft_unblock(tb, "rs1")
    assert wait_until(lambda: in_pool(tb, "-t", "443") == everyone, CHANGE_S)


def test_the_master_holds_virtual_routes_and_rules_and_both_the_static_address(lab):
    tb, _, _ = lab

    def has(director: str) -> tuple[bool, bool, bool]:
        host = tb.net[director]
        return (
            "10.98.0.0/16 via 192.168.0.11" in host.cmd("ip route show 10.98.0.0/16"),
            "from 10.97.0.0/16 lookup 97" in host.cmd("ip rule show"),
            "10.99.0.1/32" in host.cmd(f"ip -4 -o addr show dev {director}-eth1"),
        )

    assert wait_until(lambda: has("d1") == (True, True, True), CHANGE_S)
    assert has("d2") == (False, False, True)
