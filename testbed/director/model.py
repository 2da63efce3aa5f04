"""Virtual services, real servers and the Director holding them: the state and control plane
of the userspace IPVS.

For: what `ipvsadm` changes (services, real servers, timeouts, counters), checked as the
kernel checks it (ip_vs_ctl.c) and refused with libipvs's words and the kernel's errno
BEFORE anything changes; and what the forwarding loop asks: `find_service` for a packet
without a connection, `schedule_new` (persistence, scheduler, new connection, counters), the
connection-table calls, `expire` and `tick`. Also the int <-> dotted-quad helpers used
everywhere (addresses are host-order u32 ints in every API).

Not for: packets, sockets or clocks (every call needing the time takes `now`, seconds), or
ipvsadm's command line and output (ipvsadm.py).
"""

from __future__ import annotations

import errno
import ipaddress
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

from .conntable import (
    DEFAULT_TAB_BITS,
    ESTABLISHED,
    F_DROUTE,
    F_FWD_MASK,
    F_INACTIVE,
    F_MASQ,
    F_NOOUTPUT,
    F_SYNC,
    F_TEMPLATE,
    F_TUNNEL,
    FIN_WAIT,
    NONE,
    PROTO_IP,
    PROTO_TCP,
    Connection,
    ConnTable,
)
from .defense import DEFENSE_PERIOD_S, Defense, TableFull
from .schedulers import SCHED_FLAGS_MASK, SCHEDULERS
from .stats import Counters, RateEstimator, Stats

IPVS_VERSION = "1.2.1"
"""The IPVS version the kernel reports (and ipvsadm -L prints)."""
DEFAULT_SCHEDULER = "wlc"
DEFAULT_PERSISTENT_TIMEOUT_S = 360
"""IPVS_SVC_PERSISTENT_TIMEOUT (6 * 60 in libipvs's ip_vs.h): `-p` without a value."""
HOST_NETMASK = 0xFFFFFFFF
"""Default persistence granularity (-M): one client address per template."""
SVC_F_PERSISTENT = 0x0001
"""IP_VS_SVC_F_PERSISTENT; the scheduler flags (schedulers.SCHED_FLAG_*) share `flags`."""
U32_MAX = 0xFFFFFFFF


class Proto(IntEnum):
    TCP = 6
    UDP = 17


class Fwd(Enum):
    """Forwarding method of a real server; the value is ipvsadm's Forward column."""

    NAT = "Masq"
    DR = "Route"
    TUN = "Tunnel"

    @property
    def code(self) -> int:
        """The IP_VS_CONN_F_* forwarding bits."""
        return _FWD_CODES[self]

    @property
    def switch(self) -> str:
        """The ipvsadm option selecting it (-m, -g, -i)."""
        return _FWD_SWITCHES[self]

    @classmethod
    def from_code(cls, code: int) -> Fwd:
        return _FWD_BY_CODE[code & F_FWD_MASK]


_FWD_CODES = {Fwd.NAT: F_MASQ, Fwd.DR: F_DROUTE, Fwd.TUN: F_TUNNEL}
_FWD_SWITCHES = {Fwd.NAT: "-m", Fwd.DR: "-g", Fwd.TUN: "-i"}
_FWD_BY_CODE = {code: fwd for fwd, code in _FWD_CODES.items()}


class IpvsError(Exception):
    """A refused control operation. `errno` is the kernel's error number and the message is
    what ipvsadm prints for it (libipvs's ipvs_strerror, else strerror)."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.errno = err
        self.message = message


def _einval() -> IpvsError:
    return IpvsError(
        errno.EINVAL, "Invalid operation.  Possibly wrong module version, address not unicast, ..."
    )


def _erange() -> IpvsError:
    return IpvsError(errno.ERANGE, "Numerical result out of range")


def ip_to_int(text: str) -> int:
    """'10.0.0.1' -> 0x0A000001. Dotted quads only; raises ValueError otherwise."""
    return int(ipaddress.IPv4Address(text))


def int_to_ip(addr: int) -> str:
    """0x0A000001 -> '10.0.0.1'."""
    return f"{addr >> 24}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}"


SvcKey = tuple[int, int, int, int]
"""(protocol, address, port, fwmark); a fwmark service is (0, 0, 0, mark)."""


def service_key(proto: int, addr: int, port: int, fwmark: int = 0) -> SvcKey:
    return (0, 0, 0, fwmark) if fwmark else (int(proto), addr, port, 0)


@dataclass(frozen=True)
class ServiceSpec:
    """What `ipvsadm -A/-E` says about a virtual service (ipvs_service_t)."""

    proto: int = Proto.TCP
    addr: int = 0
    port: int = 0
    fwmark: int = 0
    scheduler: str = DEFAULT_SCHEDULER
    persistent: bool = False
    timeout_s: int = DEFAULT_PERSISTENT_TIMEOUT_S
    netmask: int = HOST_NETMASK
    sched_flags: int = 0

    @property
    def key(self) -> SvcKey:
        return service_key(self.proto, self.addr, self.port, self.fwmark)


@dataclass(frozen=True)
class DestSpec:
    """What `ipvsadm -a/-e` says about a real server (ipvs_dest_t)."""

    addr: int
    port: int
    weight: int = 1
    fwd: Fwd = Fwd.DR
    u_threshold: int = 0
    l_threshold: int = 0


class Dest:
    """A real server of one virtual service (struct ip_vs_dest).

    The forwarding loop increments `stats.inpkts/inbytes/outpkts/outbytes` per packet; the
    service's and the total counters are summed from these when read.
    """

    __slots__ = (
        "service",
        "addr",
        "port",
        "weight",
        "last_weight",
        "fwd",
        "u_threshold",
        "l_threshold",
        "activeconns",
        "inactconns",
        "persistconns",
        "available",
        "overloaded",
        "stats",
    )

    def __init__(self, service: VirtualService, addr: int, port: int) -> None:
        self.service = service
        self.addr = addr
        self.port = port
        self.weight = 0
        self.last_weight = 0
        self.fwd = Fwd.DR
        self.u_threshold = 0
        self.l_threshold = 0
        self.activeconns = 0
        self.inactconns = 0
        self.persistconns = 0
        self.available = True
        self.overloaded = False
        self.stats = Stats()

    def spec(self) -> DestSpec:
        return DestSpec(
            self.addr, self.port, self.weight, self.fwd, self.u_threshold, self.l_threshold
        )

    def __repr__(self) -> str:
        return (
            f"Dest({int_to_ip(self.addr)}:{self.port} {self.fwd.value} w={self.weight} "
            f"act={self.activeconns} inact={self.inactconns} pers={self.persistconns})"
        )


class VirtualService:
    """A virtual service (struct ip_vs_service): TCP/UDP address:port, or a firewall mark.

    `dests` is in IPVS list order: a new real server goes to the head, so the newest comes
    first (schedulers break ties in this order; ipvsadm --nosort shows it).
    """

    __slots__ = (
        "proto",
        "addr",
        "port",
        "fwmark",
        "sched_name",
        "scheduler",
        "flags",
        "timeout_s",
        "netmask",
        "dests",
        "stats",
        "retired",
    )

    def __init__(self, spec: ServiceSpec) -> None:
        self.proto = 0 if spec.fwmark else int(spec.proto)
        self.addr = 0 if spec.fwmark else spec.addr
        self.port = 0 if spec.fwmark else spec.port
        self.fwmark = spec.fwmark
        self.dests: list[Dest] = []
        self.stats = Stats()
        # Counters of real servers that were deleted or zeroed away from this service's sum.
        self.retired = Counters()
        self.sched_name = spec.scheduler
        self.scheduler = SCHEDULERS[spec.scheduler]()
        self.configure(spec)

    def configure(self, spec: ServiceSpec) -> None:
        """Take the scheduler, persistence and flags of `spec` (the address stays)."""
        if spec.scheduler != self.sched_name:
            self.sched_name = spec.scheduler
            self.scheduler = SCHEDULERS[spec.scheduler]()
        self.flags = (SVC_F_PERSISTENT if spec.persistent else 0) | spec.sched_flags
        self.timeout_s = spec.timeout_s
        self.netmask = spec.netmask
        self.scheduler.update(self)

    @property
    def key(self) -> SvcKey:
        return service_key(self.proto, self.addr, self.port, self.fwmark)

    @property
    def persistent(self) -> bool:
        return bool(self.flags & SVC_F_PERSISTENT)

    @property
    def sched_flags(self) -> int:
        return self.flags & SCHED_FLAGS_MASK

    def spec(self) -> ServiceSpec:
        return ServiceSpec(
            self.proto or Proto.TCP,
            self.addr,
            self.port,
            self.fwmark,
            self.sched_name,
            self.persistent,
            self.timeout_s,
            self.netmask,
            self.sched_flags,
        )

    def find_dest(self, addr: int, port: int) -> Dest | None:
        for dest in self.dests:
            if dest.addr == addr and dest.port == port:
                return dest
        return None

    def __repr__(self) -> str:
        where = (
            f"FWM {self.fwmark}"
            if self.fwmark
            else f"{Proto(self.proto).name} {int_to_ip(self.addr)}:{self.port}"
        )
        return f"VirtualService({where} {self.sched_name} dests={len(self.dests)})"


def _unicast(addr: int) -> bool:
    """Not what inet_addr_type() calls broadcast (0.0.0.0 and 255.255.255.255; since Linux
    5.3 the rest of 0.0.0.0/8 is unicast) or multicast (224.0.0.0/4). A subnet's own
    broadcast address needs the routing table, which the model does not have
    (docs/ipvs-differences.md)."""
    return addr != 0 and addr != U32_MAX and addr >> 28 != 0xE


def _check_range(value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or not low <= value <= high:
        raise _einval()


class Director:
    """The whole IPVS state: services, real servers, the connection table, timeouts,
    counters and drop reasons. Control calls validate fully, then change; they raise
    IpvsError and leave everything as it was when they refuse.

    Per-packet calls, bound from the connection table so the loop pays one call each:
    `lookup_in`, `lookup_out`, `on_tcp_packet`, `on_udp_packet` (see conntable.py).
    """

    def __init__(
        self,
        conn_tab_bits: int = DEFAULT_TAB_BITS,
        *,
        seed: int | None = None,
        now: float = 0.0,
        defense: Defense | None = None,
    ) -> None:
        self.conns = ConnTable(conn_tab_bits, seed=seed)
        self.defense = defense if defense is not None else Defense(seed=seed)
        """The table's limit and IPVS's defences (defense.py), run by `tick`."""
        self._next_defense_s = now + DEFENSE_PERIOD_S
        self.refused = ""
        """Why the last `schedule_new` returned None: "no-real-server" or "table-full"."""
        self.lookup_in = self.conns.lookup_in
        self.lookup_out = self.conns.lookup_out
        self.on_tcp_packet = self.conns.on_tcp_packet
        self.on_udp_packet = self.conns.on_udp_packet
        self._services: dict[SvcKey, VirtualService] = {}
        self._by_addr: dict[tuple[int, int, int], VirtualService] = {}
        self._by_fwmark: dict[int, VirtualService] = {}
        self._port_zero_services = 0
        # Deleted real servers that connections still use, revived if added back (IPVS's
        # dest_trash): key (service key, addr, port).
        self._trash: dict[tuple[SvcKey, int, int], Dest] = {}
        self.stats = Stats()
        self._retired = Counters()  # counters of deleted or zeroed services, for the total
        self.estimator = RateEstimator(now)
        self.drops: Counter[str] = Counter()
        """Packets dropped, by reason. This module counts "no_dest" (the scheduler found no
        usable real server) and "sync_no_service"; the forwarding loop adds its own."""
        self.expire_quiescent_template = False
        """net.ipv4.vs.expire_quiescent_template: if set, a persistence template pointing at
        a real server of weight 0 is dropped and the client rescheduled. Off, as in IPVS."""
        self.clock_s = now
        """The latest `now` any call was given; ipvsadm -L -c uses it by default."""

    # -- reading -------------------------------------------------------------------------------
    def services(self) -> list[VirtualService]:
        """All services in the order they were added."""
        return list(self._services.values())

    def service(self, key: SvcKey) -> VirtualService:
        svc = self._services.get(key)
        if svc is None:
            raise IpvsError(errno.ESRCH, "No such service")
        return svc

    def trashed_dests(self) -> list[Dest]:
        """Deleted real servers that connections still use (their replies still pass)."""
        return list(self._trash.values())

    def timeouts(self) -> tuple[int, int, int]:
        """(tcp, tcpfin, udp) seconds, as `ipvsadm -L --timeout` shows them."""
        tcp = self.conns.tcp_timeouts_s
        return (tcp[ESTABLISHED], tcp[FIN_WAIT], self.conns.udp_timeout_s)

    def find_service(
        self, proto: int, vaddr: int, vport: int, fwmark: int = 0
    ) -> VirtualService | None:
        """The service a packet without a connection belongs to (ip_vs_service_find): the
        firewall mark first, then protocol/address/port, then the port-zero service."""
        if fwmark and self._by_fwmark:
            svc = self._by_fwmark.get(fwmark)
            if svc is not None:
                return svc
        svc = self._by_addr.get((proto, vaddr, vport))
        if svc is None and self._port_zero_services:
            svc = self._by_addr.get((proto, vaddr, 0))
        return svc

    def snapshot(self) -> tuple:
        """Everything the control plane can change or show, except connections; equal
        snapshots mean an operation changed nothing."""
        self.refresh_stats()
        return (
            self.timeouts(),
            self.stats.as_tuple(),
            self._retired.as_tuple(),
            tuple(
                (
                    key,
                    svc.sched_name,
                    svc.flags,
                    svc.timeout_s,
                    svc.netmask,
                    svc.stats.as_tuple(),
                    svc.retired.as_tuple(),
                    tuple(
                        (
                            d.addr,
                            d.port,
                            d.weight,
                            d.last_weight,
                            d.fwd,
                            d.u_threshold,
                            d.l_threshold,
                            d.stats.as_tuple(),
                        )
                        for d in svc.dests
                    ),
                )
                for key, svc in self._services.items()
            ),
        )

    def config_copy(self) -> Director:
        """A Director with the same services, real servers and timeouts but no connections
        and zero counters: where a batch (ipvsadm -R) is tried before it is applied."""
        twin = Director(self.conns.bits, seed=0, now=self.clock_s)
        twin.conns.tcp_timeouts_s = list(self.conns.tcp_timeouts_s)
        twin.conns.udp_timeout_s = self.conns.udp_timeout_s
        for svc in self._services.values():
            twin.add_service(svc.spec())
            for dest in reversed(svc.dests):
                twin.add_dest(svc.key, dest.spec())
        return twin

    # -- services ------------------------------------------------------------------------------
    @staticmethod
    def _validate_service(spec: ServiceSpec) -> None:
        if spec.fwmark:
            _check_range(spec.fwmark, 1, U32_MAX)
        else:
            if spec.proto not in (Proto.TCP, Proto.UDP):
                # do_ip_vs_set_ctl() refuses other protocols with EFAULT
                raise IpvsError(errno.EFAULT, "Bad address")
            _check_range(spec.addr, 0, U32_MAX)
            _check_range(spec.port, 0, 0xFFFF)
        _check_range(spec.netmask, 0, U32_MAX)
        _check_range(spec.timeout_s, 1 if spec.persistent else 0, U32_MAX)
        if spec.sched_flags & ~SCHED_FLAGS_MASK:
            raise _einval()

    @staticmethod
    def _check_scheduler(name: str) -> None:
        if name not in SCHEDULERS:
            raise IpvsError(errno.ENOENT, "Scheduler or persistence engine not found")

    def add_service(self, spec: ServiceSpec) -> VirtualService:
        """ipvsadm -A."""
        self._validate_service(spec)
        if spec.key in self._services:
            raise IpvsError(errno.EEXIST, "Service already exists")
        self._check_scheduler(spec.scheduler)
        svc = VirtualService(spec)
        self._services[svc.key] = svc
        if svc.fwmark:
            self._by_fwmark[svc.fwmark] = svc
        else:
            self._by_addr[(svc.proto, svc.addr, svc.port)] = svc
            if svc.port == 0:
                self._port_zero_services += 1
        return svc

    def edit_service(self, spec: ServiceSpec) -> VirtualService:
        """ipvsadm -E: scheduler, persistence and netmask all take the given values."""
        self._validate_service(spec)
        svc = self.service(spec.key)
        self._check_scheduler(spec.scheduler)
        svc.configure(spec)
        return svc

    def del_service(self, key: SvcKey) -> None:
        """ipvsadm -D. Connections stay until they expire; their real servers are marked
        unavailable (the forwarding loop drops their packets, as IPVS does)."""
        svc = self.service(key)
        for dest in list(svc.dests):
            self._unlink_dest(svc, dest)
        self._retired.add(svc.retired)
        del self._services[key]
        if svc.fwmark:
            del self._by_fwmark[svc.fwmark]
        else:
            del self._by_addr[(svc.proto, svc.addr, svc.port)]
            if svc.port == 0:
                self._port_zero_services -= 1
        self._prune_trash()

    def clear(self) -> None:
        """ipvsadm -C."""
        for key in list(self._services):
            self.del_service(key)

    # -- real servers --------------------------------------------------------------------------
    def _service_for_dest(self, key: SvcKey) -> VirtualService:
        svc = self._services.get(key)
        if svc is None:
            raise IpvsError(errno.ESRCH, "Service not defined")
        return svc

    @staticmethod
    def _validate_dest(spec: DestSpec) -> None:
        _check_range(spec.addr, 0, U32_MAX)
        if not _unicast(spec.addr):
            # ip_vs_new_dest(): inet_addr_type() must be RTN_LOCAL or RTN_UNICAST.
            raise _einval()
        _check_range(spec.port, 0, 0xFFFF)
        if not isinstance(spec.fwd, Fwd):
            raise _einval()
        _check_range(spec.u_threshold, 0, U32_MAX)
        _check_range(spec.l_threshold, 0, U32_MAX)
        if not isinstance(spec.weight, int) or spec.weight < 0:
            raise _erange()
        if spec.l_threshold > spec.u_threshold:
            raise _erange()

    @staticmethod
    def _apply_dest(svc: VirtualService, dest: Dest, spec: DestSpec, add: bool) -> None:
        # __ip_vs_update_dest()
        if add or spec.weight != 0:
            dest.last_weight = spec.weight  # the latest non-0 weight, for mh
        dest.weight = spec.weight
        dest.fwd = spec.fwd
        if spec.u_threshold == 0 or spec.u_threshold > dest.u_threshold:
            dest.overloaded = False
        dest.u_threshold = spec.u_threshold
        dest.l_threshold = spec.l_threshold
        dest.available = True
        dest.service = svc

    def add_dest(self, key: SvcKey, spec: DestSpec) -> Dest:
        """ipvsadm -a."""
        svc = self._service_for_dest(key)
        self._validate_dest(spec)
        if svc.find_dest(spec.addr, spec.port) is not None:
            raise IpvsError(errno.EEXIST, "Destination already exists")
        if spec.addr == 0 or spec.addr == U32_MAX or spec.addr >> 28 == 0xE:
            raise _einval()  # not a unicast address
        dest = self._trash.pop((key, spec.addr, spec.port), None)
        if dest is None:
            dest = Dest(svc, spec.addr, spec.port)
        self._apply_dest(svc, dest, spec, add=True)
        svc.dests.insert(0, dest)
        svc.scheduler.update(svc)
        self._prune_trash()
        return dest

    def edit_dest(self, key: SvcKey, spec: DestSpec) -> Dest:
        """ipvsadm -e: weight, method and thresholds all take the given values."""
        svc = self._service_for_dest(key)
        self._validate_dest(spec)
        dest = svc.find_dest(spec.addr, spec.port)
        if dest is None:
            raise IpvsError(errno.ENOENT, "No such destination")
        self._apply_dest(svc, dest, spec, add=False)
        svc.scheduler.update(svc)
        return dest

    def del_dest(self, key: SvcKey, addr: int, port: int) -> None:
        """ipvsadm -d. Its connections stay until they expire, unavailable."""
        svc = self._service_for_dest(key)
        dest = svc.find_dest(addr, port)
        if dest is None:
            raise IpvsError(errno.ENOENT, "No such destination")
        self._unlink_dest(svc, dest)
        svc.scheduler.update(svc)
        self._prune_trash()

    def _unlink_dest(self, svc: VirtualService, dest: Dest) -> None:
        svc.dests.remove(dest)
        dest.available = False
        svc.retired.add(dest.stats)  # the service keeps what this server carried
        dest.stats.zero()
        if dest.activeconns or dest.inactconns or dest.persistconns:
            self._trash[(svc.key, dest.addr, dest.port)] = dest

    def _prune_trash(self) -> None:
        for tkey, dest in list(self._trash.items()):
            if not (dest.activeconns or dest.inactconns or dest.persistconns):
                del self._trash[tkey]

    # -- counters and timeouts -----------------------------------------------------------------
    def zero(self, key: SvcKey | None = None) -> None:
        """ipvsadm -Z [service]: counters and rates of one service and its real servers, or
        of everything. Zeroing one service leaves the total as it was, as in IPVS."""
        if key is None:
            for svc in self._services.values():
                self._zero_service(svc)
            self._retired.clear()
            self.stats.zero()
            return
        svc = self.service(key)
        self.refresh_stats()
        self._retired.add(svc.stats)
        self._zero_service(svc)

    @staticmethod
    def _zero_service(svc: VirtualService) -> None:
        svc.retired.clear()
        svc.stats.zero()
        for dest in svc.dests:
            dest.stats.zero()

    def set_timeouts(self, tcp_s: int, tcpfin_s: int, udp_s: int) -> None:
        """ipvsadm --set tcp tcpfin udp: ESTABLISHED, FIN_WAIT and UDP timeouts; 0 leaves a
        value as it is. Connections pick a new value up at their next packet."""
        for value in (tcp_s, tcpfin_s, udp_s):
            _check_range(value, 0, 2**31 - 1)
        tcp = self.conns.tcp_timeouts_s
        if tcp_s:
            tcp[ESTABLISHED] = tcp_s
        if tcpfin_s:
            tcp[FIN_WAIT] = tcpfin_s
        if udp_s:
            self.conns.udp_timeout_s = udp_s

    def refresh_stats(self) -> None:
        """Sum the real servers' counters into their services and the services' into the
        total (the kernel sums its per-CPU counters when they are read)."""
        for svc in self._services.values():
            svc.stats.set_sum(svc.retired, [d.stats for d in svc.dests])
        self.stats.set_sum(self._retired, [svc.stats for svc in self._services.values()])

    def _all_stats(self) -> Iterator[Stats]:
        self.refresh_stats()
        for svc in self._services.values():
            yield svc.stats
            for dest in svc.dests:
                yield dest.stats
        yield self.stats

    def tick(self, now: float) -> bool:
        """Run the 2-second rate estimator if due, and the defences once a second (see
        defense.py); call at least every second. Returns whether the estimator ran."""
        self.clock_s = now
        if now >= self._next_defense_s:
            self._next_defense_s = now + DEFENSE_PERIOD_S
            self.defense.tick(self.conns, now)
        return self.estimator.tick(now, self._all_stats)

    # -- connections ---------------------------------------------------------------------------
    def expire(self, now: float) -> int:
        """Remove expired connections (see ConnTable.expire); returns how many went."""
        self.clock_s = now
        return self.conns.expire(now)

    def schedule_new(
        self,
        svc: VirtualService,
        proto: int,
        caddr: int,
        cport: int,
        vaddr: int,
        vport: int,
        now: float,
    ) -> Connection | None:
        """Make the connection for the first packet of a flow to `svc` (ip_vs_schedule).

        Persistence first (the client's template, or a new one), else the scheduler; then a
        new connection in state NONE, counted on the real server (inactive) and in `conns`.
        For TCP call it only for a SYN without ACK/RST/FIN, as tcp_conn_schedule() does, and
        then pass that packet to `on_tcp_packet` like every other. Returns None, saying why in
        `refused`, when the table is at its limit (counted by the defence) or no real server
        is usable (counted in drops["no_dest"]).
        """
        self.clock_s = now
        need = 2 if svc.flags & SVC_F_PERSISTENT else 1  # a template may come too
        if not self.defense.make_room(self.conns, proto, caddr, cport, need):
            self.refused = "table-full"
            return None
        if svc.flags & SVC_F_PERSISTENT:
            dest, template = self._persist(svc, proto, caddr, cport, vaddr, vport, now)
        else:
            dest = svc.scheduler.schedule(svc, caddr, cport, vaddr, vport)
            template = None
        if dest is None:
            self.drops["no_dest"] += 1
            self.refused = "no-real-server"
            return None
        conn = self._new_conn(svc, proto, caddr, cport, vaddr, vport, dest, dest.port or vport, now)
        if template is not None:
            conn.control = template
            template.n_control += 1
        return conn

    def _new_conn(
        self,
        svc: VirtualService,
        proto: int,
        caddr: int,
        cport: int,
        vaddr: int,
        vport: int,
        dest: Dest,
        dport: int,
        now: float,
    ) -> Connection:
        fwd = dest.fwd
        # New connections start inactive; DR and TUN ones expect no replies (NOOUTPUT).
        flags = fwd.code | F_INACTIVE | (0 if fwd is Fwd.NAT else F_NOOUTPUT)
        timeout = (
            self.conns.tcp_timeouts_s[NONE] if proto == PROTO_TCP else self.conns.udp_timeout_s
        )
        conn = Connection(
            proto,
            caddr,
            cport,
            vaddr,
            vport,
            dest.addr,
            dport,
            flags=flags,
            timeout=timeout,
            dest=dest,
            service=svc,
            fwd=fwd,
        )
        self.conns.insert(conn, now)
        dest.stats.conns += 1
        return conn

    def _persist(
        self,
        svc: VirtualService,
        proto: int,
        caddr: int,
        cport: int,
        vaddr: int,
        vport: int,
        now: float,
    ) -> tuple[Dest | None, Connection | None]:
        """ip_vs_sched_persist(): find or make the client's template."""
        snet = caddr & svc.netmask
        if svc.fwmark:
            tproto, tvaddr, tvport = PROTO_IP, svc.fwmark, 0
        elif svc.port == 0:
            tproto, tvaddr, tvport = proto, vaddr, 0
        else:
            tproto, tvaddr, tvport = proto, vaddr, vport
        template = self.conns.lookup_template(tproto, snet, tvaddr, tvport)
        if template is not None and not self._template_valid(template):
            self.conns.remove(template)
            template = None
        if template is None:
            dest = svc.scheduler.schedule(svc, caddr, cport, vaddr, vport)
            if dest is None:
                return None, None
            tdport = 0 if (svc.fwmark or svc.port == 0) else dest.port
            template = Connection(
                tproto,
                snet,
                0,
                tvaddr,
                tvport,
                dest.addr,
                tdport,
                flags=F_TEMPLATE | dest.fwd.code,
                timeout=svc.timeout_s,
                dest=dest,
                service=svc,
                fwd=dest.fwd,
            )
            self.conns.insert(template, now)
        else:
            self.conns.refresh(template, now)  # using a template restarts its timer
        return template.dest, template

    def _template_valid(self, template: Connection) -> bool:
        # ip_vs_check_template()
        dest = template.dest
        if dest is None or not dest.available:
            return False
        return not (self.expire_quiescent_template and dest.weight <= 0)

    def sync_in(self, record: dict[str, Any], now: float) -> Connection | None:
        """Insert or update a connection received from a sync peer (Connection.to_record()),
        as ip_vs_proc_conn() does on a backup director: bound to the matching real server of
        the matching service, forwarding method from that server, timer from the record's
        timeout, capped at what this director would give such an entry (the state's timeout,
        a template the service's persistence timeout): a peer cannot pin entries for days.
        Not counted in `conns`. None if no service matches; `TableFull` if a new entry does
        not fit under the table's limit."""
        self.clock_s = now
        proto, flags = record["proto"], record["flags"]
        caddr, cport = record["caddr"], record["cport"]
        vaddr, vport = record["vaddr"], record["vport"]
        daddr, dport = record["daddr"], record["dport"]
        state, timeout = record["state"], record["timeout_s"]
        fwmark = record.get("fwmark", 0)
        template = bool(flags & F_TEMPLATE)
        svc = self._by_fwmark.get(fwmark) if fwmark else self.find_service(proto, vaddr, vport)
        if svc is None:
            self.drops["sync_no_service"] += 1
            return None
        dest = svc.find_dest(daddr, dport) or next((d for d in svc.dests if d.addr == daddr), None)
        timeout = min(timeout, self._max_timeout_s(svc, proto, state, template))
        inactive = (
            0 if (not template and proto == PROTO_TCP and state == ESTABLISHED) else F_INACTIVE
        )
        if template:
            conn = self.conns.lookup_template(proto, caddr, vaddr, vport)
        else:
            conn = self.conns.lookup_in(proto, caddr, cport, vaddr, vport)
        if conn is not None:
            self.conns.set_state(conn, state, inactive, timeout, now)
            return conn
        if not self.defense.make_room(self.conns, proto, caddr, cport, 1):
            raise TableFull(f"the connection table is at its limit ({self.defense.conn_max})")
        fwd = dest.fwd if dest is not None else Fwd.from_code(flags)
        conn_flags = (flags & F_TEMPLATE) | fwd.code | inactive | F_SYNC
        if fwd is not Fwd.NAT:
            conn_flags |= F_NOOUTPUT
        conn = Connection(
            proto,
            caddr,
            cport,
            vaddr,
            vport,
            daddr,
            dport,
            flags=conn_flags,
            state=state,
            timeout=timeout,
            dest=dest,
            service=svc,
            fwd=fwd,
        )
        self.conns.insert(conn, now)
        return conn

    def _max_timeout_s(self, svc: VirtualService, proto: int, state: int, template: bool) -> int:
        """The longest timer this director gives such an entry itself."""
        if template:
            return svc.timeout_s
        if proto == PROTO_TCP:
            tcp = self.conns.tcp_timeouts_s
            return tcp[state] if 0 <= state < len(tcp) else max(tcp)
        return self.conns.udp_timeout_s
