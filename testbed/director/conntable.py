"""The IPVS connection table, its TCP state machine and connection expiry.

For: storing connections (and persistence templates) the way ip_vs_conn.c does, in a FIXED
array of 2^bits buckets with chaining, so that the table-size knob (ip_vs_conn_tab_bits,
8..20, default 12) has the effect it has in the kernel: with more connections than buckets the
chains grow and every lookup walks them. Each connection is stored once, hashed on
(protocol, client address, client port), so packets in both directions find the same bucket.
Also: the per-connection TCP state machine of ip_vs_proto_tcp.c with its transition tables and
per-state timeouts, the active/inactive/persistent counts on the real server, and expiry whose
cost follows what expires, not the table size.

Not for: choosing a real server or persistence (schedulers.py, model.py), services, packet
parsing or rewriting. Nothing here reads a clock: every call takes `now` (seconds).

Hot calls for the forwarding loop: `lookup_in`, `lookup_out`, `on_tcp_packet`, `on_udp_packet`.
They take ints (host-order u32 addresses) and build no tuples or objects; only CPython's
intermediate ints are allocated. Measured (CPython 3.11, 2-core VM, best of 5): lookup_in or
lookup_out hit ~250 ns with chains of about 1, ~420 ns with the seed's 62,000 connections in
the default 4096 buckets (chains of ~15); on_tcp_packet ~150 ns.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

# -- TCP states, numbered as IP_VS_TCP_S_* ------------------------------------------------------
(
    NONE,
    ESTABLISHED,
    SYN_SENT,
    SYN_RECV,
    FIN_WAIT,
    TIME_WAIT,
    CLOSE,
    CLOSE_WAIT,
    LAST_ACK,
    LISTEN,
    SYNACK,
) = range(11)
TCP_STATE_NAMES = (
    "NONE",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "SYNACK",
)
UDP_STATE_NAME = "UDP"
"""ip_vs_proto_udp.c has one state, IP_VS_UDP_S_NORMAL, which ipvsadm -c shows as "UDP"."""
CTPL_ASSURED = 0x0001
"""IP_VS_CTPL_S_ASSURED: a template's state once a connection it pins is established (TCP)
or answered (UDP), shown as ASSURED; a template starts as NONE (IP_VS_CTPL_S_NONE)."""

TCP_DEFAULT_TIMEOUTS_S = (2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120)
"""tcp_timeouts[] of ip_vs_proto_tcp.c, indexed by state. `ipvsadm --set tcp tcpfin udp`
changes the ESTABLISHED and FIN_WAIT entries."""
UDP_DEFAULT_TIMEOUT_S = 300
"""udp_timeouts[IP_VS_UDP_S_NORMAL] of ip_vs_proto_udp.c."""

PROTO_IP, PROTO_TCP, PROTO_UDP = 0, 6, 17
PROTO_NAMES = {PROTO_IP: "IP", PROTO_TCP: "TCP", PROTO_UDP: "UDP"}
"""As /proc/net/ip_vs_conn names them; templates of fwmark services have protocol IP (0)."""

# -- Directions. The values are row offsets into the flat transition table, as the kernel's
# TCP_DIR_INPUT/OUTPUT/INPUT_ONLY are offsets into tcp_states[]. INPUT is client -> director,
# OUTPUT is real server -> director (NAT replies). INPUT_ONLY is used, as in the kernel, by
# connections flagged NOOUTPUT (DR and TUN, whose replies bypass the director); callers pass
# INPUT for those and the table switches.
INPUT, OUTPUT, INPUT_ONLY = 0, 44, 88

# -- Connection flags, with the kernel's values (IP_VS_CONN_F_*) so they can be synced as-is.
F_MASQ, F_TUNNEL, F_DROUTE, F_FWD_MASK = 0x0000, 0x0002, 0x0003, 0x0007
F_SYNC = 0x0020
F_NOOUTPUT = 0x0080
F_INACTIVE = 0x0100
F_TEMPLATE = 0x1000

# -- TCP header flag bits.
TH_FIN, TH_SYN, TH_RST, TH_ACK = 0x01, 0x02, 0x04, 0x10

sNO, sES, sSS, sSR, sFW, sTW, sCL, sCW, sLA, sLI, sSA = (
    NONE,
    ESTABLISHED,
    SYN_SENT,
    SYN_RECV,
    FIN_WAIT,
    TIME_WAIT,
    CLOSE,
    CLOSE_WAIT,
    LAST_ACK,
    LISTEN,
    SYNACK,
)
# tcp_states[] of ip_vs_proto_tcp.c (the default table, not the secure_tcp one).
# Rows: event syn, fin, ack, rst; columns: the current state in IP_VS_TCP_S_* order.
_TCP_STATES = (
    # INPUT      sNO  sES  sSS  sSR  sFW  sTW  sCL  sCW  sLA  sLI  sSA
    (sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR),  # syn
    (sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW),  # fin
    (sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES),  # ack
    (sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR),  # rst
    # OUTPUT
    (sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR),  # syn
    (sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW),  # fin
    (sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES),  # ack
    (sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL),  # rst
    # INPUT_ONLY
    (sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR),  # syn
    (sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW),  # fin
    (sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES),  # ack
    (sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL),  # rst
)
_NEXT = tuple(state for row in _TCP_STATES for state in row)

# tcp_states_dos[] of ip_vs_proto_tcp.c: the table secure_tcp switches to (defense.py). A SYN
# to a DR/TUN connection enters SYNACK, and NAT connections enter ESTABLISHED only once the
# real server has answered (an ACK in SYN_RECV stays there).
_TCP_STATES_DOS = (
    # INPUT      sNO  sES  sSS  sSR  sFW  sTW  sCL  sCW  sLA  sLI  sSA
    (sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSA),  # syn
    (sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sSA),  # fin
    (sES, sES, sSS, sSR, sFW, sTW, sCL, sCW, sCL, sLI, sSA),  # ack
    (sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL),  # rst
    # OUTPUT
    (sSS, sES, sSS, sSA, sSS, sSS, sSS, sSS, sSS, sLI, sSA),  # syn
    (sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW),  # fin
    (sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES),  # ack
    (sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL),  # rst
    # INPUT_ONLY
    (sSA, sES, sES, sSR, sSA, sSA, sSA, sSA, sSA, sSA, sSA),  # syn
    (sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW),  # fin
    (sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES),  # ack
    (sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL),  # rst
)
_NEXT_DOS = tuple(state for row in _TCP_STATES_DOS for state in row)


def _event_row(tcp_flags: int) -> int:
    # tcp_state_idx(): rst beats syn beats fin beats ack; none of them is "no event".
    if tcp_flags & TH_RST:
        return 3 * 11
    if tcp_flags & TH_SYN:
        return 0
    if tcp_flags & TH_FIN:
        return 1 * 11
    if tcp_flags & TH_ACK:
        return 2 * 11
    return -1


_EVENT_ROW = tuple(_event_row(f) for f in range(256))

_UNHASHED = float("-inf")
_HASH_MULT = 0x61C88647  # GOLDEN_RATIO_32 of the kernel's hash_32()
_U32 = 0xFFFFFFFF
MIN_TAB_BITS, MAX_TAB_BITS, DEFAULT_TAB_BITS = 8, 20, 12
HEAP_SLACK = 1024  # stale expiry-heap items tolerated beyond the live entries' count


class Connection:
    """One IPVS connection (struct ip_vs_conn), or a persistence template.

    Addresses are host-order u32, ports ints, `expires` and `timeout` seconds. `dest` is the
    real server (None when a synced connection found none), `service` the virtual service,
    `fwd` the forwarding method copied from the real server when the connection was made
    (changing a real server's method later does not change existing connections, as in IPVS).
    A template has caddr = client address & netmask, cport 0, state NONE and `n_control`
    counting the connections it pins; a connection it pins has it as `control`.
    `in_pkts` counts the client's packets (connection sync's trigger, drop_entry's measure
    of a busy connection, as in IPVS) and `old_state` is the state last sent to the backup.
    """

    __slots__ = (
        "proto",
        "caddr",
        "cport",
        "vaddr",
        "vport",
        "daddr",
        "dport",
        "fwd",
        "dest",
        "service",
        "state",
        "flags",
        "timeout",
        "expires",
        "control",
        "n_control",
        "armed",
        "in_pkts",
        "old_state",
    )

    def __init__(
        self,
        proto: int,
        caddr: int,
        cport: int,
        vaddr: int,
        vport: int,
        daddr: int,
        dport: int,
        *,
        flags: int = 0,
        state: int = NONE,
        timeout: float = 0,
        dest: Any = None,
        service: Any = None,
        fwd: Any = None,
    ) -> None:
        self.proto = proto
        self.caddr = caddr
        self.cport = cport
        self.vaddr = vaddr
        self.vport = vport
        self.daddr = daddr
        self.dport = dport
        self.fwd = fwd
        self.dest = dest
        self.service = service
        self.state = state
        self.flags = flags
        self.timeout = timeout
        self.expires = 0.0
        self.control: Connection | None = None
        self.n_control = 0
        # Deadline of this connection's authoritative entry in the expiry heap; _UNHASHED
        # when not in a table.
        self.armed = _UNHASHED
        self.in_pkts = 0
        self.old_state = NONE

    @property
    def is_template(self) -> bool:
        return bool(self.flags & F_TEMPLATE)

    @property
    def active(self) -> bool:
        return not self.flags & (F_INACTIVE | F_TEMPLATE)

    @property
    def state_name(self) -> str:
        """The state as `ipvsadm -L -c` shows it (templates: NONE or ASSURED)."""
        if self.flags & F_TEMPLATE:
            return "ASSURED" if self.state & CTPL_ASSURED else "NONE"
        if self.proto == PROTO_TCP:
            return TCP_STATE_NAMES[self.state]
        return UDP_STATE_NAME

    def to_record(self, now: float) -> dict[str, int | float]:
        """A plain form for connection sync; `Director.sync_in` turns it back into one."""
        service = self.service
        return {
            "proto": self.proto,
            "caddr": self.caddr,
            "cport": self.cport,
            "vaddr": self.vaddr,
            "vport": self.vport,
            "daddr": self.daddr,
            "dport": self.dport,
            "state": self.state,
            "flags": self.flags,
            "timeout_s": self.timeout,
            "expires_in_s": max(self.expires - now, 0.0),
            "fwmark": service.fwmark if service is not None else 0,
        }

    def __repr__(self) -> str:
        return (
            f"Connection(proto={self.proto}, c={self.caddr:#x}:{self.cport}, "
            f"v={self.vaddr:#x}:{self.vport}, d={self.daddr:#x}:{self.dport}, "
            f"state={self.state_name}, flags={self.flags:#x}, expires={self.expires})"
        )


def _bind_dest(conn: Connection) -> None:
    """ip_vs_bind_dest(): count the connection on its real server; set the overload flag."""
    dest = conn.dest
    if dest is None:
        return
    if conn.flags & F_TEMPLATE:
        dest.persistconns += 1
    elif conn.flags & F_INACTIVE:
        dest.inactconns += 1
    else:
        dest.activeconns += 1
    if dest.u_threshold and dest.activeconns + dest.inactconns >= dest.u_threshold:
        dest.overloaded = True


def _unbind_dest(conn: Connection) -> None:
    """ip_vs_unbind_dest(): uncount; clear the overload flag with the kernel's hysteresis."""
    dest = conn.dest
    if dest is None:
        return
    if conn.flags & F_TEMPLATE:
        dest.persistconns -= 1
    elif conn.flags & F_INACTIVE:
        dest.inactconns -= 1
    else:
        dest.activeconns -= 1
    total = dest.activeconns + dest.inactconns
    if dest.l_threshold:
        if total < dest.l_threshold:
            dest.overloaded = False
    elif dest.u_threshold:
        if total * 4 < dest.u_threshold * 3:
            dest.overloaded = False
    else:
        dest.overloaded = False


class ConnTable:
    """2^bits buckets, each a chain (a list) of connections; plus the expiry heap.

    Expiry is a lazy-deletion heap keyed by deadline. Refreshing a connection's timer on a
    packet only moves `conn.expires` later (O(1)); the heap entry is checked when its deadline
    comes and re-pushed at the new `expires` if the connection was refreshed meanwhile. Only a
    timer that moves EARLIER (a state change to a shorter timeout) pushes a new entry. So
    `expire(now)` pops only entries that are due, and its cost follows them, not the table
    size; `expire_work` counts those pops. The heap holds at most twice the live entries
    (plus `HEAP_SLACK`): past that it is rebuilt from them (`_compact`).
    """

    def __init__(self, bits: int = DEFAULT_TAB_BITS, *, seed: int | None = None) -> None:
        if not MIN_TAB_BITS <= bits <= MAX_TAB_BITS:
            raise ValueError(f"connection table bits must be {MIN_TAB_BITS}..{MAX_TAB_BITS}")
        self.bits = bits
        self.size = 1 << bits
        self._shift = 32 - bits
        # The kernel seeds its jhash with a random value so clients cannot aim at one chain.
        self._seed = random.getrandbits(32) if seed is None else seed & 0xFFFFFFFF
        self._tab: list[list[Connection] | None] = [None] * self.size
        self._count = 0
        self._heap: list[tuple[float, int, Connection]] = []
        self._seq = itertools.count()
        self._parked: list[list[Connection] | None] | None = None  # see `park`
        self._parked_count = 0
        self.tcp_timeouts_s = list(TCP_DEFAULT_TIMEOUTS_S)
        self.udp_timeout_s = UDP_DEFAULT_TIMEOUT_S
        self.expire_work = 0
        self.heap_rebuilds = 0
        self._next = _NEXT  # the TCP transition table in use (secure_tcp swaps it)

    def __len__(self) -> int:
        return self._count

    def _bucket(self, proto: int, caddr: int, cport: int) -> int:
        """A seeded hash_32() (the kernel's golden-ratio hash) of protocol, client address
        and client port: the inputs of the kernel's jhash. Kept identical to the expression
        inlined in the lookups."""
        return ((caddr ^ cport << 16 ^ proto ^ self._seed) * _HASH_MULT & _U32) >> self._shift

    # -- per-packet calls ---------------------------------------------------------------------
    def lookup_in(
        self, proto: int, caddr: int, cport: int, vaddr: int, vport: int
    ) -> Connection | None:
        """The connection of a client -> virtual service packet (ip_vs_conn_in_get)."""
        # The hash is inlined: a call would cost more than the hash.
        chain = self._tab[
            ((caddr ^ cport << 16 ^ proto ^ self._seed) * _HASH_MULT & _U32) >> self._shift
        ]
        if chain:
            for c in chain:
                if (
                    c.cport == cport
                    and c.caddr == caddr
                    and c.vport == vport
                    and c.vaddr == vaddr
                    and c.proto == proto
                    and not c.flags & F_TEMPLATE
                ):
                    return c
        return None

    def lookup_out(
        self, proto: int, raddr: int, rport: int, caddr: int, cport: int
    ) -> Connection | None:
        """The connection of a real server -> client reply (NAT), from the reply's source
        (raddr:rport) and destination (caddr:cport) (ip_vs_conn_out_get)."""
        chain = self._tab[
            ((caddr ^ cport << 16 ^ proto ^ self._seed) * _HASH_MULT & _U32) >> self._shift
        ]
        if chain:
            for c in chain:
                if (
                    c.cport == cport
                    and c.dport == rport
                    and c.caddr == caddr
                    and c.daddr == raddr
                    and c.proto == proto
                    and not c.flags & F_TEMPLATE
                ):
                    return c
        return None

    def on_tcp_packet(self, conn: Connection, direction: int, tcp_flags: int, now: float) -> None:
        """set_tcp_state() plus the timer refresh done for every packet of a connection.

        `direction` is INPUT or OUTPUT, `tcp_flags` the TCP header's flag byte. Moves the
        real server's active/inactive counts when the connection enters or leaves
        ESTABLISHED, and applies the new state's timeout (as set by --set) from now.
        """
        flags = conn.flags
        if flags & F_NOOUTPUT:
            if direction == OUTPUT:
                conn.flags = flags = flags & ~F_NOOUTPUT
            else:
                direction = INPUT_ONLY
        row = _EVENT_ROW[tcp_flags & 0xFF]
        old = conn.state
        new = self._next[direction + row + old] if row >= 0 else CLOSE
        if new != old:
            dest = conn.dest
            if dest is not None:
                if new == ESTABLISHED:
                    if flags & F_INACTIVE:
                        dest.activeconns += 1
                        dest.inactconns -= 1
                        conn.flags = flags & ~F_INACTIVE
                elif not flags & F_INACTIVE:
                    dest.activeconns -= 1
                    dest.inactconns += 1
                    conn.flags = flags | F_INACTIVE
            if new == ESTABLISHED and conn.control is not None:
                conn.control.state |= CTPL_ASSURED  # ip_vs_control_assure_ct()
            conn.state = new
        timeout = self.tcp_timeouts_s[new]
        conn.timeout = timeout
        expires = now + timeout
        conn.expires = expires
        if expires < conn.armed:
            self._arm(conn, expires)

    def on_udp_packet(self, conn: Connection, now: float, direction: int = INPUT) -> None:
        """udp_state_transition(): every packet restarts the UDP timeout; a reply (OUTPUT)
        assures the connection's persistence template."""
        if direction == OUTPUT and conn.control is not None:
            conn.control.state |= CTPL_ASSURED
        timeout = self.udp_timeout_s
        conn.timeout = timeout
        expires = now + timeout
        conn.expires = expires
        if expires < conn.armed:
            self._arm(conn, expires)

    # -- connections come and go --------------------------------------------------------------
    def insert(self, conn: Connection, now: float) -> None:
        """Hash a new connection (timer: now + conn.timeout) and count it on its real server."""
        i = self._bucket(conn.proto, conn.caddr, conn.cport)
        chain = self._tab[i]
        if chain is None:
            self._tab[i] = [conn]
        else:
            chain.append(conn)
        self._count += 1
        conn.expires = now + conn.timeout
        self._arm(conn, conn.expires)
        _bind_dest(conn)

    def remove(self, conn: Connection) -> None:
        """Unhash a connection now (expiry, or a caller's decision) and uncount it."""
        if conn.armed == _UNHASHED:
            return
        i = self._bucket(conn.proto, conn.caddr, conn.cport)
        chain = self._tab[i]
        if chain is None or conn not in chain:  # parked (see `park`): out of the parked table
            chain = self._parked[i] if self._parked is not None else None
            self._parked_count -= 1
            self._count += 1
        chain.remove(conn)
        self._count -= 1
        conn.armed = _UNHASHED
        _unbind_dest(conn)
        control = conn.control
        if control is not None:
            control.n_control -= 1
            conn.control = None

    def set_state(
        self, conn: Connection, state: int, flags: int, timeout: float, now: float
    ) -> None:
        """Overwrite a connection's state and activity flag (connection sync), moving the
        real server's counts as the change requires."""
        dest = conn.dest
        was_inactive = conn.flags & F_INACTIVE
        conn.flags = (conn.flags & ~F_INACTIVE) | (flags & F_INACTIVE)
        if dest is not None and not conn.flags & F_TEMPLATE:
            if was_inactive and not conn.flags & F_INACTIVE:
                dest.inactconns -= 1
                dest.activeconns += 1
            elif not was_inactive and conn.flags & F_INACTIVE:
                dest.activeconns -= 1
                dest.inactconns += 1
        conn.state = state
        conn.timeout = timeout
        self.refresh(conn, now)

    def refresh(self, conn: Connection, now: float) -> None:
        """Restart a connection's timer from now with its current timeout."""
        expires = now + conn.timeout
        conn.expires = expires
        if expires < conn.armed:
            self._arm(conn, expires)

    def _arm(self, conn: Connection, deadline: float) -> None:
        conn.armed = deadline
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._seq), conn))
        if len(heap) > 2 * (self._count + self._parked_count) + HEAP_SLACK:
            self._compact()

    def _compact(self) -> None:
        """Rebuild the heap from the live entries' authoritative deadlines. Entries removed
        before their deadline (evicted, dropped, reused) leave stale heap items that would
        otherwise pin them in memory until that deadline: under a SYN flood, a minute of
        removed connections. Amortised O(1) per push: it runs when stale items outnumber
        the live ones. Parked entries (see `park`) keep their timers too."""
        tables = [self._tab] if self._parked is None else [self._tab, self._parked]
        self._heap = [
            (c.armed, next(self._seq), c) for tab in tables for chain in tab if chain for c in chain
        ]
        heapq.heapify(self._heap)
        self.heap_rebuilds += 1

    def expire(self, now: float) -> int:
        """Remove the connections whose timer ran out; return how many went.

        A template that still pins connections is not removed but re-armed for its timeout,
        as ip_vs_conn_expire() does while n_control > 0.
        """
        heap = self._heap
        removed = 0
        while heap and heap[0][0] <= now:
            deadline, _, conn = heapq.heappop(heap)
            self.expire_work += 1
            if deadline != conn.armed:
                continue  # superseded by an earlier re-arm, or the connection is gone
            if conn.expires > now:
                self._arm(conn, conn.expires)  # refreshed since this entry was pushed
                heap = self._heap  # _arm may have rebuilt it
                continue
            if conn.n_control:
                conn.expires = now + conn.timeout
                self._arm(conn, conn.expires)
                heap = self._heap
                continue
            self.remove(conn)
            removed += 1
        return removed

    # -- persistence templates ------------------------------------------------------------------
    def lookup_template(self, proto: int, caddr: int, vaddr: int, vport: int) -> Connection | None:
        """The template for (proto, caddr & netmask, vaddr or fwmark, vport or 0)
        (ip_vs_ct_in_get)."""
        chain = self._tab[self._bucket(proto, caddr, 0)]
        if chain:
            for c in chain:
                if (
                    c.flags & F_TEMPLATE
                    and c.cport == 0
                    and c.caddr == caddr
                    and c.vport == vport
                    and c.vaddr == vaddr
                    and c.proto == proto
                ):
                    return c
        return None

    def rehash(self, bits: int) -> None:
        """Move every entry into 2^bits buckets. The kernel sizes its table once, at module
        load (conn_tab_bits); the testbed resizes in place so that an experiment can compare
        hash sizes on the same director, entries and machine state, minutes apart at most."""
        if not MIN_TAB_BITS <= bits <= MAX_TAB_BITS:
            raise ValueError(f"connection table bits must be {MIN_TAB_BITS}..{MAX_TAB_BITS}")
        if self._parked is not None:
            raise ValueError("entries are parked: unpark them before resizing the table")
        entries = [c for chain in self._tab if chain for c in chain]
        self.bits, self.size, self._shift = bits, 1 << bits, 32 - bits
        self._tab = [None] * self.size
        for conn in entries:
            i = self._bucket(conn.proto, conn.caddr, conn.cport)
            chain = self._tab[i]
            if chain is None:
                self._tab[i] = [conn]
            else:
                chain.append(conn)

    def park(self, keep) -> int:
        """Set aside every entry for which ``keep(conn)`` is false: lookups no longer find
        them, but they stay as they are (no entry is freed or made, their real servers'
        counts and timers are untouched), so `unpark` brings the same table back at once.
        An experiment compares an empty and a full table on one director this way; freeing
        and re-creating 62,000 entries instead slowed the blocks after it by up to 20%. Only
        for experiments shorter than the entries' timeout (their expiry is not run while
        parked). Returns how many entries were set aside."""
        if self._parked is not None:
            raise ValueError("entries are parked already")
        full, self._tab = self._tab, [None] * self.size
        moved = kept = 0
        for i, chain in enumerate(full):
            if not chain:
                continue
            stay = [c for c in chain if keep(c)]
            if stay:
                full[i] = [c for c in chain if not keep(c)] or None
                self._tab[i] = stay
                kept += len(stay)
            moved += len(chain) - len(stay)
        self._parked, self._parked_count = full, moved
        self._count = kept
        return moved

    def unpark(self) -> int:
        """Bring back what `park` set aside; entries made meanwhile join them."""
        if self._parked is None:
            return 0
        current, self._tab = self._tab, self._parked
        for i, chain in enumerate(current):
            if chain:
                if self._tab[i] is None:
                    self._tab[i] = chain
                else:
                    self._tab[i].extend(chain)
        back = self._parked_count
        self._count += back
        self._parked = None
        self._parked_count = 0
        return back

    @property
    def secure_tcp(self) -> bool:
        """Whether TCP moves by tcp_states_dos (ip_vs_protocol_timeout_change())."""
        return self._next is _NEXT_DOS

    @secure_tcp.setter
    def secure_tcp(self, on: bool) -> None:
        self._next = _NEXT_DOS if on else _NEXT

    def bucket_index(self, proto: int, caddr: int, cport: int) -> int:
        """The bucket a connection of (proto, caddr, cport) hashes to."""
        return self._bucket(proto, caddr, cport)

    def chain(self, index: int) -> list[Connection]:
        """A copy of bucket ``index``'s chain (callers may remove entries while walking it)."""
        chain = self._tab[index]
        return list(chain) if chain else []

    # -- looking at the table -------------------------------------------------------------------
    def __iter__(self) -> Iterator[Connection]:
        """Every connection and template in bucket order, as /proc/net/ip_vs_conn lists them."""
        for chain in self._tab:
            if chain:
                yield from chain

    def state_counts(self) -> dict[str, int]:
        """Connections (not templates) by state name, as ``ipvsadm -L -n -c`` would count them."""
        counts = Counter(
            c.state_name for chain in self._tab if chain for c in chain if not c.flags & F_TEMPLATE
        )
        return dict(sorted(counts.items()))

    def timeouts_by_state(self) -> dict[str, float]:
        """Each state's timeout in seconds (as set by ``ipvsadm --set``), UDP's under "UDP"."""
        out = {name: float(s) for name, s in zip(TCP_STATE_NAMES, self.tcp_timeouts_s, strict=True)}
        out[UDP_STATE_NAME] = float(self.udp_timeout_s)
        return out

    def chain_histogram(self) -> dict[int, int]:
        """Chain length -> number of buckets with that length (empty buckets under 0)."""
        hist = Counter(len(chain) if chain else 0 for chain in self._tab)
        return dict(sorted(hist.items()))

    def chain_stats(self) -> dict[str, float]:
        """Size, entries, buckets in use, longest chain and mean length of used chains."""
        used = [len(chain) for chain in self._tab if chain]
        return {
            "size": self.size,
            "entries": self._count,
            "used_buckets": len(used),
            "max_chain": max(used, default=0),
            "mean_chain": (sum(used) / len(used)) if used else 0.0,
        }
