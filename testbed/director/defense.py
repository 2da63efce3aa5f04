"""The connection table's limit and IPVS's defences against running out of room.

For: bounding the connection table, so that a spoofed SYN flood or a UDP scan (every first
packet of a flow makes an entry) cannot grow the director without limit, and IPVS's three
defences with their sysctls (Documentation/networking/ipvs-sysctl.rst, ip_vs_ctl.c
update_defense_level(), ip_vs_conn.c ip_vs_random_dropentry(), ip_vs_todrop()):

- ``drop_entry``: once a second, scan 1/32 of the buckets at random and drop the entries
  that are half-open (TCP SYN_RECV or SYNACK), and idle ones with few packets
  (``todrop_entry``: not refreshed for 60 s, 1..8 packets, every n-th with n packets).
- ``drop_packet``: drop 1 in ``rate`` packets that would make a new connection, with
  ``rate = amemthresh / (amemthresh - available)`` (or ``am_droprate`` in mode 3).
- ``secure_tcp``: move TCP by the stricter transition table (conntable._TCP_STATES_DOS).

Each is 0 (off), 1 (automatic, off now), 2 (automatic, on now: the daemon sets 2 and back to
1 as the kernel does) or 3 (always on). The kernel's trigger is free memory below
``amemthresh`` pages; here the table has a hard limit, ``conn_max`` entries, and "available
memory" is the room left under it (``conn_max - entries``), ``amemthresh`` in entries.

The limit itself is ours (IPVS has none but the machine's memory). At the limit a new entry
is refused (``table_full``), except that with drop_entry on (1..3) it first takes the place of
the oldest half-open entry of its own bucket (or of the few buckets after it), one drop_entry
would drop anyway (``evicted``): under a SYN flood a real client's SYN still gets an entry,
and its handshake completes long before flood entries push it out. What is not evictable
(established connections, UDP within its first 60 s) is never pushed out: a UDP scan that
fills the table is refused at the limit until drop_entry finds idle entries.

The director's own memory is then bounded by the limit: about `ENTRY_BYTES_ESTIMATE` per
entry (a Connection and its expiry-heap entry, measured ~470 B in CPython 3.11) plus the
process itself; the layout gives director hosts a memory cgroup sized from it.

Not for: the packet path (the forwarder asks `todrop` and `Director.make_room`), the table's
data structure (conntable.py). Pure: time and randomness are passed in.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Protocol

from testbed.director.conntable import (
    ESTABLISHED,
    PROTO_TCP,
    SYN_RECV,
    SYNACK,
    Connection,
)

DEFAULT_CONN_MAX = 1 << 20
"""Entries; the seed's 62,000 and the table experiment's 1,000,000 prefilled both fit."""
MAX_CONN_MAX = 1 << 24
AMEMTHRESH_FRACTION = 16
"""Default amemthresh: the defences' automatic modes switch on with 1/16 of the room left."""
DEFAULT_AM_DROPRATE = 10
"""am_droprate's default in ipvs-sysctl.rst."""
ENTRY_BYTES_ESTIMATE = 640
"""Memory per entry for sizing: ~470 B measured (CPython 3.11), plus fragmentation."""
BASE_BYTES_ESTIMATE = 128 << 20
"""The director process without entries (interpreter, rings, buffers), with margin."""
IDLE_BEFORE_DROP_S = 60.0
"""todrop_entry(): an entry refreshed less than 60 s ago is never dropped."""
DROP_ENTRY_MAX_PKTS = 8
EVICT_SCAN_BUCKETS = 8
DEFENSE_PERIOD_S = 1.0
"""DEFENSE_TIMER_PERIOD: the levels are updated, and drop_entry runs, once a second."""
MODES = (0, 1, 2, 3)
SYSCTLS = ("amemthresh", "am_droprate", "conn_max", "drop_entry", "drop_packet", "secure_tcp")
_HALF_OPEN = (SYN_RECV, SYNACK)


class TableFull(Exception):
    """A new entry does not fit under the table's limit (a synced one: see model.sync_in)."""


def memory_needed_bytes(conn_max: int) -> int:
    """What a director with a full table of ``conn_max`` entries is expected to use."""
    return BASE_BYTES_ESTIMATE + conn_max * ENTRY_BYTES_ESTIMATE


class Table(Protocol):
    """What the defences need of the connection table (conntable.ConnTable)."""

    size: int
    secure_tcp: bool

    def __len__(self) -> int: ...
    def chain(self, index: int) -> list[Connection]: ...
    def bucket_index(self, proto: int, caddr: int, cport: int) -> int: ...
    def remove(self, conn: Connection) -> None: ...


class Defense:
    """The limit, the sysctls, the defences' current state and what they dropped.

    ``drops`` counts by reason: ``table_full`` (a new connection refused at the limit),
    ``evicted`` (a half-open entry removed to make room at the limit), ``drop_packet`` (a
    new connection's packet dropped by drop_packet), ``drop_entry`` (entries removed by the
    once-a-second scan).
    """

    def __init__(
        self,
        conn_max: int = DEFAULT_CONN_MAX,
        *,
        amemthresh: int | None = None,
        drop_entry: int = 1,
        drop_packet: int = 0,
        secure_tcp: int = 0,
        am_droprate: int = DEFAULT_AM_DROPRATE,
        seed: int | None = None,
    ) -> None:
        self.conn_max = DEFAULT_CONN_MAX
        self.amemthresh = 0
        self.am_droprate = DEFAULT_AM_DROPRATE
        self.drop_entry = self.drop_packet = self.secure_tcp = 0
        self.dropentry = False  # drop_entry active now (atomic dropentry)
        self.drop_rate = 0  # drop_packet: drop 1 in drop_rate new-connection packets; 0 off
        self.drop_counter = 0
        self.secure_on = False  # the table is on tcp_states_dos (old_secure_tcp >= 2)
        self._todrop_counters = [0] * (DROP_ENTRY_MAX_PKTS + 1)
        self._rng = random.Random(seed)
        self.drops: Counter[str] = Counter()
        self.scans = 0
        self.set("conn_max", conn_max)
        self.set("amemthresh", amemthresh if amemthresh is not None else self._default_thresh())
        self.set("am_droprate", am_droprate)
        self.set("drop_entry", drop_entry)
        self.set("drop_packet", drop_packet)
        self.set("secure_tcp", secure_tcp)

    def _default_thresh(self) -> int:
        return max(1, self.conn_max // AMEMTHRESH_FRACTION)

    # -- the sysctls ----------------------------------------------------------------------
    def set(self, name: str, value: object) -> None:
        """Set one sysctl, checked first; raise ValueError naming the allowed range."""
        if name not in SYSCTLS:
            raise ValueError(f"unknown setting {name!r}; known: {', '.join(SYSCTLS)}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} takes an integer, got {value!r}")
        if name in ("drop_entry", "drop_packet", "secure_tcp"):
            if value not in MODES:
                raise ValueError(f"{name} must be 0, 1, 2 or 3, got {value}")
        elif name == "conn_max":
            if not 1 <= value <= MAX_CONN_MAX:
                raise ValueError(f"conn_max must be 1..{MAX_CONN_MAX} entries, got {value}")
        elif name == "amemthresh":
            if not 0 <= value <= MAX_CONN_MAX:
                raise ValueError(f"amemthresh must be 0..{MAX_CONN_MAX} entries, got {value}")
        elif not 1 <= value <= 1_000_000:
            raise ValueError(f"am_droprate must be 1..1000000, got {value}")
        setattr(self, name, value)

    def values(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in SYSCTLS}

    # -- the once-a-second update (update_defense_level) ---------------------------------
    def available(self, entries: int) -> int:
        return max(self.conn_max - entries, 0)

    def update(self, entries: int) -> bool:
        """Recompute the defences' state from the table's fill; return True when the TCP
        table must switch (secure_tcp turned on or off)."""
        avail = self.available(entries)
        thresh = self.amemthresh
        nomem = avail < thresh

        mode = self.drop_entry
        if mode == 1 and nomem:
            self.drop_entry = 2
        elif mode == 2 and not nomem:
            self.drop_entry = 1
        self.dropentry = mode == 3 or (mode in (1, 2) and nomem)

        mode = self.drop_packet
        if mode == 0:
            self.drop_rate = 0
        elif mode == 3:
            self.drop_rate = self.am_droprate
        elif nomem:
            self.drop_rate = self.drop_counter = thresh // (thresh - avail)
            self.drop_packet = 2
        else:
            self.drop_rate = 0
            self.drop_packet = 1

        mode = self.secure_tcp
        if mode == 1 and nomem:
            self.secure_tcp = 2
        elif mode == 2 and not nomem:
            self.secure_tcp = 1
        on = self.secure_tcp >= 2
        changed = on != self.secure_on
        self.secure_on = on
        return changed

    def tick(self, table: Table, now: float) -> None:
        """The defence timer: update the levels, switch the TCP table, run drop_entry."""
        if self.update(len(table)):
            table.secure_tcp = self.secure_on
        if self.dropentry:
            self.random_dropentry(table, now)

    # -- drop_packet (ip_vs_todrop) ------------------------------------------------------
    def todrop(self) -> bool:
        """Whether to drop this new-connection packet; call only when ``drop_rate``."""
        self.drop_counter -= 1
        if self.drop_counter > 0:
            return False
        self.drop_counter = self.drop_rate
        self.drops["drop_packet"] += 1
        return True

    # -- drop_entry (ip_vs_random_dropentry, todrop_entry) -------------------------------
    def todrop_entry(self, conn: Connection, now: float) -> bool:
        """An idle entry with few packets is dropped, the ones with n packets one in n."""
        if now - (conn.expires - conn.timeout) < IDLE_BEFORE_DROP_S:
            return False  # refreshed within 60 s: leave time for a real connection
        pkts = conn.in_pkts
        if not 1 <= pkts <= DROP_ENTRY_MAX_PKTS:
            return False
        self._todrop_counters[pkts] -= 1
        if self._todrop_counters[pkts] > 0:
            return False
        self._todrop_counters[pkts] = pkts
        return True

    def _droppable(self, conn: Connection, now: float) -> bool:
        if conn.n_control or conn.is_template:
            return False  # a template goes with the last connection it pins
        if conn.proto == PROTO_TCP:
            if conn.state in _HALF_OPEN:
                return True
            return conn.state == ESTABLISHED and self.todrop_entry(conn, now)
        return self.todrop_entry(conn, now)

    def random_dropentry(self, table: Table, now: float) -> int:
        """Scan 1/32 of the buckets, chosen at random; drop what `_droppable` says (and the
        template of a dropped connection once it pins nothing). Returns how many went."""
        self.scans += 1
        dropped = 0
        for _ in range(max(table.size >> 5, 1)):
            for conn in table.chain(self._rng.randrange(table.size)):
                if self._droppable(conn, now):
                    dropped += self._drop(table, conn)
        self.drops["drop_entry"] += dropped
        return dropped

    @staticmethod
    def _drop(table: Table, conn: Connection) -> int:
        control = conn.control
        table.remove(conn)
        if control is not None and not control.n_control:
            table.remove(control)
            return 2
        return 1

    # -- the limit -------------------------------------------------------------------------
    def make_room(self, table: Table, proto: int, caddr: int, cport: int, need: int) -> bool:
        """Whether ``need`` more entries fit; at the limit, with drop_entry on, evict the
        oldest half-open entries of the new connection's bucket first, then of the buckets
        after it (at most `EVICT_SCAN_BUCKETS`: drop_entry's scan leaves empty buckets)."""
        room = self.conn_max - len(table)
        if room >= need:
            return True
        if self.drop_entry:
            first = table.bucket_index(proto, caddr, cport)
            for step in range(min(EVICT_SCAN_BUCKETS, table.size)):
                for conn in table.chain((first + step) % table.size):
                    if (
                        conn.proto == PROTO_TCP
                        and conn.state in _HALF_OPEN
                        and not conn.n_control
                        and not conn.is_template
                    ):
                        room += self._drop(table, conn)
                        self.drops["evicted"] += 1
                        if room >= need:
                            return True
        self.drops["table_full"] += 1
        return False

    def status(self, entries: int) -> dict:
        """The sysctls, the state, the table's fill and the drops, for `director stats`."""
        return {
            **self.values(),
            "entries": entries,
            "available": self.available(entries),
            "dropentry_active": self.dropentry,
            "drop_rate": self.drop_rate,
            "secure_tcp_active": self.secure_on,
            "drops": dict(self.drops),
        }
