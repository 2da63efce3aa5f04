"""Connection synchronisation between directors, as IPVS's sync daemon does it.

For: keeping a backup director's connection table filled with the master's connections
(persistence templates too), so that after a VRRP failover the backup forwards established
and NAT'd connections to the real servers they already use instead of dropping them or
rescheduling. The pieces, each testable without root:

- the message codec, modelled on version 1 of IPVS's sync protocol (ip_vs_sync.c);
- `should_sync`, the kernel's rule for which packet of a connection triggers an update;
- `SyncSender` (master role): batches updates into messages and flushes them;
- `SyncReceiver` (backup role): decodes messages and applies them with `Director.sync_in`;
- `ConnectionSync`: both roles over one transport, as the daemon runs them (modern IPVS can
  run master and backup at once);
- `MulticastTransport`: the thin socket adapter, UDP multicast to 224.0.0.81:8848.

Trust: IPVS's sync protocol has no authentication of any kind, in the kernel as here: any
host that can put a UDP datagram on the sync segment can add connections to a backup's table
or change them. What the testbed does about it, beyond the kernel: it receives only on the
configured sync interface and, when the peer's address is given (``--sync-peer``), only from
that address (a spoofed source on the same segment still passes: keep the sync link to the
directors, as the LVS-HOWTO advises); it caps every received timeout at what this director
would give the entry itself (a connection its state's timeout, a template its service's
persistence timeout); new entries count against the table's limit (defense.py); and it
answers a resync request at most once a second, spread over time (``RESYNC_RATE_PER_S``
entries a second, a slice per loop turn) so a request, honest or not, cannot stall
forwarding. A datagram's work is bounded too: at most ``MAX_MESSAGES_PER_WAKEUP`` messages
are read per loop turn.

Not for: packets of the data path, the connection table itself (conntable.py, model.py), VRRP
(testbed/vrrp decides who is master), the daemon loop (daemon.py), IPv6, IPVS's TCP sequence
options (no application helpers here) or persistence engines (sip): entries carrying those
are decoded and skipped.

The message (version 1), all fields big-endian; the first byte is 0 so that version 0
receivers drop it::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   Reserved 0  |    Sync ID    |      Size (whole message)     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Connections  |  Version = 1  |   Spare (0, or 1: resync req.) |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |        Connection entry 1 (36 bytes, see below)              |
    ~                             ...                               ~
    |        Connection entry n, each starting 32-bit aligned       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

One connection entry (struct ip_vs_sync_v4, type 0 = IPv4)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |    Type 0     |   Protocol    | Ver 0 |  Size of this entry   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 Flags (IP_VS_CONN_F_*, as conntable.F_*)      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |            State              |         Client port           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Virtual port          |       Destination port        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Firewall mark (0: none)                      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Timeout (s) of the current state            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Client address                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Virtual address                              |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Destination (real server) address            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Optional parameters: type (1 byte), length (1 byte), data    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Our one extension: a message with no connections and Spare = 1 asks the peers to send their
whole table (as conntrackd's resync request does). A director sends it when its services
change, so a master that crashed and came back learns even the idle connections (an idle
connection is otherwise synced again only every 50 client packets) before it preempts.
A kernel receiver drops such a message as not version 1.

A persistence template is an entry with the TEMPLATE flag, client port 0 and the client
address already masked (for a fwmark service: protocol 0, virtual address = the mark). The
sender writes no optional parameters, so every entry is 36 bytes; a 1500-byte MTU carries
(1500 - 20 IP - 8 UDP - 8) // 36 = 40 entries a message (IPVS's master also sizes its
messages for a 1500-byte MTU). The decoder reads what the kernel reads: it checks every
length against the datagram, never raises, and returns the connections or the reason it
refused the message.

Which packets trigger an update (`should_sync`) is the kernel's default rule, from
ip_vs_sync_conn_needed() with the defaults of Documentation/networking/ipvs-sysctl.rst
(sync_threshold = "3 50", sync_refresh_period = 0, sync_persist_mode = 0). ip_vs_in() calls
it after every packet from a client, with the connection's count of such packets:

- a TCP connection is synced only in ESTABLISHED, FIN_WAIT, CLOSE_WAIT, TIME_WAIT or CLOSE;
  entering FIN_WAIT, CLOSE_WAIT, TIME_WAIT or CLOSE (compared with the state last synced,
  IPVS's `old_state`) syncs it at once;
- otherwise (entering ESTABLISHED included, and UDP) it is synced when its packet count
  modulo 50 is 3: the 3rd packet, the 53rd, the 103rd...;
- a connection's persistence template is checked after each of those packets too and, with
  these defaults, synced every time (the reason sync_refresh_period was added in 2012).

So a new connection is not sent on its first packet: a connection that never reaches its
3rd packet (or a syncable TCP state) never reaches the backup, as with IPVS. Replies from
real servers (NAT) never trigger a sync; a state they change is sent with the client's
next packet.
"""

from __future__ import annotations

import fcntl
import socket
import struct
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from testbed.director.conntable import (
    CLOSE,
    CLOSE_WAIT,
    ESTABLISHED,
    F_DROUTE,
    F_FWD_MASK,
    F_INACTIVE,
    F_MASQ,
    F_NOOUTPUT,
    F_TEMPLATE,
    F_TUNNEL,
    FIN_WAIT,
    PROTO_IP,
    PROTO_TCP,
    PROTO_UDP,
    TCP_STATE_NAMES,
    TIME_WAIT,
    Connection,
)
from testbed.director.model import Director, int_to_ip

# -- the wire ----------------------------------------------------------------------------------
SYNC_GROUP = "224.0.0.81"
"""IP_VS_SYNC_GROUP."""
SYNC_PORT = 8848
"""IP_VS_SYNC_PORT."""
SYNC_TTL = 1
"""The kernel's default mcast_ttl: sync stays on the directors' segment."""
SYNC_PROTO_VERSION = 1
MAX_SYNC_ID = 255
HEADER = struct.Struct("!BBHBBH")  # reserved syncid size nr_conns version spare
ENTRY_V4 = struct.Struct("!BBHIHHHHIIIII")
"""type, protocol, ver_size, flags, state, cport, vport, dport, fwmark, timeout, caddr, vaddr,
daddr: struct ip_vs_sync_v4, 36 bytes."""
ENTRY_V6_BYTES = 72  # struct ip_vs_sync_v6: the same fields with 16-byte addresses
STYPE_F_INET6 = 0x01
SVER_SHIFT, SVER_MASK = 12, 0x0FFF
OPT_SEQ_DATA, OPT_PE_DATA, OPT_PE_NAME = 1, 2, 3
OPT_F_PARAM = 0x40
"""An optional parameter with this bit set may be ignored by a receiver that lacks it."""
SEQ_OPTION_BYTES = 24  # two struct ip_vs_seq: init_seq, delta, previous_delta
MAX_CONNS_PER_MESSAGE = 255  # nr_conns is one byte
IP_UDP_HEADER_BYTES = 20 + 8
SENDER_MTU_BYTES = 1500
"""start_sync_thread(): the master sizes messages for 1500 bytes whatever the NIC's MTU."""
DEFAULT_MAX_MESSAGE_BYTES = SENDER_MTU_BYTES - IP_UDP_HEADER_BYTES
RECV_BUFFER_BYTES = 65535

_FWD_CODES = frozenset((F_MASQ, F_TUNNEL, F_DROUTE))
_RECV_FLAGS_MASK = F_FWD_MASK | F_NOOUTPUT | F_INACTIVE | F_TEMPLATE
"""The flags a backup takes from an entry (IPVS's IP_VS_CONN_F_BACKUP_MASK, of ours)."""
_U32 = 0xFFFFFFFF

# -- the rule ----------------------------------------------------------------------------------
DEFAULT_SYNC_THRESHOLD = 3
DEFAULT_SYNC_PERIOD = 50
"""net.ipv4.vs.sync_threshold = "3 50": threshold and period."""
DEFAULT_FLUSH_INTERVAL_S = 1.0
"""A message that is not full leaves at most this long after its first entry (IPVS's master
thread looks every second and sends a buffer older than two)."""
TEMPLATE_TIMEOUT_S = 180
"""ip_vs_proc_conn(): the timeout of a template received without one (3 minutes)."""
SYNC_TCP_STATES = frozenset((ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT, TIME_WAIT))
"""The TCP states ip_vs_sync_conn_needed() syncs in."""


def check_sync_id(sync_id: int) -> None:
    """Raise ValueError unless `sync_id` is 0..255 (one byte of the header)."""
    if isinstance(sync_id, bool) or not isinstance(sync_id, int) or not 0 <= sync_id <= MAX_SYNC_ID:
        raise ValueError(f"sync ID must be an integer 0..{MAX_SYNC_ID}, got {sync_id!r}")


def check_threshold(threshold: int, period: int) -> None:
    """Raise ValueError for values net.ipv4.vs.sync_threshold refuses."""
    if threshold < 0 or period < 0 or (period and threshold >= period):
        raise ValueError(
            f"sync threshold must be 0..period-1 and period >= 0, got {threshold} {period}"
        )


def should_sync(
    conn: Connection,
    pkts: int,
    old_state: int,
    new_state: int,
    *,
    threshold: int = DEFAULT_SYNC_THRESHOLD,
    period: int = DEFAULT_SYNC_PERIOD,
) -> bool:
    """Whether this packet of `conn` sends it to the backup (ip_vs_sync_conn_needed() with
    sync_refresh_period = 0).

    `pkts` counts the client's packets on the connection, this one included (for a
    template: packets of the connections it controls); `old_state` is the state last synced
    (IPVS's old_state; NONE for a new connection) and `new_state` the state now.
    """
    if conn.flags & F_TEMPLATE:
        if period:
            return True  # the period applies to connections only
    elif conn.proto == PROTO_TCP:
        if new_state not in SYNC_TCP_STATES:
            return False
        if new_state != old_state and new_state != ESTABLISHED:
            return True  # about to close: tell the backup now, so its timer follows
    if period:
        return pkts % period == threshold
    return pkts == threshold


# -- the codec ---------------------------------------------------------------------------------
SyncRecord = dict[str, int]
"""An entry as `Director.sync_in` takes it: proto, caddr, cport, vaddr, vport, daddr, dport,
state, flags, timeout_s, fwmark (what `Connection.to_record` gives, less expires_in_s)."""


SPARE_RESYNC_REQUEST = 0x0001
RESYNC_MIN_INTERVAL_S = 1.0  # at most one resync request, and one full answer, a second
RESYNC_RATE_PER_S = 20_000
"""Entries a resync answer sends per second at most (a 1,000,000-entry table: 50 s)."""
RESYNC_SLICE_ENTRIES = 400
"""Entries queued per loop turn at most (about ten messages), then the loop forwards again."""
RESYNC_SLICE_BUCKETS = 4096
"""Buckets walked per loop turn at most (an empty 2^20-bucket table takes 256 turns)."""
MAX_MESSAGES_PER_WAKEUP = 8


@dataclass(frozen=True)
class SyncMessage:
    """A decoded message: its sync ID, the entries to apply, and how many entries were
    skipped because this director cannot use them (IPv6, a persistence engine, an unknown
    mandatory parameter, protocol, state or forwarding method); or a resync request."""

    sync_id: int
    records: list[SyncRecord]
    skipped: int = 0
    resync_request: bool = False


def encode_resync_request(sync_id: int) -> bytes:
    """A message asking the peers for their whole table (our extension, see above)."""
    check_sync_id(sync_id)
    return HEADER.pack(0, sync_id, HEADER.size, 0, SYNC_PROTO_VERSION, SPARE_RESYNC_REQUEST)


def encode_entry(record: Mapping[str, int | float]) -> bytes:
    """One IPv4 entry, without optional parameters (36 bytes, a multiple of 4)."""
    timeout_s = min(max(int(record["timeout_s"]), 0), _U32)
    return ENTRY_V4.pack(
        0,
        record["proto"],
        ENTRY_V4.size,
        record["flags"] & _U32,
        record["state"],
        record["cport"],
        record["vport"],
        record["dport"],
        record.get("fwmark", 0),
        timeout_s,
        record["caddr"],
        record["vaddr"],
        record["daddr"],
    )


def encode_message(sync_id: int, entries: Sequence[bytes]) -> bytes:
    """A version 1 message holding `entries` (from `encode_entry`)."""
    check_sync_id(sync_id)
    body = b"".join(entries)
    size = HEADER.size + len(body)
    if len(entries) > MAX_CONNS_PER_MESSAGE or size > 0xFFFF:
        raise ValueError(f"{len(entries)} entries ({size} bytes) do not fit one message")
    return HEADER.pack(0, sync_id, size, len(entries), SYNC_PROTO_VERSION, 0) + body


def decode_message(data: bytes) -> SyncMessage | str:
    """The message in `data` (one datagram), or why it was refused, as a short reason.

    The checks are ip_vs_process_message()'s: the size field must equal the datagram's
    length, the header must say version 1, and each entry must fit inside the datagram and
    its own size. Unlike the kernel, which applies entries as it goes, a structural error
    anywhere refuses the whole message, so nothing from a damaged datagram is applied.
    """
    n = len(data)
    if n < HEADER.size:
        return "short-header"
    reserved, sync_id, size, nr_conns, version, spare = HEADER.unpack_from(data, 0)
    if size != n:
        return "size-mismatch"
    if reserved or version != SYNC_PROTO_VERSION:
        return "not-version-1"
    if spare:
        if spare == SPARE_RESYNC_REQUEST and nr_conns == 0 and n == HEADER.size:
            return SyncMessage(sync_id, [], 0, resync_request=True)
        return "not-version-1"
    records: list[SyncRecord] = []
    skipped = 0
    at = HEADER.size
    for _ in range(nr_conns):
        if at + ENTRY_V4.size > n:
            return "truncated-entry"
        (
            stype,
            proto,
            ver_size,
            flags,
            state,
            cport,
            vport,
            dport,
            fwmark,
            timeout_s,
            caddr,
            vaddr,
            daddr,
        ) = ENTRY_V4.unpack_from(data, at)
        entry_bytes = ver_size & SVER_MASK
        end = at + entry_bytes
        if end > n:
            return "entry-overruns-message"
        if ver_size >> SVER_SHIFT:
            return "unknown-entry-version"
        if stype & STYPE_F_INET6:
            fixed_bytes = ENTRY_V6_BYTES
        elif stype == 0:
            fixed_bytes = ENTRY_V4.size
        else:
            return "unknown-entry-type"
        if entry_bytes < fixed_bytes:
            return "entry-too-short"
        usable = _read_options(data, at + fixed_bytes, end)
        if usable.__class__ is str:
            return usable
        if usable and not stype & STYPE_F_INET6 and _applicable(proto, flags, state):
            records.append(
                {
                    "proto": proto,
                    "caddr": caddr,
                    "cport": cport,
                    "vaddr": vaddr,
                    "vport": vport,
                    "daddr": daddr,
                    "dport": dport,
                    "state": state,
                    "flags": flags & _RECV_FLAGS_MASK,
                    "timeout_s": timeout_s,
                    "fwmark": fwmark,
                }
            )
        else:
            skipped += 1
        at += (entry_bytes + 3) & ~3
    return SyncMessage(sync_id, records, skipped)


def _read_options(data: bytes, at: int, end: int) -> bool | str:
    """Walk an entry's optional parameters (ip_vs_proc_sync_conn): True if the entry is
    usable, False if it must be skipped, a reason if the message is malformed."""
    seen_seq = False
    while at < end:
        if at + 2 > end:
            return "bad-option"
        ptype, plen = data[at], data[at + 1]
        at += 2
        if not plen or at + plen > end:
            return "bad-option"
        kind = ptype & ~OPT_F_PARAM
        if kind == OPT_SEQ_DATA:
            if plen != SEQ_OPTION_BYTES or seen_seq:
                return "bad-option"
            seen_seq = True  # sequence offsets of application helpers: none here to adjust
        elif kind in (OPT_PE_DATA, OPT_PE_NAME) or not ptype & OPT_F_PARAM:
            return False  # a persistence engine, or a parameter we must understand but don't
        at += plen
    return True


def _applicable(proto: int, flags: int, state: int) -> bool:
    # ip_vs_proc_sync_conn(): a known protocol and a state it has; templates any state.
    if flags & F_FWD_MASK not in _FWD_CODES:
        return False  # localnode or bypass: not modelled
    if flags & F_TEMPLATE:
        return proto in (PROTO_IP, PROTO_TCP, PROTO_UDP)
    if proto == PROTO_TCP:
        return state < len(TCP_STATE_NAMES)
    return proto == PROTO_UDP and state == 0


# -- the master role ---------------------------------------------------------------------------
class SyncSender:
    """Collects connection updates into messages and hands them to `send` (a transport).

    `conn_in` is the forwarder's hook; `queue` adds one connection unconditionally. A
    message leaves as soon as no further entry fits (`max_message_bytes`, at most 255
    entries), otherwise by `tick` once its first entry is `flush_interval_s` old. Entries
    are encoded when queued, so a message carries each connection as it was then, as the
    kernel's sync buffer does. A message `send` refuses (OSError) is counted and dropped.
    """

    def __init__(
        self,
        send: Callable[[bytes], object],
        sync_id: int = 0,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        threshold: int = DEFAULT_SYNC_THRESHOLD,
        period: int = DEFAULT_SYNC_PERIOD,
    ) -> None:
        check_sync_id(sync_id)
        check_threshold(threshold, period)
        if max_message_bytes < HEADER.size + ENTRY_V4.size:
            raise ValueError(
                f"a sync message needs at least {HEADER.size + ENTRY_V4.size} "
                f"bytes, got {max_message_bytes}"
            )
        if not flush_interval_s > 0:
            raise ValueError(f"flush interval must be > 0 s, got {flush_interval_s}")
        self._send = send
        self.sync_id = sync_id
        self.max_entries = min(
            MAX_CONNS_PER_MESSAGE, (max_message_bytes - HEADER.size) // ENTRY_V4.size
        )
        self.flush_interval_s = flush_interval_s
        self.threshold = threshold
        self.period = period
        self._entries: list[bytes] = []
        self._opened_s = 0.0
        self.conns_queued = 0
        self.messages_sent = 0
        self.bytes_sent = 0
        self.send_errors = 0

    def conn_in(self, conn: Connection, now: float) -> None:
        """After each client packet on `conn` (ip_vs_in -> ip_vs_sync_conn): count it,
        sync the connection if the rule says so, then its template."""
        pkts = conn.in_pkts + 1
        conn.in_pkts = pkts
        state = conn.state
        if should_sync(
            conn, pkts, conn.old_state, state, threshold=self.threshold, period=self.period
        ):
            conn.old_state = state
            self.queue(conn, now)
        template = conn.control
        if template is not None:
            pkts = template.in_pkts + 1
            template.in_pkts = pkts
            if should_sync(
                template,
                pkts,
                template.old_state,
                template.state,
                threshold=self.threshold,
                period=self.period,
            ):
                self.queue(template, now)

    def queue(self, conn: Connection, now: float) -> None:
        """Add `conn` as it is now to the open message; send the message once full."""
        if not self._entries:
            self._opened_s = now
        self._entries.append(encode_entry(conn.to_record(now)))
        self.conns_queued += 1
        if len(self._entries) >= self.max_entries:
            self.flush()

    def deadline_s(self) -> float | None:
        """When `tick` will send the open message; None when there is none."""
        return self._opened_s + self.flush_interval_s if self._entries else None

    def tick(self, now: float) -> None:
        """Send the open message if its first entry has waited `flush_interval_s`."""
        if self._entries and now >= self._opened_s + self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Send the open message now, if it holds anything."""
        if not self._entries:
            return
        data = encode_message(self.sync_id, self._entries)
        self._entries = []
        try:
            self._send(data)
        except OSError:
            self.send_errors += 1
            return
        self.messages_sent += 1
        self.bytes_sent += len(data)

    def counters(self) -> dict[str, int]:
        return {
            "conns_queued": self.conns_queued,
            "conns_pending": len(self._entries),
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "send_errors": self.send_errors,
        }


# -- the backup role ---------------------------------------------------------------------------
class SyncReceiver:
    """Applies received messages to a Director.

    With sync ID 0 it takes messages of every sync ID, otherwise only its own, as the kernel's
    backup does (ip_vs_process_message). Each entry goes through `Director.sync_in`; an
    applied connection gets IPVS's backup bookkeeping (its packet count set to the threshold,
    its state taken as synced), so after a failover it is synced again on state changes and
    every `period` packets, not at once.
    """

    def __init__(
        self, director: Director, sync_id: int = 0, *, threshold: int = DEFAULT_SYNC_THRESHOLD
    ) -> None:
        check_sync_id(sync_id)
        self.director = director
        self.sync_id = sync_id
        self.threshold = threshold
        self.messages = 0
        self.ignored_sync_id = 0
        self.malformed: Counter[str] = Counter()
        self.conns_applied = 0
        self.conns_skipped = 0
        self.conns_no_service = 0
        self.apply_errors: Counter[str] = Counter()
        self.resync_requests = 0
        self.on_resync_request: Callable[[float], None] | None = None

    def receive(self, data: bytes, now: float) -> int:
        """Decode and apply one datagram; returns how many connections were applied."""
        self.messages += 1
        msg = decode_message(data)
        if msg.__class__ is str:
            self.malformed[msg] += 1
            return 0
        if self.sync_id and msg.sync_id != self.sync_id:
            self.ignored_sync_id += 1
            return 0
        if msg.resync_request:
            self.resync_requests += 1
            if self.on_resync_request is not None:
                self.on_resync_request(now)
            return 0
        self.conns_skipped += msg.skipped
        applied = 0
        for record in msg.records:
            if not record["timeout_s"]:
                record["timeout_s"] = self._default_timeout_s(record)
            try:
                conn = self.director.sync_in(record, now)
            except Exception as exc:  # noqa: BLE001 - no datagram may stop the daemon
                self.apply_errors[type(exc).__name__] += 1
                continue
            if conn is None:
                self.conns_no_service += 1
                continue
            conn.in_pkts = self.threshold
            conn.old_state = conn.state
            applied += 1
        self.conns_applied += applied
        return applied

    def _default_timeout_s(self, record: SyncRecord) -> int:
        # ip_vs_proc_conn() for an entry without a timeout: the state's, else 3 minutes.
        conns = self.director.conns
        if record["flags"] & F_TEMPLATE:
            return TEMPLATE_TIMEOUT_S
        if record["proto"] == PROTO_TCP:
            return conns.tcp_timeouts_s[record["state"]]
        return conns.udp_timeout_s

    def counters(self) -> dict[str, int | dict[str, int]]:
        return {
            "messages": self.messages,
            "ignored_sync_id": self.ignored_sync_id,
            "malformed": dict(self.malformed),
            "conns_applied": self.conns_applied,
            "conns_skipped": self.conns_skipped,
            "conns_no_service": self.conns_no_service,
            "apply_errors": dict(self.apply_errors),
            "resync_requests": self.resync_requests,
        }


# -- both roles over one transport ---------------------------------------------------------------
class SyncTransport(Protocol):
    """What `ConnectionSync` needs of a transport (MulticastTransport, or a test's fake)."""

    max_message_bytes: int

    def send(self, data: bytes) -> None: ...
    def receive(self, max_messages: int) -> list[bytes]: ...
    def fileno(self) -> int: ...
    def counters(self) -> dict[str, int]: ...
    def close(self) -> None: ...


class ConnectionSync:
    """Master and backup at once over one transport, for the daemon's loop: give
    `sender.conn_in` to the forwarder, poll `fileno()` and call `on_readable` when it is
    readable, and `tick` by `deadline_s()`. `request_resync` (after a change of services)
    asks the peers for their whole table; a peer's request is answered with ours, each at
    most once per RESYNC_MIN_INTERVAL_S. An answer walks the table bucket by bucket, a slice
    per `tick` at most RESYNC_RATE_PER_S entries a second; a request that arrives during an
    answer is answered once more after it (not once per request)."""

    def __init__(
        self,
        director: Director,
        transport: SyncTransport,
        sync_id: int = 0,
        *,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
    ) -> None:
        self.director = director
        self.transport = transport
        self.sender = SyncSender(
            transport.send,
            sync_id,
            max_message_bytes=transport.max_message_bytes,
            flush_interval_s=flush_interval_s,
        )
        self.receiver = SyncReceiver(director, sync_id)
        self.receiver.on_resync_request = self._answer_later
        self._request_due: float | None = None
        self._answer_due: float | None = None
        self._last_request = self._last_answer = -1e18
        self._cursor: int | None = None  # next bucket of the answer in progress
        self._next_slice = 0.0
        self._answer_again = False
        self.resyncs_requested = 0
        self.resyncs_answered = 0
        self.resync_requests_coalesced = 0

    def fileno(self) -> int:
        return self.transport.fileno()

    def on_readable(self, now: float) -> None:
        for data in self.transport.receive(MAX_MESSAGES_PER_WAKEUP):
            self.receiver.receive(data, now)

    def request_resync(self, now: float) -> None:
        if self._request_due is None:  # a pending request covers this change too
            self._request_due = max(now, self._last_request + RESYNC_MIN_INTERVAL_S)

    def _answer_later(self, now: float) -> None:
        if self._cursor is not None:
            self._answer_again = True  # after the one in progress
            self.resync_requests_coalesced += 1
        elif self._answer_due is None:
            self._answer_due = max(now, self._last_answer + RESYNC_MIN_INTERVAL_S)
        else:
            self.resync_requests_coalesced += 1

    def deadline_s(self) -> float | None:
        slice_due = self._next_slice if self._cursor is not None else None
        due = [
            t
            for t in (self.sender.deadline_s(), self._request_due, self._answer_due, slice_due)
            if t is not None
        ]
        return min(due) if due else None

    def tick(self, now: float) -> None:
        if self._request_due is not None and now >= self._request_due:
            self._request_due, self._last_request = None, now
            try:
                self.transport.send(encode_resync_request(self.sender.sync_id))
                self.resyncs_requested += 1
            except OSError:
                self.sender.send_errors += 1
        if self._answer_due is not None and now >= self._answer_due:
            self._answer_due, self._cursor, self._next_slice = None, 0, now
        if self._cursor is not None and now >= self._next_slice:
            self._answer_slice(now)
        self.sender.tick(now)

    def _answer_slice(self, now: float) -> None:
        """Queue the next slice of our table for the peer; finish the answer at its end."""
        table = self.director.conns
        queued = walked = 0
        cursor = self._cursor
        # The table may be resized while an answer runs: the cursor then ends early or
        # late, which only means some entries are sent twice or at their next sync.
        while (
            cursor < table.size and queued < RESYNC_SLICE_ENTRIES and walked < RESYNC_SLICE_BUCKETS
        ):
            for conn in table.chain(cursor):
                self.sender.queue(conn, now)
                queued += 1
            cursor += 1
            walked += 1
        self._next_slice = now + max(queued, 1) / RESYNC_RATE_PER_S
        if cursor < table.size:
            self._cursor = cursor
            return
        self.sender.flush()
        self._cursor, self._last_answer = None, now
        self.resyncs_answered += 1
        if self._answer_again:
            self._answer_again = False
            self._answer_due = now + RESYNC_MIN_INTERVAL_S

    def counters(self) -> dict:
        return {
            "sync_id": self.sender.sync_id,
            "sent": self.sender.counters(),
            "received": self.receiver.counters(),
            "resyncs_requested": self.resyncs_requested,
            "resyncs_answered": self.resyncs_answered,
            "resync_requests_coalesced": self.resync_requests_coalesced,
            "resync_in_progress": self._cursor is not None,
            "transport": self.transport.counters(),
        }

    def close(self) -> None:
        """Send what is pending (the peer may be about to take over), then close."""
        self.sender.flush()
        self.transport.close()


# -- the socket adapter --------------------------------------------------------------------------
SIOCGIFMTU = 0x8921
_IFREQ = struct.Struct("16si20x")  # struct ifreq: name, then ifr_mtu in the 24-byte union
_MREQN = struct.Struct("4s4si")  # struct ip_mreqn: multiaddr, address, ifindex


class SyncTransportError(RuntimeError):
    """The sync sockets could not be set up; the message names the interface and cause."""


def interface_mtu(name: str) -> int:
    """The interface's MTU in this network namespace (SIOCGIFMTU; no root needed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        reply = fcntl.ioctl(sock.fileno(), SIOCGIFMTU, _IFREQ.pack(name.encode(), 0))
    return _IFREQ.unpack(reply)[1]


def max_message_bytes(mtu_bytes: int) -> int:
    """The largest message the master sends on a link of this MTU: the kernel's 1500-byte
    sizing, smaller only when the link is (so a message is never fragmented)."""
    size = min(mtu_bytes, SENDER_MTU_BYTES) - IP_UDP_HEADER_BYTES
    if size < HEADER.size + ENTRY_V4.size:
        raise ValueError(f"an MTU of {mtu_bytes} bytes cannot carry a sync message")
    return size


class MulticastTransport:
    """UDP multicast on one interface, set up as make_send_sock()/make_receive_sock() do:
    sending from the interface's address (IP_MULTICAST_IF, TTL 1, no loopback) to
    224.0.0.81:8848; receiving on a socket bound to the group and port, tied to the
    interface (SO_BINDTODEVICE) and joined there (IP_ADD_MEMBERSHIP). Datagrams from our own
    address are ignored, and with ``peer`` every datagram not from that address. Both
    sockets are non-blocking: a send that would block fails and the sender counts it, so the
    forwarding loop never waits for sync. Needs root.
    """

    def __init__(
        self,
        iface: str,
        local_ip: int,
        *,
        group: str = SYNC_GROUP,
        port: int = SYNC_PORT,
        ttl: int = SYNC_TTL,
        peer: str | None = None,
    ) -> None:
        self.iface = iface
        self._local = int_to_ip(local_ip)
        self._peer = peer
        self._tx: socket.socket | None = None
        self._rx: socket.socket | None = None
        self.ignored_own = 0
        self.ignored_not_peer = 0
        self.receive_errors = 0
        try:
            ifindex = socket.if_nametoindex(iface)
            self.max_message_bytes = max_message_bytes(interface_mtu(iface))
            self._tx = tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tx.setsockopt(
                socket.IPPROTO_IP,
                socket.IP_MULTICAST_IF,
                _MREQN.pack(bytes(4), socket.inet_aton(self._local), ifindex),
            )
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            tx.bind((self._local, 0))
            tx.connect((group, port))
            tx.setblocking(False)
            self._rx = rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
            rx.bind((group, port))
            rx.setsockopt(
                socket.IPPROTO_IP,
                socket.IP_ADD_MEMBERSHIP,
                _MREQN.pack(socket.inet_aton(group), bytes(4), ifindex),
            )
            rx.setblocking(False)
        except (OSError, ValueError) as exc:
            self.close()
            raise SyncTransportError(
                f"connection sync on {iface!r} ({self._local}): {exc}"
            ) from exc

    def fileno(self) -> int:
        return self._rx.fileno()

    def send(self, data: bytes) -> None:
        self._tx.send(data)

    def receive(self, max_messages: int = MAX_MESSAGES_PER_WAKEUP) -> list[bytes]:
        """The datagrams waiting (at most `max_messages`), without our own and, with a peer
        set, only the peer's."""
        out = []
        for _ in range(max_messages):
            try:
                data, (source, _port) = self._rx.recvfrom(RECV_BUFFER_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.receive_errors += 1
                break
            if source == self._local:
                self.ignored_own += 1
                continue
            if self._peer is not None and source != self._peer:
                self.ignored_not_peer += 1
                continue
            out.append(data)
        return out

    def counters(self) -> dict[str, int]:
        return {
            "ignored_own": self.ignored_own,
            "ignored_not_peer": self.ignored_not_peer,
            "receive_errors": self.receive_errors,
        }

    def close(self) -> None:
        for sock in (self._tx, self._rx):
            if sock is not None:
                sock.close()
        self._tx = self._rx = None
