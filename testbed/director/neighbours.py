"""Where a forwarded frame goes next: routes (longest prefix) and an ARP cache of our own.

The director forwards in user space, so it needs what the kernel's FIB and neighbour layer
would give it: the output port and next hop for a destination, and that hop's MAC. Routes come
from the director namespace's main table (read by the daemon from /proc/net/route, which
needs no subprocess, so a hung ``ip`` cannot stall forwarding); MACs are
learnt from ARP replies and requests seen on the ports, asked for with our own ARP requests,
and frames wait (a few per hop, briefly) while an answer is pending, as the kernel's
unresolved queue does.

Pure: ports are objects with ``name``, ``mac``, ``ip`` and ``send(frame)``; time is passed in.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from testbed.director.packet import arp_request

QUEUE_FRAMES_MAX = 16  # frames held per unresolved hop (the kernel holds up to unres_qlen)
ARP_RETRY_S = 1.0  # ask again at most this often while unresolved
ARP_REFRESH_S = 30.0  # re-ask a known hop this long after it was last confirmed
ROUTE_CACHE_MAX = 65536
QUEUE_GIVE_UP_S = 3.0  # drop what waits for a hop that has not answered for this long


@dataclass(frozen=True)
class Route:
    net: int
    prefix: int
    port: str
    gateway: int | None = None

    @property
    def mask(self) -> int:
        return (0xFFFFFFFF << (32 - self.prefix)) & 0xFFFFFFFF if self.prefix else 0


RTF_UP, RTF_GATEWAY, RTF_REJECT = 0x0001, 0x0002, 0x0200


def _proc_addr(field: str) -> int:
    """An address of /proc/net/route: the __be32 printed as a host-order hex number."""
    return int.from_bytes(int(field, 16).to_bytes(4, sys.byteorder), "big")


def routes_from_proc(text: str, port_names: set[str]) -> list[Route]:
    """Routes from /proc/net/route (the main table), for our ports only. Raises ValueError
    on a line it cannot read."""
    routes = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 8:
            raise ValueError(f"unreadable route line {line!r}")
        dev, dst, gw, flags, mask = fields[0], fields[1], fields[2], int(fields[3], 16), fields[7]
        if dev not in port_names or not flags & RTF_UP or flags & RTF_REJECT:
            continue
        netmask = _proc_addr(mask)
        prefix = bin(netmask).count("1")
        if netmask != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF:
            raise ValueError(f"not a prefix mask in route line {line!r}")
        gateway = _proc_addr(gw) if flags & RTF_GATEWAY else None
        routes.append(Route(_proc_addr(dst) & netmask, prefix, dev, gateway))
    return routes


class Neighbour:
    """A next hop on one port: its MAC once known, and frames waiting for it."""

    __slots__ = ("ip", "port", "mac", "queue", "queue_since", "asked_at", "confirmed_at")

    def __init__(self, ip: int, port) -> None:
        self.ip = ip
        self.port = port
        self.mac: bytes | None = None
        self.queue: list[bytearray] = []
        self.queue_since = 0.0
        self.asked_at = -1e18
        self.confirmed_at = -1e18


class Neighbours:
    """Routes plus the ARP cache; `hop_for(ip)` is the per-packet call."""

    def __init__(self, ports: dict, routes: list[Route] | None = None) -> None:
        self.ports = ports  # name -> port
        self.by_ip: dict[int, Neighbour] = {}
        self._hop_cache: dict[int, Neighbour | None] = {}
        self.routes: list[Route] = []
        self.set_routes(routes or [])
        self.arp_sent = 0
        self.queue_dropped = 0

    def set_routes(self, routes: list[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: -r.prefix)
        self._hop_cache.clear()

    def route(self, ip: int) -> tuple[object, int] | None:
        """(port, next-hop ip) by longest prefix match, or None."""
        for r in self.routes:
            if ip & r.mask == r.net:
                return self.ports[r.port], r.gateway if r.gateway is not None else ip
        return None

    def hop_for(self, ip: int) -> Neighbour | None:
        """The neighbour entry that frames to ``ip`` go to (cached per destination)."""
        hop = self._hop_cache.get(ip)
        if hop is None:
            found = self.route(ip)
            if found is None:
                return None
            port, nh_ip = found
            hop = self.by_ip.get(nh_ip)
            if hop is None or hop.port is not port:
                hop = self.by_ip[nh_ip] = Neighbour(nh_ip, port)
            if len(self._hop_cache) >= ROUTE_CACHE_MAX:
                self._hop_cache.clear()
            self._hop_cache[ip] = hop
        return hop

    def send_or_queue(self, hop: Neighbour, frame, now: float) -> bool:
        """Send ``frame`` to ``hop`` (MACs set here), or queue a copy while ARP resolves.
        Returns True if sent now."""
        if hop.mac is not None:
            port = hop.port
            frame[0:6] = hop.mac
            frame[6:12] = port.mac
            port.send(frame)
            return True
        if len(hop.queue) < QUEUE_FRAMES_MAX:
            if not hop.queue:
                hop.queue_since = now
            hop.queue.append(bytearray(frame))
        else:
            self.queue_dropped += 1
        self.solicit(hop, now)
        return False

    def solicit(self, hop: Neighbour, now: float) -> None:
        if now - hop.asked_at >= ARP_RETRY_S:
            hop.asked_at = now
            hop.port.send(arp_request(hop.port.mac, hop.port.ip, hop.ip))
            self.arp_sent += 1

    def learn(self, ip: int, mac: bytes, port, now: float) -> None:
        """An ARP packet told us ``ip`` is at ``mac`` on ``port``: update a hop we use and
        release its queue. Addresses we never asked about are not cached."""
        hop = self.by_ip.get(ip)
        if hop is None or hop.port is not port:
            return
        hop.mac = bytes(mac)
        hop.confirmed_at = now
        queue, hop.queue = hop.queue, []
        for frame in queue:
            frame[0:6] = hop.mac
            frame[6:12] = port.mac
            port.send(frame)

    def refresh(self, now: float) -> None:
        """Re-ask hops not confirmed for ARP_REFRESH_S (their MAC may have moved, as a
        VIP does on failover), ask again for unresolved hops with frames waiting, and drop
        frames that waited QUEUE_GIVE_UP_S in vain (the kernel gives up after ~3 probes).
        Called from the daemon's timer, not per packet."""
        for hop in self.by_ip.values():
            if hop.mac is not None:
                if now - hop.confirmed_at >= ARP_REFRESH_S:
                    self.solicit(hop, now)
            elif hop.queue:
                if now - hop.queue_since >= QUEUE_GIVE_UP_S:
                    self.queue_dropped += len(hop.queue)
                    hop.queue = []
                else:
                    self.solicit(hop, now)
