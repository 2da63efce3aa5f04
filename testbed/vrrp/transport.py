"""The VRRP daemon's edges on a real Linux host: sockets, addresses, links and processes.

What it is for: :class:`LinuxHost`, the implementation of ``daemon.Host`` that the daemon
uses outside tests. It opens the raw protocol-112 sockets adverts travel on, sends
gratuitous ARPs over ``AF_PACKET``, adds and removes VIPs with ``ip addr`` (the daemon runs
inside the director's network namespace, so plain ``ip`` is the right one), reads link state
from ``/sys/class/net`` and prepares (`testbed.runtime.scripts`) and starts notify and track
scripts. Everything here needs root
(``CAP_NET_RAW``, ``CAP_NET_ADMIN``) except the small pure helpers (``mreqn``, ``pktinfo``,
``primary_from_ip_json``, ``link_up_from_sysfs``), which are unit-tested.

What it is not: protocol logic. Packets are encoded and validated by ``packet.py``; what to
send when is ``state.py``'s and the daemon's.

The advert socket (one per interface and mode, shared by the instances on it, as keepalived's
socket pool does): ``socket(AF_INET, SOCK_RAW, 112)`` *without* ``IP_HDRINCL``, so the kernel
writes the IP header and we send :func:`packet.encode`'s VRRP message. keepalived writes the
IP header itself; the fields a receiver checks come out the same:

* TTL 255: ``IP_MULTICAST_TTL`` and ``IP_TTL`` (RFC 3768/5798: "MUST verify that the IP TTL
  is 255").
* TOS 0xc0 (``IP_TOS``), as keepalived's IPTOS_PREC_INTERNETCONTROL.
* Source: the instance's primary address, given per datagram with an ``IP_PKTINFO`` control
  message. Binding the socket to that address is not an option: a raw socket bound to an
  address only receives datagrams *to* that address, i.e. no multicast. ``IP_MULTICAST_IF``
  names the primary address as well, which picks the interface and, failing the control
  message, the source of multicast adverts.
* ``SO_BINDTODEVICE`` so only that interface's adverts arrive; ``IP_ADD_MEMBERSHIP`` of
  224.0.0.18 there (multicast mode); ``IP_MULTICAST_LOOP`` off so we never read our own;
  ``IP_MULTICAST_ALL`` off (keepalived too) so groups joined elsewhere do not leak in.

Differences from keepalived's bytes that a receiver does not check: the IP identification is
the kernel's, and the kernel may set DF. A raw socket hands every received datagram over
with its IP header, so the daemon checks TTL and the v3 pseudo-header on what arrived.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path

from testbed.director.packet import gratuitous_arp
from testbed.keepalived_conf.model import Script
from testbed.runtime import scripts
from testbed.runtime.scripts import Preparation, PreparedScript, ScriptPolicy

from .packet import IP_TOS_INTERNETWORK_CONTROL, VRRP_MCAST_GROUP, VRRP_PROTOCOL, VRRP_TTL

# Linux values Python's socket module does not export.
IP_PKTINFO = 8
IP_MULTICAST_ALL = 49
IFF_UP = 0x1
SYSFS_NET = Path("/sys/class/net")
RECV_BUFFER_BYTES = 65535
IP_COMMAND_TIMEOUT_S = 5.0


def mreqn(group: IPv4Address, address: IPv4Address, ifindex: int) -> bytes:
    """``struct ip_mreqn`` for ``IP_ADD_MEMBERSHIP``: group, local address, interface index."""
    return struct.pack("=4s4si", group.packed, address.packed, ifindex)


def pktinfo(ifindex: int, src: IPv4Address) -> bytes:
    """``struct in_pktinfo`` for sending: ``ipi_spec_dst`` is the source address to use."""
    return struct.pack("=i4s4s", ifindex, src.packed, bytes(4))


def primary_from_ip_json(
    entries: list[dict], exclude: frozenset[IPv4Address]
) -> IPv4Address | None:
    """The interface's primary IPv4 address from ``ip -j -4 addr show dev IF``.

    keepalived uses the interface's first (primary) address. Secondary addresses are
    skipped, and so are ``exclude`` (the VIPs: one left behind by a killed daemon must not
    become the advert source).
    """
    for entry in entries:
        for info in entry.get("addr_info", []):
            if info.get("family", "inet") != "inet" or info.get("secondary"):
                continue
            address = IPv4Address(info["local"])
            if address not in exclude:
                return address
    return None


def link_up_from_sysfs(ifname: str, root: Path = SYSFS_NET) -> bool:
    """Whether the interface can carry traffic: operstate up, or unknown with IFF_UP.

    keepalived asks for IFF_UP and IFF_RUNNING; /sys's ``operstate`` is that view (some
    virtual drivers report "unknown" while working). A missing interface is down.
    """
    try:
        state = (root / ifname / "operstate").read_text().strip()
        if state == "up":
            return True
        if state == "unknown":
            return bool(int((root / ifname / "flags").read_text().strip(), 16) & IFF_UP)
    except (OSError, ValueError):
        return False
    return False


def mac_from_sysfs(ifname: str, root: Path = SYSFS_NET) -> bytes:
    return bytes.fromhex((root / ifname / "address").read_text().strip().replace(":", ""))


class RawVrrpSocket:
    """One raw protocol-112 socket on one interface, multicast or unicast (see module doc)."""

    def __init__(self, ifname: str, primary: IPv4Address, multicast: bool) -> None:
        self.ifname = ifname
        self.ifindex = socket.if_nametoindex(ifname)
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, VRRP_PROTOCOL)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, IP_TOS_INTERNETWORK_CONTROL)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, VRRP_TTL)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, VRRP_TTL)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, primary.packed)
            if multicast:
                sock.setsockopt(
                    socket.IPPROTO_IP,
                    socket.IP_ADD_MEMBERSHIP,
                    mreqn(VRRP_MCAST_GROUP, primary, self.ifindex),
                )
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, payload: bytes, src: IPv4Address, dst: IPv4Address) -> None:
        """Send one VRRP message; raises OSError (e.g. ENETDOWN) for the daemon to count."""
        ancillary = [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo(self.ifindex, src))]
        self.sock.sendmsg([payload], ancillary, 0, (str(dst), 0))

    def recv(self) -> bytes | None:
        """One whole IPv4 datagram (header included), or None when none is waiting."""
        try:
            return self.sock.recv(RECV_BUFFER_BYTES)
        except (BlockingIOError, InterruptedError):
            return None

    def close(self) -> None:
        self.sock.close()


class SpawnedProcess:
    """A script started in its own process group, so a timeout kills its children too."""

    def __init__(self, prepared: PreparedScript, extra: Sequence[str], quiet: bool) -> None:
        self.proc = scripts.spawn(prepared, extra, quiet=quiet)
        self.pid = self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.proc.wait()


class LinuxHost:
    """``daemon.Host`` on the real machine (in the current network namespace)."""

    def __init__(self, sysfs: Path = SYSFS_NET) -> None:
        self.sysfs = sysfs
        self._garp: dict[str, tuple[socket.socket, bytes]] = {}

    def open_vrrp_socket(self, ifname: str, primary: IPv4Address, multicast: bool) -> RawVrrpSocket:
        return RawVrrpSocket(ifname, primary, multicast)

    def primary_address(
        self, ifname: str, exclude: frozenset[IPv4Address] = frozenset()
    ) -> IPv4Address | None:
        res = subprocess.run(
            ["ip", "-j", "-4", "addr", "show", "dev", ifname],
            capture_output=True,
            text=True,
            check=False,
            timeout=IP_COMMAND_TIMEOUT_S,
        )
        if res.returncode != 0:
            return None
        return primary_from_ip_json(json.loads(res.stdout or "[]"), exclude)

    def link_up(self, ifname: str) -> bool:
        return link_up_from_sysfs(ifname, self.sysfs)

    def ip(self, argv: list[str]) -> tuple[int, str]:
        """Run ``ip ARGV``; (exit status, stderr)."""
        try:
            res = subprocess.run(
                ["ip", *argv],
                capture_output=True,
                text=True,
                check=False,
                timeout=IP_COMMAND_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 1, str(exc)
        return res.returncode, res.stderr.strip()

    def send_garp(self, ifname: str, address: IPv4Address) -> None:
        """One gratuitous ARP for ``address`` out of ``ifname`` (keepalived's vrrp_arp.c frame)."""
        if ifname not in self._garp:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # 0: receive nothing
            sock.bind((ifname, 0))
            self._garp[ifname] = (sock, mac_from_sysfs(ifname, self.sysfs))
        sock, mac = self._garp[ifname]
        sock.send(bytes(gratuitous_arp(mac, int(address))))

    def prepare_script(self, script: Script, policy: ScriptPolicy) -> Preparation:
        return scripts.prepare(
            script.command, script.user, script.group, policy, scripts.LinuxScriptSystem()
        )

    def spawn(self, prepared: PreparedScript, extra: Sequence[str], quiet: bool) -> SpawnedProcess:
        return SpawnedProcess(prepared, extra, quiet)

    def close(self) -> None:
        for sock, _ in self._garp.values():
            sock.close()
        self._garp.clear()
