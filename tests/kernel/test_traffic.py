"""The same frames through kernel IPVS and through the Python director (`twin.Twin`): which
real server each new connection gets, for every scheduler both have, on the same connection
order; the connection entries (`ipvsadm -L -n -c`: state and expiry) as connections open,
close and time out; persistence templates; quiescing (weight 0) and deleting a real server;
the counters (`--stats`), the `--rate` layout; and the frames each side sends on.

Expiry times are compared within `EXPIRE_SLACK_S` (the kernel's clock runs while we read it).
Differences that are understood are listed in KNOWN with their reason (and in
docs/ipvs-differences.md); any other difference fails, and so does a listed one that went.
"""

from __future__ import annotations

import re
import time

import pytest

from testbed.director.packet import parse_ipv4
from tests.kernel.support import record, requires_ip_vs
from tests.kernel.twin import CLIENT_IPS, RS_IPS, RS_MACS, VIP, Conn, Twin
from tests.unit.fakes import ACK, FIN, PSH, RST, SYN

pytestmark = requires_ip_vs()

EXPIRE_SLACK_S = 3
# The kernel sums its per-CPU counters into what ipvsadm --stats shows at each 2-second
# estimator tick (ip_vs_copy_stats reads kstats); the Python director sums when asked. Counters
# are compared once a tick has passed since the last packet (docs/ipvs-differences.md).
STATS_SETTLE_S = 2.5
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "mh", "lblc")
WEIGHTS = {RS_IPS[0]: 3, RS_IPS[1]: 2, RS_IPS[2]: 1}
N_CONNS = 18
MAC_TO_RS = {bytes.fromhex(m.replace(":", "")): rip for rip, m in RS_MACS.items()}

# (test, item) -> why kernel IPVS and the Python director differ there.
KNOWN: dict[tuple[str, str], str] = {}


class Differences:
    """Collects the comparisons of one test; `check` fails on unlisted differences and on
    listed ones that no longer show."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.unexpected: list[str] = []
        self.gone: list[str] = []

    def compare(self, item: str, kernel: object, python: object) -> bool:
        same = kernel == python
        known = KNOWN.get((self.test, item))
        record("traffic", f"{self.test}: {item}", "agree" if same else f"differ: {known}")
        if not same and known is None:
            self.unexpected.append(f"{item}:\n  kernel: {kernel!r}\n  python: {python!r}")
        if same and known is not None:
            self.gone.append(f"{item} now agrees: remove it from KNOWN ({known})")
        return same

    def check(self) -> None:
        assert not self.unexpected and not self.gone, "\n".join(self.unexpected + self.gone)


@pytest.fixture
def twin():
    t = Twin()
    try:
        yield t
    finally:
        t.close()


def _conn_view(conns: list[Conn]) -> list[tuple]:
    return [c.key for c in conns]


def compare_conns(diff: Differences, twin: Twin, item: str) -> None:
    """Entries equal, expiry within the slack (reported as the rounded pair when not)."""
    k, p = twin.conns()
    if diff.compare(f"{item}: entries", _conn_view(k), _conn_view(p)):
        far = [
            (a.key, a.expire_s, b.expire_s)
            for a, b in zip(k, p, strict=True)
            if abs(a.expire_s - b.expire_s) > EXPIRE_SLACK_S
        ]
        diff.compare(f"{item}: expiry within {EXPIRE_SLACK_S} s", far, [])


def listing(twin: Twin, args: str) -> tuple[tuple, tuple]:
    if "--stats" in args:
        time.sleep(STATS_SETTLE_S)
    k, p = twin.kernel_ipvsadm(args), twin.python_ipvsadm(args)
    return (k.rc, k.out, k.err), (p.rc, p.out, p.err)


def frame_view(frames: list[bytes]) -> list[tuple]:
    """What matters of a forwarded frame: where it goes (MAC, or the real server behind it),
    addresses, ports, TTL, length."""
    out = []
    for f in frames:
        r = parse_ipv4(bytearray(f), 14)
        if not isinstance(r, tuple):
            out.append(("not ipv4", len(f)))
            continue
        proto, src, dst, l4, ip_end = r
        ports = (int.from_bytes(f[l4 : l4 + 2], "big"), int.from_bytes(f[l4 + 2 : l4 + 4], "big"))
        rs = MAC_TO_RS.get(bytes(f[0:6]), bytes(f[0:6]).hex(":"))
        out.append((rs, proto, _ip(src), _ip(dst), ports, f[22], ip_end - 14))
    return out


def _ip(n: int) -> str:
    return f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def service(
    twin: Twin, scheduler: str, fwd: str = "-g", proto: str = "-t", port: int = 80, extra: str = ""
) -> None:
    twin.ipvsadm(f"-A {proto} {VIP}:{port} -s {scheduler} {extra}".strip())
    for rip in RS_IPS:
        twin.ipvsadm(f"-a {proto} {VIP}:{port} -r {rip}:{port} {fwd} -w {WEIGHTS[rip]}")


def open_dr(twin: Twin, cip: str, cport: int) -> None:
    """A client's handshake as a DR director sees it: SYN, then ACK."""
    twin.from_client(twin.client_frame(cip, cport, "tcp", SYN))
    twin.from_client(twin.client_frame(cip, cport, "tcp", ACK))


# -- scheduling ------------------------------------------------------------------------------


def _schedule_sequence(twin: Twin, scheduler: str) -> tuple[list, list]:
    service(twin, scheduler)
    order = []
    for i in range(N_CONNS):
        cip, cport = CLIENT_IPS[i % 6], 20000 + i
        open_dr(twin, cip, cport)
        if i % 3 == 2:  # every third one closes: lc/wlc/sed/nq see active and inactive
            twin.from_client(twin.client_frame(cip, cport, "tcp", FIN | ACK))
        order.append((cip, cport))
    k, p = twin.conns()
    return [twin.dest_of(k, *c) for c in order], [twin.dest_of(p, *c) for c in order]


@pytest.mark.parametrize("scheduler", ["rr"])
def test_smoke_scheduling_sequence(twin: Twin, scheduler: str) -> None:
    diff = Differences(f"scheduling {scheduler}")
    diff.compare("real server per connection", *_schedule_sequence(twin, scheduler))
    diff.compare("-L -n", *listing(twin, "-L -n"))
    diff.check()


@pytest.mark.parametrize("scheduler", [s for s in SCHEDULERS if s != "rr"])
def test_scheduling_sequence(twin: Twin, scheduler: str) -> None:
    diff = Differences(f"scheduling {scheduler}")
    diff.compare("real server per connection", *_schedule_sequence(twin, scheduler))
    diff.compare("-L -n", *listing(twin, "-L -n"))
    diff.check()


def test_udp_scheduling_and_counts(twin: Twin) -> None:
    diff = Differences("udp wlc")
    service(twin, "wlc", proto="-u", port=7)
    order = []
    for i in range(9):
        cip, cport = CLIENT_IPS[i % 4], 30000 + i
        twin.from_client(twin.client_frame(cip, cport, "udp", vport=7))
        order.append((cip, cport))
    k, p = twin.conns()
    diff.compare(
        "real server per datagram flow",
        [twin.dest_of(k, *c) for c in order],
        [twin.dest_of(p, *c) for c in order],
    )
    diff.compare("-L -n", *listing(twin, "-L -n"))
    compare_conns(diff, twin, "-L -n -c")
    diff.check()


# -- connection states, timeouts -------------------------------------------------------------


def test_smoke_dr_states_and_timeouts(twin: Twin) -> None:
    diff = Differences("DR TCP states")
    service(twin, "rr")
    cip, cport = CLIENT_IPS[0], 40000
    steps = [
        ("SYN", SYN, b""),
        ("ACK", ACK, b""),
        ("data", PSH | ACK, b"GET / HTTP/1.0\r\n\r\n"),
        ("FIN", FIN | ACK, b""),
        ("last ACK", ACK, b""),
    ]
    for name, flags, payload in steps:
        k, p = twin.from_client(twin.client_frame(cip, cport, "tcp", flags, payload))
        diff.compare(f"after {name}: frame to the real server", frame_view(k), frame_view(p))
        compare_conns(diff, twin, f"after {name}")
    # The client reuses its port for a new connection: a SYN on the closing entry.
    twin.from_client(twin.client_frame(cip, cport, "tcp", SYN))
    compare_conns(diff, twin, "after a new SYN on the same port")
    twin.from_client(twin.client_frame(cip, cport + 1, "tcp", SYN))
    twin.from_client(twin.client_frame(cip, cport + 1, "tcp", RST))
    compare_conns(diff, twin, "after SYN, RST")
    diff.compare("-L -n --stats --exact", *listing(twin, "-L -n --stats --exact"))
    diff.check()


def test_nat_exchange(twin: Twin) -> None:
    """A whole NAT connection: each side answers from the real server it chose."""
    diff = Differences("NAT TCP exchange")
    service(twin, "rr", fwd="-m")
    cip, cport = CLIENT_IPS[1], 41000
    script = [
        ("c", "SYN", SYN, b""),
        ("r", "SYN-ACK", SYN | ACK, b""),
        ("c", "ACK", ACK, b""),
        ("c", "request", PSH | ACK, b"GET / HTTP/1.0\r\n\r\n"),
        ("r", "response", PSH | ACK, b"HTTP/1.0 200 OK\r\n\r\nrs\n"),
        ("c", "client FIN", FIN | ACK, b""),
        ("r", "server FIN", FIN | ACK, b""),
        ("c", "last ACK", ACK, b""),
    ]
    for side, name, flags, payload in script:
        if side == "c":
            k, p = twin.from_client(twin.client_frame(cip, cport, "tcp", flags, payload))
        else:
            kc, pc = twin.conns()
            kd, pd = twin.dest_of(kc, cip, cport), twin.dest_of(pc, cip, cport)
            k, p = twin.from_rs(
                twin.rs_frame(kd, cip, cport, "tcp", flags, payload),
                twin.rs_frame(pd, cip, cport, "tcp", flags, payload),
            )
        diff.compare(f"after {name}: frame sent on", frame_view(k), frame_view(p))
        compare_conns(diff, twin, f"after {name}")
    diff.compare("-L -n --stats --exact", *listing(twin, "-L -n --stats --exact"))
    diff.compare("-L -n", *listing(twin, "-L -n"))
    diff.check()


def test_udp_timeout(twin: Twin) -> None:
    diff = Differences("UDP timeout")
    twin.ipvsadm("--set 0 0 2")
    service(twin, "rr", proto="-u", port=7)
    twin.from_client(twin.client_frame(CLIENT_IPS[0], 42000, "udp", vport=7))
    compare_conns(diff, twin, "after one datagram")
    time.sleep(3.5)
    compare_conns(diff, twin, "3.5 s later (timeout 2 s)")
    diff.compare("-L -n after the timeout", *listing(twin, "-L -n"))
    diff.check()


# -- persistence, quiescing, deleting --------------------------------------------------------


def test_persistence(twin: Twin) -> None:
    diff = Differences("persistence")
    service(twin, "rr", extra="-p 60")
    order = []
    for i in range(6):
        cip, cport = CLIENT_IPS[i % 2], 43000 + i
        open_dr(twin, cip, cport)
        order.append((cip, cport))
    k, p = twin.conns()
    diff.compare(
        "real server per connection",
        [twin.dest_of(k, *c) for c in order],
        [twin.dest_of(p, *c) for c in order],
    )
    compare_conns(diff, twin, "-L -n -c with templates")
    diff.compare("--persistent-conn", *listing(twin, "-L -n --persistent-conn"))
    diff.check()


def test_quiescing_and_deleting(twin: Twin) -> None:
    diff = Differences("quiescing")
    service(twin, "rr")
    first = [(CLIENT_IPS[i], 44000 + i) for i in range(3)]
    for c in first:
        open_dr(twin, *c)
    k, p = twin.conns()
    quiesced = twin.dest_of(k, *first[0])
    twin.ipvsadm(f"-e -t {VIP}:80 -r {quiesced} -g -w 0")
    later = [(CLIENT_IPS[3 + i], 44100 + i) for i in range(6)]
    for c in later:
        open_dr(twin, *c)
    k, p = twin.conns()
    diff.compare(
        "real server per new connection after weight 0",
        [twin.dest_of(k, *c) for c in later],
        [twin.dest_of(p, *c) for c in later],
    )
    on_quiesced = next(c for c in first if twin.dest_of(k, *c) == quiesced)
    sent = twin.from_client(twin.client_frame(*on_quiesced, "tcp", PSH | ACK, b"more"))
    diff.compare("a packet of a quiesced server's connection", *map(frame_view, sent))
    twin.ipvsadm(f"-d -t {VIP}:80 -r {quiesced}")
    sent = twin.from_client(twin.client_frame(*on_quiesced, "tcp", PSH | ACK, b"after"))
    diff.compare("a packet of a deleted server's connection", *map(frame_view, sent))
    compare_conns(diff, twin, "after deleting")
    diff.compare("-L -n --stats --exact", *listing(twin, "-L -n --stats --exact"))
    diff.check()


_NUMBER = re.compile(r"\d+")


def test_rate_layout(twin: Twin) -> None:
    """--rate: the same layout; the figures themselves come from estimators whose 2-second
    ticks fall at different moments, so only zeros (before any traffic) are compared."""
    diff = Differences("rates")
    service(twin, "rr", fwd="-m")
    diff.compare("--rate before traffic", *listing(twin, "-L -n --rate"))
    for i in range(10):
        twin.from_client(twin.client_frame(CLIENT_IPS[i % 5], 45000 + i, "tcp", SYN))
    time.sleep(4.5)

    def shape(res: tuple) -> list[str]:
        return [_NUMBER.sub(lambda m: "#" * len(m.group()), line) for line in res[1].splitlines()]

    k, p = listing(twin, "-L -n --rate")
    diff.compare("--rate after traffic: lines and columns", len(shape(k)), len(shape(p)))
    diff.check()
