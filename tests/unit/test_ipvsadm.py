"""ipvsadm's syntax and output. Expected text is built from ipvsadm.c's own printf formats
(C's %-28s etc. mean the same in Python's % operator), or written out literally."""
# ruff: noqa: UP031 -- the % formats are ipvsadm.c's, copied so the expectations are its own

import pytest

from testbed.director.conntable import INPUT, TH_ACK, TH_SYN
from testbed.director.ipvsadm import run
from testbed.director.model import Director, ip_to_int

HEADER = "IP Virtual Server version 1.2.1 (size=4096)\n"
TITLE = (
    "Prot LocalAddress:Port Scheduler Flags\n"
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
)
TRY_HELP = "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n"


def dest_line(name, fwd, weight, active=0, inactive=0):
    return "  -> %-28s %-7s %-6d %-10u %-10u\n" % (name, fwd, weight, active, inactive)


def ok(d, *argv, stdin=None, now=None):
    result = run(list(argv), d, stdin, now)
    assert result.rc == 0 and result.err == "", result
    return result.out


def dr_lab():
    """The DR layout of the design: VIP 10.0.0.100, real servers 10.0.0.11.., HTTP and echo."""
    d = Director(seed=1)
    ok(d, "-A", "-t", "10.0.0.100:80", "-s", "wlc")
    ok(d, "-a", "-t", "10.0.0.100:80", "-r", "10.0.0.12", "-g", "-w", "2")
    ok(d, "-a", "-t", "10.0.0.100:80", "-r", "10.0.0.11", "-g")
    ok(d, "-A", "-u", "10.0.0.100:7", "-s", "rr")
    ok(d, "-a", "-u", "10.0.0.100:7", "-r", "10.0.0.11:7")
    return d


def test_list_numeric_golden():
    d = dr_lab()
    expected = (
        HEADER
        + TITLE
        + "TCP  10.0.0.100:80 wlc\n"
        + "  -> 10.0.0.11:80                 Route   1      0          0         \n"
        + dest_line("10.0.0.12:80", "Route", 2)
        + "UDP  10.0.0.100:7 rr\n"
        + dest_line("10.0.0.11:7", "Route", 1)
    )
    assert ok(d, "-L", "-n") == expected
    assert ok(d, "-Ln") == expected
    assert ok(d, "-l", "--numeric") == expected
    assert ok(d) == expected  # no arguments: list everything
    assert ok(d, "-L") == expected  # names are never resolved here


def test_list_flags_column_and_methods():
    d = Director(seed=1)
    ok(d, "-A", "-t", "10.0.0.100:443", "-p", "-M", "255.255.255.0", "-s", "sh", "-b", "sh-port")
    ok(d, "-a", "-t", "10.0.0.100:443", "-r", "192.168.0.11:8443", "-m", "-w", "0")
    ok(d, "-A", "-f", "12", "-p", "600")
    ok(d, "-a", "-f", "12", "-r", "172.16.0.5", "-i", "-w", "65535")
    assert ok(d, "-L", "-n") == (
        HEADER
        + TITLE
        + "TCP  10.0.0.100:443 sh (sh-port) persistent 360 mask 255.255.255.0\n"
        + dest_line("192.168.0.11:8443", "Masq", 0)
        + "FWM  12 wlc persistent 600\n"
        + dest_line("172.16.0.5:0", "Tunnel", 65535)
    )


def test_active_and_inactive_columns_and_single_service_listing():
    d = dr_lab()
    vip = ip_to_int("10.0.0.100")
    svc = d.find_service(6, vip, 80)
    a = d.schedule_new(svc, 6, ip_to_int("10.0.1.11"), 40000, vip, 80, 0.0)
    d.on_tcp_packet(a, INPUT, TH_SYN, 0.0)
    d.on_tcp_packet(a, INPUT, TH_ACK, 0.1)
    d.schedule_new(svc, 6, ip_to_int("10.0.1.12"), 40000, vip, 80, 0.0)
    rows = {a.dest.addr: (1, 0)}
    other = next(x for x in svc.dests if x is not a.dest)
    rows[other.addr] = (0, 1) if other.inactconns else (0, 0)
    out = ok(d, "-L", "-n", "-t", "10.0.0.100:80")
    assert out.startswith(TITLE + "TCP  10.0.0.100:80 wlc\n")  # no version header
    assert sum(x.activeconns for x in svc.dests) == 1
    assert sum(x.inactconns for x in svc.dests) == 1
    for dest in svc.dests:
        name = "10.0.0.%d:80" % (dest.addr & 255)
        assert dest_line(name, "Route", dest.weight, dest.activeconns, dest.inactconns) in out


def test_stats_layout_and_large_number_scaling():
    d = dr_lab()
    dest = d.service((6, ip_to_int("10.0.0.100"), 80, 0)).find_dest(ip_to_int("10.0.0.11"), 80)
    s = dest.stats
    s.conns, s.inpkts, s.outpkts = 99_999_999, 100_000_000, 5_000_000_000
    s.inbytes, s.outbytes = 123_456_789_012, 10**15
    out = ok(d, "-L", "-n", "--stats")
    title = "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n" % (
        "Prot LocalAddress:Port",
        "Conns",
        "InPkts",
        "OutPkts",
        "InBytes",
        "OutBytes",
    )
    assert out.startswith(HEADER + title)
    # print_largenum(): %9llu below 100 million, then %8lluK, %8lluM, %8lluG, %8lluT
    figures = "%9u%8uK%8uM%8uG%8uT\n" % (99999999, 100000, 5000, 123, 1000)
    assert "  -> %-28s" % "10.0.0.11:80" + figures in out
    assert "%-33s" % "TCP  10.0.0.100:80" + figures in out
    assert (
        "  -> 10.0.0.11:80                  99999999  100000K    5000M     123G    1000T\n"
        not in out
    )
    assert "  -> 10.0.0.11:80                 99999999  100000K    5000M     123G    1000T\n" in out
    exact = ok(d, "-L", "-n", "--stats", "--exact")
    # --exact: width 9, or the number's length + 1 when longer than 8 digits
    assert (
        "  -> %-28s" % "10.0.0.11:80"
    ) + " 99999999 100000000 5000000000 123456789012 1000000000000000\n" in exact


def test_rate_layout():
    d = dr_lab()
    dest = d.service((6, ip_to_int("10.0.0.100"), 80, 0)).find_dest(ip_to_int("10.0.0.11"), 80)
    for step in range(1, 100):
        dest.stats.conns += 20
        dest.stats.inpkts += 2000
        dest.stats.inbytes += 3_000_000
        d.tick(2.0 * step)
    out = ok(d, "-L", "-n", "--rate")
    title = "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n" % (
        "Prot LocalAddress:Port",
        "CPS",
        "InPPS",
        "OutPPS",
        "InBPS",
        "OutBPS",
    )
    assert out.startswith(HEADER + title)
    assert "  -> %-28s %8u %8u %8u%9u%9u\n" % ("10.0.0.11:80", 10, 1000, 0, 1500000, 0) in out
    assert "%-33s%9u%9u%9u%9u%9u\n" % ("TCP  10.0.0.100:80", 10, 1000, 0, 1500000, 0) in out


def test_thresholds_and_persistent_conn_layouts():
    d = dr_lab()
    ok(d, "-e", "-t", "10.0.0.100:80", "-r", "10.0.0.11", "-x", "100", "-y", "50")
    out = ok(d, "-L", "-n", "--thresholds")
    assert (
        "%-33s %-10s %-10s %-10s %-10s\n"
        % ("Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn")
    ) in out
    assert "  -> %-28s %-10u %-10u %-10u %-10u\n" % ("10.0.0.11:80", 100, 50, 0, 0) in out
    out = ok(d, "-L", "-n", "--persistent-conn")
    assert (
        "%-33s %-9s %-11s %-10s %-10s\n"
        % ("Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn")
    ) in out
    assert "  -> %-28s %-9u %-11u %-10u %-10u\n" % ("10.0.0.12:80", 2, 0, 0, 0) in out


def test_connection_listing():
    d = Director(seed=1)
    ok(d, "-A", "-t", "10.0.0.100:80", "-p")
    ok(d, "-a", "-t", "10.0.0.100:80", "-r", "10.0.0.11")
    ok(d, "-A", "-u", "10.0.0.100:7")
    ok(d, "-a", "-u", "10.0.0.100:7", "-r", "10.0.0.12")
    vip, cip = ip_to_int("10.0.0.100"), ip_to_int("10.0.1.11")
    tcp = d.schedule_new(d.find_service(6, vip, 80), 6, cip, 40000, vip, 80, 10.0)
    d.on_tcp_packet(tcp, INPUT, TH_SYN, 10.0)
    udp = d.schedule_new(d.find_service(17, vip, 7), 17, cip, 5353, vip, 7, 10.0)
    d.on_udp_packet(udp, 10.0)
    out = ok(d, "-L", "-n", "-c", now=10.5)
    lines = out.splitlines(keepends=True)
    assert lines[:2] == [
        "IPVS connection entries\n",
        "pro expire state       source             virtual            destination\n",
    ]
    row = "%-3s %-6s %-11s %-18s %-18s %s\n"
    assert sorted(lines[2:]) == sorted(
        [
            row % ("TCP", "00:59", "SYN_RECV", "10.0.1.11:40000", "10.0.0.100:80", "10.0.0.11:80"),
            row % ("TCP", "05:59", "NONE", "10.0.1.11:0", "10.0.0.100:80", "10.0.0.11:80"),
            row % ("UDP", "04:59", "UDP", "10.0.1.11:5353", "10.0.0.100:7", "10.0.0.12:7"),
        ]
    )
    d.clock_s = 10.5
    assert ok(d, "-Lnc") == out  # default clock: the director's latest time


def test_timeout_listing_and_set():
    d = Director()
    assert ok(d, "-L", "--timeout") == "Timeout (tcp tcpfin udp): 900 120 300\n"
    ok(d, "--set", "3600", "0", "60")
    assert ok(d, "-L", "--timeout") == "Timeout (tcp tcpfin udp): 3600 120 60\n"


def test_save_format_and_restore_round_trip():
    d = Director(seed=1)
    ok(d, "-A", "-t", "10.0.0.100:80", "-s", "wrr")
    ok(d, "-a", "-t", "10.0.0.100:80", "-r", "10.0.0.11:80", "-g", "-w", "3")
    ok(d, "-a", "-t", "10.0.0.100:80", "-r", "192.168.0.11:8080", "-m", "-x", "9", "-y", "4")
    ok(
        d,
        "-A",
        "-u",
        "10.0.0.100:53",
        "-s",
        "mh",
        "-b",
        "mh-fallback,mh-port",
        "-p",
        "60",
        "-M",
        "255.255.0.0",
    )
    ok(d, "-a", "-u", "10.0.0.100:53", "-r", "10.0.0.12", "-i")
    ok(d, "-A", "-f", "1", "-s", "rr")
    saved = ok(d, "-S", "-n")
    # 192.168.0.11 before 10.0.0.11: libipvs's wrapping address comparison (see below)
    assert saved == (
        "-A -t 10.0.0.100:80 -s wrr\n"
        "-a -t 10.0.0.100:80 -r 192.168.0.11:8080 -m -w 1 -x 9 -y 4\n"
        "-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 3\n"
        "-A -u 10.0.0.100:53 -s mh -p 60 -M 255.255.0.0 -b mh-fallback,mh-port\n"
        "-a -u 10.0.0.100:53 -r 10.0.0.12:53 -i -w 1 --tun-type ipip\n"
        "-A -f 1 -s rr\n"
    )
    listing = ok(d, "-L", "-n")
    ok(d, "-C")
    assert ok(d, "-S") == ""
    ok(d, "-R", stdin=saved)
    assert ok(d, "-S", "-n") == saved
    assert ok(d, "-L", "-n") == listing
    fresh = Director(seed=2)
    ok(fresh, "--restore", stdin="# saved rules\n\n" + saved)
    assert ok(fresh, "-S") == saved


def test_restore_checks_every_line_before_applying_any():
    d = dr_lab()
    before = d.snapshot()
    rules = (
        "-A -t 10.0.0.200:80 -s rr\n"
        "-a -t 10.0.0.200:80 -r 10.0.0.11\n"
        "-a -t 10.0.0.200:80 -r 10.0.0.11\n"  # a second time: refused
        "-A -t 10.0.0.201:80\n"
    )
    result = run(["-R"], d, rules)
    assert (result.rc, result.out, result.err) == (255, "", "Destination already exists\n")
    assert d.snapshot() == before
    result = run(["-R"], d, "-A -t 10.0.0.202:80\n-R\n")
    assert result.rc == 255 and result.err == TRY_HELP
    assert d.snapshot() == before


def test_ipvsadm_defaults_on_edit_are_ipvsadm_s():
    d = dr_lab()
    ok(d, "-E", "-t", "10.0.0.100:80")  # no -s: back to wlc, as ipvsadm sends it
    ok(d, "-A", "-t", "10.0.0.100:81", "-s", "rr")
    ok(d, "-E", "-t", "10.0.0.100:81")
    assert "TCP  10.0.0.100:81 wlc\n" in ok(d, "-Ln")
    ok(d, "-a", "-t", "10.0.0.100:81", "-r", "192.168.0.11:81", "-m", "-w", "5")
    ok(d, "-e", "-t", "10.0.0.100:81", "-r", "192.168.0.11", "-w", "0")  # -g by default
    assert dest_line("192.168.0.11:81", "Route", 0) in ok(d, "-Ln")
    # -g forces the service's port, so a NAT server on another port is not found
    ok(d, "-a", "-t", "10.0.0.100:81", "-r", "192.168.0.12:8080", "-m")
    result = run(["-e", "-t", "10.0.0.100:81", "-r", "192.168.0.12:8080", "-w", "2"], d)
    assert (result.rc, result.err) == (255, "No such destination\n")
    ok(d, "-e", "-t", "10.0.0.100:81", "-r", "192.168.0.12:8080", "-w", "2", "-m")
    assert dest_line("192.168.0.12:8080", "Masq", 2) in ok(d, "-Ln")


def test_option_syntax_variants():
    d = Director(seed=1)
    ok(d, "--add-service", "--tcp-service=10.0.0.100:http", "--scheduler", "rr", "--persistent=900")
    ok(d, "-A", "-t10.0.0.100:8080", "-p")
    ok(d, "-A", "-u", "10.0.0.100:domain")
    ok(d, "-at", "10.0.0.100:80", "-r", "10.0.0.11", "-w3")
    out = ok(d, "-Ln")
    assert "TCP  10.0.0.100:80 rr persistent 900\n" in out
    assert "TCP  10.0.0.100:8080 wlc persistent 360\n" in out
    assert "UDP  10.0.0.100:53 wlc\n" in out
    assert dest_line("10.0.0.11:80", "Route", 3) in out
    ok(d, "-Z")
    ok(d, "-Z", "-t", "10.0.0.100:80")
    ok(d, "-d", "-t", "10.0.0.100:80", "-r", "10.0.0.11")
    ok(d, "-D", "-u", "10.0.0.100:53")
    ok(d, "--clear")
    assert ok(d, "-Ln") == HEADER + TITLE


def test_nosort_shows_ipvs_list_order():
    d = dr_lab()
    out = ok(d, "-Ln", "--nosort")
    # services in the order added; real servers newest first
    assert out.index("TCP  10.0.0.100:80") < out.index("UDP  10.0.0.100:7")
    assert out.index("10.0.0.11:80") < out.index("10.0.0.12:80")
    ok(d, "-a", "-t", "10.0.0.100:80", "-r", "10.0.0.9")
    out = ok(d, "-Ln", "--nosort")
    assert out.index("10.0.0.9:80") < out.index("10.0.0.11:80")
    out = ok(d, "-Ln", "--sort")
    assert out.index("10.0.0.9:80") < out.index("10.0.0.11:80") < out.index("10.0.0.12:80")


def test_sorting_compares_addresses_as_libipvs_does():
    """libipvs subtracts u32 addresses into an int and glibc's qsort merges with that: an
    address 2^31 or more below another sorts after it. Real servers added in this order are
    listed by kernel IPVS with the real ipvsadm as 172.16.0.9, 192.168.0.11, 192.168.0.12,
    0.1.2.3 (tests/kernel), and services the same way."""
    d = Director()
    ok(d, "-A", "-t", "10.0.1.100:80", "-s", "rr")
    for rs in ("192.168.0.11", "192.168.0.12", "172.16.0.9", "0.1.2.3"):
        ok(d, "-a", "-t", "10.0.1.100:80", "-r", rs, "-m")
    out = ok(d, "-Ln")
    order = [
        line.split()[1] for line in out.splitlines() if line.startswith("  -> ") and ":" in line
    ]
    assert order[1:] == ["172.16.0.9:80", "192.168.0.11:80", "192.168.0.12:80", "0.1.2.3:80"]
    ok(d, "-A", "-t", "192.168.7.1:80")
    ok(d, "-A", "-t", "10.0.1.100:81")
    services = [line.split()[1] for line in ok(d, "-Ln").splitlines() if line.startswith("TCP")]
    assert services == ["192.168.7.1:80", "10.0.1.100:80", "10.0.1.100:81"]


def test_help_and_version():
    d = Director()
    out = ok(d, "-h")
    assert out.startswith("ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n")
    assert "Usage:" in out and "always printed numerically" in out
    assert ok(d, "--version") == "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"


BAD_COMMANDS = [
    (["-A", "-t", "10.0.0.100:80"], 255, "Service already exists\n"),
    (["-A", "-t", "10.0.0.100"], 2, "Zero port specified for non-persistent service\n"),
    (
        ["-A", "-t", "10.0.0.200:80", "-s", "fastest"],
        255,
        "Scheduler or persistence engine not found\n",
    ),
    (["-E", "-t", "10.0.0.200:80"], 255, "No such service\n"),
    (["-D", "-t", "10.0.0.200:80"], 255, "No such service\n"),
    (["-Z", "-t", "10.0.0.200:80"], 255, "No such service\n"),
    (["-a", "-t", "10.0.0.200:80", "-r", "10.0.0.11"], 255, "Service not defined\n"),
    (["-a", "-t", "10.0.0.100:80", "-r", "10.0.0.11"], 255, "Destination already exists\n"),
    (["-e", "-t", "10.0.0.100:80", "-r", "10.0.0.99"], 255, "No such destination\n"),
    (["-d", "-t", "10.0.0.100:80", "-r", "10.0.0.99"], 255, "No such destination\n"),
    (
        ["-a", "-t", "10.0.0.100:80", "-r", "224.0.0.1"],
        255,
        "Invalid operation.  Possibly wrong module version, address not unicast, ...\n",
    ),
    (
        ["-a", "-t", "10.0.0.100:80", "-r", "10.0.0.19", "-x", "5", "-y", "10"],
        255,
        "Numerical result out of range\n",
    ),
    (
        ["-a", "-t", "10.0.0.100:80", "-r", "10.0.0.19", "-w", "2147483648"],
        2,
        "illegal weight specified\n",
    ),
    (
        ["-a", "-t", "10.0.0.100:80", "-r", "224.0.0.5"],
        255,
        "Invalid operation.  Possibly wrong module version, address not unicast, ...\n",
    ),
    (
        ["-a", "-t", "10.0.0.100:80", "-r", "0.0.0.0"],
        255,
        "Invalid operation.  Possibly wrong module version, address not unicast, ...\n",
    ),
    (["-a", "-t", "10.0.0.100:80", "-r", "10.0.0.19", "-w", "-1"], 2, "illegal weight specified\n"),
    (
        ["-a", "-t", "10.0.0.100:80", "-r", "10.0.0.19", "-x", "many"],
        2,
        "illegal u_threshold specified\n",
    ),
    (
        ["-a", "-t", "10.0.0.100:80", "-r", "host.example"],
        2,
        "illegal real server address[:port] specified\n",
    ),
    (["-A", "-t", "10.0.0.200:80", "-p", "0"], 2, "invalid timeout value `0' specified\n"),
    (
        ["-A", "-t", "10.0.0.200:80", "-M", "bogus"],
        2,
        "illegal virtual server persistent mask specified\n",
    ),
    (["-A", "-f", "0"], 2, "invalid fwmark value `0' specified\n"),
    (["-A", "-u", "host.example:53"], 2, "illegal virtual server address[:port] specified\n"),
    (["-A", "-t", "10.0.0.200:nosuchport"], 2, "illegal virtual server address[:port] specified\n"),
    (["-A", "-t", "8080"], 2, "illegal virtual server address[:port] specified\n"),
    (
        ["-A", "-t", "10.0.0.200:80", "-s", "rr", "-s", "wlc"],
        2,
        "multiple 'scheduler' options specified\n",
    ),
    (
        ["-A", "-t", "10.0.0.200:80", "-r", "10.0.0.11"],
        2,
        "Illegal 'real-server' option with the 'add-service' command\n",
    ),
    (
        ["-a", "-t", "10.0.0.100:80"],
        2,
        "You need to supply the 'real-server' option for the 'add-server' command\n",
    ),
    (["-A"], 2, "You need to supply the 'service-address' option for the 'add-service' command\n"),
    (["-L", "-c", "--stats"], 2, "options conflicts in the list command\n"),
    (
        ["-L", "--timeout", "-c"],
        2,
        "The option 'timeout' conflicts with the 'connection' option in the 'list' command\n",
    ),
    (["--set", "1", "2"], 2, "--set option requires 3 timeout values\n"),
    (["--set", "1", "2", "x"], 2, "invalid timeout value `x' specified\n"),
    (["--set", "1", "2", "3", "4"], 2, "unexpected argument 4\n"),
    (["-C", "now"], 2, "unexpected argument now\n"),
    (["-A", "-t", "10.0.0.200:80", "-b", "mh-port"], 2, "incompatible scheduler flag `mh-port'\n"),
    (["-A", "-t", "10.0.0.200:80", "-b", "turbo"], 2, "invalid scheduler flag `turbo'\n"),
    (["-L", "-A"], 2, "invalid option `-A'\n"),
    (["-L", "--frobnicate"], 255, "--frobnicate: unknown option\n"),
    (["-A", "-t"], 255, "-t: missing argument\n"),
    (["-C", "--clear=yes"], 255, "--clear=yes: option does not take an argument\n"),
    (["-Q"], 255, TRY_HELP),
    (["-n", "-L"], 255, TRY_HELP),
    (["10.0.0.1"], 255, TRY_HELP),
    (["-L", "-t", "10.0.0.200:80"], 1, "No such service\n"),
]


@pytest.mark.parametrize(
    ("argv", "rc", "err"), BAD_COMMANDS, ids=[" ".join(a) for a, _, _ in BAD_COMMANDS]
)
def test_bad_commands_are_refused_and_change_nothing(argv, rc, err):
    d = dr_lab()
    vip = ip_to_int("10.0.0.100")
    d.schedule_new(d.find_service(6, vip, 80), 6, ip_to_int("10.0.1.11"), 1234, vip, 80, 0.0)
    before, conns = d.snapshot(), len(d.conns)
    result = run(argv, d)
    assert (result.rc, result.out, result.err) == (rc, "", err)
    assert d.snapshot() == before and len(d.conns) == conns


@pytest.mark.parametrize(
    "argv",
    [
        ["-A", "-t", "10.0.0.200:80", "--ops"],
        ["-A", "-f", "1", "-6"],
        ["--start-daemon", "master"],
        ["-A", "--sctp-service", "10.0.0.1:80"],
    ],
)
def test_unsupported_options_say_so(argv):
    d = dr_lab()
    before = d.snapshot()
    result = run(argv, d)
    assert result.rc == 2 and "lvs-testbed" in result.err
    assert d.snapshot() == before


def test_only_help_and_version_are_answered_without_a_director():
    from testbed.director.ipvsadm import needs_director

    for argv in (["-h"], ["--help"], ["-v"], ["--version"], ["-h", "-L"]):
        assert not needs_director(argv), argv
    for argv in ([], ["-L", "-n"], ["-L", "-h"], ["-A", "-t", "10.0.0.100:80"], ["--bogus"]):
        assert needs_director(argv), argv
