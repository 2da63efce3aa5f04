"""Twins for the differential tests: kernel IPVS and the Python director fed the same input.

`KernelTwin` puts kernel IPVS in a throwaway network namespace D with two veth links, one to a
namespace C standing for the clients and one to a namespace R standing for the real servers.
Frames are injected raw (AF_PACKET) from C and R, so the kernel sees exactly the bytes the
Python director sees, and what D sends on is read back raw on the other side. The namespaces
are held by `sleep` processes of our own and vanish when those end.

`Twin` pairs it with the Python director (`tests.unit.fakes.Lab`: the real `Director`,
`Forwarder` and `ipvsadm.run`, with ports that record what they send) on the same addresses
and MACs and the same clock (seconds since the twin was made), so after each step the two can
be compared with the same ipvsadm listing.

Not tests: imported by the test modules here. Needs root and a kernel with ip_vs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import select
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass

from testbed.director import ipvsadm as py_ipvsadm
from testbed.director.model import Director
from testbed.runtime import ipvs
from tests.unit import fakes

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
CMD_TIMEOUT_S = 60.0

D_OUT, D_IN, VIP = "10.0.1.2", "192.168.0.2", "10.0.1.100"
RS_IPS = ("192.168.0.11", "192.168.0.12", "192.168.0.13")
RS_MACS = {rip: f"02:00:00:00:02:{11 + i:02x}" for i, rip in enumerate(RS_IPS)}
CLIENT_IPS = tuple(f"10.0.1.{11 + i}" for i in range(30))
_LIBC = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Netns:
    """A network namespace of our own, held by a `sleep` we started (ended in `close`)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "--net", "--", "sleep", "3600"], stdin=subprocess.DEVNULL
        )
        own = os.stat("/proc/self/ns/net").st_ino
        deadline = time.monotonic() + 10
        while True:
            try:
                if os.stat(f"/proc/{self.proc.pid}/ns/net").st_ino != own:
                    break
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("unshare --net did not give a new namespace")
            time.sleep(0.01)
        self.pid = self.proc.pid

    def add_director_addresses(self) -> None:
        """A dummy NIC holding a director's two networks (10.0.1.2/24, 192.168.0.2/24): the
        kernel refuses a real server it has no unicast route to."""
        self.sh(
            "ip link set lo up && ip link add d0 type dummy && "
            f"ip addr add {D_OUT}/24 dev d0 && ip addr add {D_IN}/24 dev d0 && ip link set d0 up"
        )

    def sh(self, command: str, check: bool = True) -> str:
        """``command`` in a shell in this namespace; its output (RuntimeError if it fails)."""
        res = subprocess.run(
            ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--", "sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=CMD_TIMEOUT_S,
            check=False,
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"`{command}` failed: {res.stdout}{res.stderr}")
        return res.stdout

    def ipvsadm(self, argv: list[str], stdin_text: str | None = None) -> ipvs.IpvsadmResult:
        return ipvs.run_ipvsadm(argv, stdin_text, netns_pid=self.pid, timeout_s=CMD_TIMEOUT_S)

    def mac(self, ifname: str) -> str:
        """The MAC of ``ifname`` here (ip, not /sys: sysfs shows the mounting namespace's)."""
        out = self.sh(f"ip -o link show dev {ifname}")
        return out.split("link/ether ", 1)[1].split()[0]

    def packet_socket(self, ifname: str) -> socket.socket:
        """A raw socket on ``ifname`` of this namespace (made inside it, used from here)."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY)
        try:
            _setns(target)
            try:
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                sock.bind((ifname, 0))
            finally:
                _setns(own)
        finally:
            os.close(own)
            os.close(target)
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def drain(sock: socket.socket, quiet_s: float = 0.05, max_s: float = 1.0) -> list[bytes]:
    """The frames that arrived on ``sock`` (not those it sent) until it stays quiet."""
    frames: list[bytes] = []
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], quiet_s)
        if not ready:
            break
        data, addr = sock.recvfrom(65535)
        if addr[2] != PACKET_OUTGOING:
            frames.append(data)
    return frames


class KernelTwin:
    """Kernel IPVS in namespace D between C (clients) and R (real servers)."""

    def __init__(self) -> None:
        self.d, self.c, self.r = Netns(), Netns(), Netns()
        try:
            self._wire()
        except BaseException:
            self.close()
            raise

    def _wire(self) -> None:
        d = self.d
        d.sh(
            f"ip link add d-c type veth peer name c-d netns {self.c.pid} && "
            f"ip link add d-r type veth peer name r-d netns {self.r.pid}"
        )
        for ns, ifname in ((self.c, "c-d"), (self.r, "r-d")):
            ns.sh(
                f"ip link set lo up && ip link set {ifname} up && "
                "sysctl -qw net.ipv6.conf.all.disable_ipv6=1"
            )
        self.c_mac, self.r_mac = self.c.mac("c-d"), self.r.mac("r-d")
        lines = [
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
            "ip link set lo up",
            f"ip addr add {D_OUT}/24 dev d-c",
            f"ip addr add {VIP}/32 dev d-c",
            f"ip addr add {D_IN}/24 dev d-r",
            "ip link set d-c up",
            "ip link set d-r up",
            "sysctl -qw net.ipv4.ip_forward=1",
            "sysctl -qw net.ipv4.conf.all.send_redirects=0",
        ]
        lines += [
            f"ip neigh replace {a} lladdr {self.c_mac} dev d-c nud permanent" for a in CLIENT_IPS
        ]
        lines += [
            f"ip neigh replace {a} lladdr {m} dev d-r nud permanent" for a, m in RS_MACS.items()
        ]
        d.sh(" && ".join(lines))
        self.d_c_mac, self.d_r_mac = d.mac("d-c"), d.mac("d-r")
        self.c_sock = self.c.packet_socket("c-d")
        self.r_sock = self.r.packet_socket("r-d")

    def close(self) -> None:
        for sock in (getattr(self, "c_sock", None), getattr(self, "r_sock", None)):
            if sock is not None:
                sock.close()
        for ns in (self.d, self.c, self.r):
            with contextlib.suppress(Exception):
                ns.close()


@dataclass(frozen=True)
class Conn:
    """One line of ``ipvsadm -L -n -c``: the expiry in seconds, the rest as printed."""

    proto: str
    expire_s: int
    state: str
    source: str
    virtual: str
    dest: str

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.proto, self.state, self.source, self.virtual, self.dest)


_CONN_LINE = re.compile(r"^(\S+)\s+(\d+):(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")


def parse_conns(text: str) -> list[Conn]:
    conns = []
    for line in text.splitlines()[2:]:
        m = _CONN_LINE.match(line)
        if not m:
            raise ValueError(f"unexpected -Lnc line {line!r}")
        proto, mins, secs, state, source, virtual, dest = m.groups()
        conns.append(Conn(proto, int(mins) * 60 + int(secs), state, source, virtual, dest))
    return sorted(conns, key=lambda c: c.key)


class Twin:
    """Kernel IPVS and the Python director side by side, fed the same commands and frames.

    ``step`` and ``ipvsadm`` apply one input to both; ``kernel_*``/``python_*`` read each
    side. Each side answers its own NAT replies (`reply_from`), so a difference in scheduling
    shows up as a difference, not as a broken connection.
    """

    def __init__(self) -> None:
        self.k = KernelTwin()
        self.t0 = time.monotonic()
        ports = [
            fakes.FakePort("d-c", self.k.d_c_mac, D_OUT),
            fakes.FakePort("d-r", self.k.d_r_mac, D_IN),
        ]
        routes = [fakes.route("10.0.1.0/24", "d-c"), fakes.route("192.168.0.0/24", "d-r")]
        self.py = fakes.Lab(ports, routes, "")
        for rip, rmac in RS_MACS.items():
            self.py.learn(rip, rmac, self.now())
        for cip in CLIENT_IPS:
            self.py.learn(cip, self.k.c_mac, self.now())

    def now(self) -> float:
        return time.monotonic() - self.t0 + 1.0

    def close(self) -> None:
        self.k.close()

    # -- commands ------------------------------------------------------------------------
    def kernel_ipvsadm(self, args: str, stdin_text: str | None = None) -> ipvs.IpvsadmResult:
        return self.k.d.ipvsadm(shlex.split(args), stdin_text)

    def python_ipvsadm(self, args: str, stdin_text: str | None = None) -> py_ipvsadm.Result:
        director: Director = self.py.director
        now = self.now()
        director.expire(now)
        director.tick(now)
        res = py_ipvsadm.run(shlex.split(args), director, stdin_text, now=now)
        self.py.fwd.refresh_services()
        return res

    def ipvsadm(self, args: str, stdin_text: str | None = None) -> None:
        """Apply a configuration command to both; both must accept it."""
        k = self.kernel_ipvsadm(args, stdin_text)
        p = self.python_ipvsadm(args, stdin_text)
        assert k.rc == 0, f"kernel refused `ipvsadm {args}`: {k.err}"
        assert p.rc == 0, f"Python director refused `ipvsadm {args}`: {p.err}"

    # -- frames --------------------------------------------------------------------------
    def client_frame(
        self,
        cip: str,
        cport: int,
        proto: str,
        flags: int = 0,
        payload: bytes = b"",
        vport: int = 80,
    ) -> bytearray:
        eth = {"eth_src": self.k.c_mac, "eth_dst": self.k.d_c_mac}
        if proto == "udp":
            return fakes.udp_frame(cip, VIP, cport, vport, payload=payload or b"ping", **eth)
        return fakes.tcp_frame(cip, VIP, cport, vport, flags, payload=payload, **eth)

    def rs_frame(
        self, rip_port: str, cip: str, cport: int, proto: str, flags: int = 0, payload: bytes = b""
    ) -> bytearray:
        rip, rport = rip_port.rsplit(":", 1)
        eth = {"eth_src": RS_MACS[rip], "eth_dst": self.k.d_r_mac}
        if proto == "udp":
            return fakes.udp_frame(rip, cip, int(rport), cport, payload=payload or b"pong", **eth)
        return fakes.tcp_frame(rip, cip, int(rport), cport, flags, payload=payload, **eth)

    def from_client(self, frame: bytearray) -> tuple[list[bytes], list[bytes]]:
        """Send ``frame`` from the client side to both; (kernel's, Python's) frames out to
        the real servers."""
        self.k.c_sock.send(bytes(frame))
        out = self.py.handle(frame, "d-c", self.now())
        return drain(self.k.r_sock), out.get("d-r", [])

    def from_rs(
        self, kernel_frame: bytearray, python_frame: bytearray
    ) -> tuple[list[bytes], list[bytes]]:
        """A real server's reply (each side's own); (kernel's, Python's) frames to clients."""
        self.k.r_sock.send(bytes(kernel_frame))
        out = self.py.handle(python_frame, "d-r", self.now())
        return drain(self.k.c_sock), out.get("d-c", [])

    # -- reading -------------------------------------------------------------------------
    def conns(self) -> tuple[list[Conn], list[Conn]]:
        k = self.kernel_ipvsadm("-L -n -c")
        p = self.python_ipvsadm("-L -n -c")
        assert k.rc == 0 and p.rc == 0, (k, p)
        return parse_conns(k.out), parse_conns(p.out)

    def dest_of(self, conns: list[Conn], cip: str, cport: int) -> str | None:
        src = f"{cip}:{cport}"
        return next((c.dest for c in conns if c.source == src and c.proto != "IP"), None)
