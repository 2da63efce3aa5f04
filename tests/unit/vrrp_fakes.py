"""Fakes for the VRRP daemon tests: a host that records what the daemon does, LAN segments
that carry adverts between hosts as the kernel would put them on the wire, and a simulation
that steps several daemons on one fake clock.

Not tests: imported by test_vrrp_daemon.py and test_vrrp_cli.py. The IPv4 header is built
here with struct, independently of testbed.vrrp.packet.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from testbed.keepalived_conf.model import Config, Script
from testbed.runtime.scripts import Preparation, PreparedScript, ScriptPolicy
from testbed.vrrp.daemon import VrrpDaemon

WALL_EPOCH_S = 1_700_000_000.0


def ones_complement(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_datagram(src: IPv4Address, dst: IPv4Address, payload: bytes, ttl: int = 255) -> bytes:
    """What a raw IPPROTO_VRRP socket without IP_HDRINCL sends: TOS 0xc0, DF, protocol 112."""
    header = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0xC0,
            20 + len(payload),
            0,
            0x4000,
            ttl,
            112,
            0,
            src.packed,
            dst.packed,
        )
    )
    struct.pack_into("!H", header, 10, ones_complement(bytes(header)))
    return bytes(header) + payload


class Segment:
    """One LAN. Multicast reaches every other multicast socket on it (IP_MULTICAST_LOOP off);
    unicast reaches the socket whose host owns the destination. ``ttl`` is what receivers see."""

    def __init__(self, name: str, clock) -> None:
        self.name = name
        self.clock = clock
        self.sockets: list[FakeSocket] = []
        self.wire: list[tuple[float, bytes]] = []  # (time, datagram)
        self.ttl = 255

    def send(self, sender: FakeSocket, payload: bytes, src: IPv4Address, dst: IPv4Address) -> None:
        datagram = ipv4_datagram(src, dst, payload, self.ttl)
        self.wire.append((self.clock(), datagram))
        for sock in self.sockets:
            if sock is sender or sock.closed or not sock.host.alive:
                continue
            if not sock.host.links.get(sock.ifname, True):
                continue
            if dst.is_multicast and sock.multicast or dst in sock.host.addresses.values():
                sock.inbox.append(datagram)

    def adverts(self, src: str | None = None) -> list[tuple[float, IPv4Address, int]]:
        """(time, source, priority) of every VRRP datagram sent, optionally from ``src``."""
        out = []
        for when, datagram in self.wire:
            source = IPv4Address(datagram[12:16])
            if src is None or source == IPv4Address(src):
                out.append((when, source, datagram[22]))
        return out


@dataclass
class FakeSocket:
    host: FakeHost
    ifname: str
    primary: IPv4Address
    multicast: bool
    segment: Segment
    inbox: deque[bytes] = field(default_factory=deque)
    closed: bool = False
    _pipe: tuple[int, int] | None = None

    def fileno(self) -> int:
        """A descriptor that never becomes readable (for the real loop's select)."""
        if self._pipe is None:
            self._pipe = os.pipe()
        return self._pipe[0]

    def send(self, payload: bytes, src: IPv4Address, dst: IPv4Address) -> None:
        if not self.host.links.get(self.ifname, True):
            raise OSError(100, "Network is down")
        self.host.events.append(("advert", self.ifname, str(dst), payload[2]))
        self.segment.send(self, payload, src, dst)

    def recv(self) -> bytes | None:
        return self.inbox.popleft() if self.inbox else None

    def close(self) -> None:
        self.closed = True
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None


@dataclass
class FakeChild:
    argv: list[str]
    rc: int | None = 0  # None: runs until killed
    killed: bool = False

    def poll(self) -> int | None:
        return -9 if self.killed else self.rc

    def kill(self) -> None:
        self.killed = True


class FakeHost:
    """Records, in order, every advert sent, ``ip`` command, GARP and script started."""

    def __init__(self, name: str, interfaces: dict[str, tuple[str, Segment]]) -> None:
        self.name = name
        self.addresses = {ifname: IPv4Address(ip) for ifname, (ip, _) in interfaces.items()}
        self.segments = {ifname: seg for ifname, (_, seg) in interfaces.items()}
        self.links: dict[str, bool] = {ifname: True for ifname in interfaces}
        self.events: list[tuple] = []
        self.executables: set[str] = set()
        self.disabled: set[str] = set()
        self.script_rc: dict[str, int | None] = {}  # by argv[0]; default exit 0
        self.children: list[FakeChild] = []
        self.sockets: list[FakeSocket] = []
        self.alive = True
        self.closed = False

    def open_vrrp_socket(self, ifname: str, primary: IPv4Address, multicast: bool) -> FakeSocket:
        sock = FakeSocket(self, ifname, primary, multicast, self.segments[ifname])
        self.segments[ifname].sockets.append(sock)
        self.sockets.append(sock)
        return sock

    def primary_address(self, ifname: str, exclude: frozenset[IPv4Address]) -> IPv4Address | None:
        return self.addresses.get(ifname)

    def link_up(self, ifname: str) -> bool:
        return self.links.get(ifname, False)

    def ip(self, argv: list[str]) -> tuple[int, str]:
        self.events.append(("ip", *argv))
        return 0, ""

    def send_garp(self, ifname: str, address: IPv4Address) -> None:
        self.events.append(("garp", ifname, str(address)))

    def prepare_script(self, script: Script, policy: ScriptPolicy) -> Preparation:
        """Files in ``executables`` are exec'd, anything else goes to ``/bin/sh -c``;
        commands in ``disabled`` cannot run (as a missing or unsafe script)."""
        if script.command in self.disabled:
            return Preparation(None, [f"script '{script.command}' disabled"])
        words = script.command.split()
        if words and words[0] in self.executables:
            prepared = PreparedScript(script.command, tuple(words), False, None, None, "root")
        else:
            prepared = PreparedScript(
                script.command, ("/bin/sh", "-c", script.command), True, None, None, "root"
            )
        return Preparation(prepared, [])

    def spawn(self, prepared: PreparedScript, extra, quiet: bool) -> FakeChild:
        argv = prepared.argv(extra)
        self.events.append(("spawn", *argv))
        child = FakeChild(argv, self.script_rc.get(argv[0], 0))
        self.children.append(child)
        return child

    def close(self) -> None:
        self.closed = True

    # ----- reading the record

    def of(self, kind: str) -> list[tuple]:
        return [e for e in self.events if e[0] == kind]

    def take(self) -> list[tuple]:
        events, self.events = self.events, []
        return events


class Sim:
    """Daemons on one fake clock; every advert is delivered at the time it was sent."""

    def __init__(self) -> None:
        self.now = 0.0
        self.daemons: dict[str, VrrpDaemon] = {}
        self.hosts: dict[str, FakeHost] = {}
        self.deadlines: dict[str, float | None] = {}
        self.segments: dict[str, Segment] = {}

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_EPOCH_S + self.now

    def segment(self, name: str) -> Segment:
        if name not in self.segments:
            self.segments[name] = Segment(name, self.clock)
        return self.segments[name]

    def add(
        self,
        name: str,
        config: Config,
        interfaces: dict[str, tuple[str, str]],
        *,
        executables: set[str] = frozenset(),
        disabled: set[str] = frozenset(),
    ) -> FakeHost:
        """A host and its daemon; ``executables`` and ``disabled`` (see
        `FakeHost.prepare_script`) are set before the daemon prepares its scripts."""
        host = FakeHost(
            name, {ifname: (ip, self.segment(seg)) for ifname, (ip, seg) in interfaces.items()}
        )
        host.executables |= executables
        host.disabled |= disabled
        self.hosts[name] = host
        self.daemons[name] = VrrpDaemon(config, host, name=name, clock=self.clock, wall=self.wall)
        return host

    def live(self) -> list[str]:
        return [n for n in self.daemons if self.hosts[n].alive and n in self.deadlines]

    def start(self, *names: str) -> None:
        for name in names:
            self.daemons[name].start(self.now)
            self.deadlines[name] = self.daemons[name].step(self.now)
        self.settle()

    def settle(self) -> None:
        """Step every live daemon at the current time until no advert is in flight."""
        while any(s.inbox for n in self.live() for s in self.hosts[n].sockets):
            for name in self.live():
                self.deadlines[name] = self.daemons[name].step(self.now)

    def run_until(self, end: float) -> None:
        while True:
            self.settle()
            due = [d for n in self.live() if (d := self.deadlines[n]) is not None]
            if not due or min(due) > end:
                break
            self.now = max(self.now, min(due))
            for name in self.live():
                self.deadlines[name] = self.daemons[name].step(self.now)
        self.now = end

    def crash(self, name: str) -> None:
        """kill -9: nothing more is sent or read, nothing is cleaned up."""
        self.hosts[name].alive = False

    def shutdown(self, name: str) -> None:
        """What SIGTERM leads to."""
        self.daemons[name].shutdown(self.now)
        self.deadlines.pop(name)
        self.settle()

    def status(self, name: str, instance: str) -> dict:
        return next(i for i in self.daemons[name].status()["instances"] if i["name"] == instance)

    def state(self, name: str) -> dict[str, str]:
        return {i["name"]: i["state"] for i in self.daemons[name].status()["instances"]}

    def became(self, name: str, instance: str, state: str) -> list[float]:
        return [
            t["monotonic_s"]
            for t in self.status(name, instance)["transitions"]
            if t["state"] == state
        ]
