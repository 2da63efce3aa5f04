"""Connection sync (sync.py): the message codec against bytes built here with struct.pack,
bounds-checked decoding (truncated, mutated and random datagrams never raise), sync IDs,
batching and the flush interval on a fake clock, the kernel's should_sync rule, and end to
end: a master forwarder syncs through a fake transport to a backup whose forwarder then
carries the master's connections on exactly as the master would have.
"""

import random
import select
import socket
import struct
import time

import pytest
from typer.testing import CliRunner

from testbed.cli.main import app
from testbed.director.conntable import (
    CLOSE,
    CLOSE_WAIT,
    ESTABLISHED,
    F_DROUTE,
    F_INACTIVE,
    F_MASQ,
    F_NOOUTPUT,
    F_SYNC,
    F_TEMPLATE,
    F_TUNNEL,
    FIN_WAIT,
    LAST_ACK,
    NONE,
    PROTO_IP,
    PROTO_TCP,
    PROTO_UDP,
    SYN_RECV,
    TIME_WAIT,
    Connection,
)
from testbed.director.daemon import DaemonConfig
from testbed.director.model import Director
from testbed.director.sync import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ConnectionSync,
    MulticastTransport,
    SyncMessage,
    SyncReceiver,
    SyncSender,
    SyncTransportError,
    decode_message,
    encode_entry,
    encode_message,
    encode_resync_request,
    interface_mtu,
    max_message_bytes,
    should_sync,
)
from tests.unit import fakes
from tests.unit.fakes import ACK, FIN, PSH, SYN, FakePort, Lab, accounted, ip, mac, route

HDR = "!BBHBBH"  # reserved, sync ID, size, connections, version, spare
ENTRY = "!BBHIHHHHIIIII"  # type, protocol, ver/size, flags, state, ports, fwmark, timeout, addrs

# --- the NAT layout with both directors ------------------------------------------------------
VIP, CIP, CIP2 = "10.0.1.100", "10.0.1.11", "10.0.1.12"
CLIENT_MACS = {CIP: "02:00:00:00:01:0b", CIP2: "02:00:00:00:01:0c"}
RS = {"192.168.0.11": "02:00:00:00:02:0b", "192.168.0.12": "02:00:00:00:02:0c"}
DIRECTORS = {  # name: (outer MAC, outer IP, inner MAC, inner IP)
    "d1": ("02:00:00:00:01:02", "10.0.1.2", "02:00:00:00:02:02", "192.168.0.2"),
    "d2": ("02:00:00:00:01:03", "10.0.1.3", "02:00:00:00:02:03", "192.168.0.3"),
}
RULES = (
    "-A -t 10.0.1.100:80 -s rr\n"
    "-a -t 10.0.1.100:80 -r 192.168.0.11:8080 -m -w 1\n"
    "-a -t 10.0.1.100:80 -r 192.168.0.12:8080 -m -w 1\n"
    "-A -u 10.0.1.100:7 -s rr\n"
    "-a -u 10.0.1.100:7 -r 192.168.0.11:7007 -m -w 1\n"
    "-a -u 10.0.1.100:7 -r 192.168.0.12:7007 -m -w 1\n"
    "-A -t 10.0.1.100:443 -s rr -p 300\n"
    "-a -t 10.0.1.100:443 -r 192.168.0.11:443 -m -w 1\n"
    "-a -t 10.0.1.100:443 -r 192.168.0.12:443 -m -w 1\n"
)


@pytest.fixture(autouse=True)
def _every_frame_accounted():
    fakes.LABS.clear()
    yield
    for lab in fakes.LABS:
        assert accounted(lab.fwd), lab.fwd.counters()


def director_lab(name: str) -> Lab:
    out_mac, out_ip, in_mac, in_ip = DIRECTORS[name]
    lab = Lab(
        [FakePort(f"{name}-eth0", out_mac, out_ip), FakePort(f"{name}-eth1", in_mac, in_ip)],
        [route("10.0.1.0/24", f"{name}-eth0"), route("192.168.0.0/24", f"{name}-eth1")],
        RULES,
    )
    for addr, m in (RS | CLIENT_MACS).items():
        lab.learn(addr, m)
    return lab


def client_tcp(
    d: str, cport: int, bits: int, *, src: str = CIP, vport: int = 80, payload: bytes = b""
) -> bytearray:
    return fakes.tcp_frame(
        src,
        VIP,
        cport,
        vport,
        bits,
        payload=payload,
        eth_src=CLIENT_MACS[src],
        eth_dst=DIRECTORS[d][0],
    )


def server_tcp(
    d: str, rip: str, rport: int, cport: int, bits: int, *, dst: str = CIP, payload: bytes = b""
) -> bytearray:
    return fakes.tcp_frame(
        rip, dst, rport, cport, bits, payload=payload, eth_src=RS[rip], eth_dst=DIRECTORS[d][2]
    )


def client_udp(d: str, cport: int, payload: bytes = b"ping") -> bytearray:
    return fakes.udp_frame(
        CIP, VIP, cport, 7, payload=payload, eth_src=CLIENT_MACS[CIP], eth_dst=DIRECTORS[d][0]
    )


def server_udp(d: str, rip: str, cport: int, payload: bytes = b"pong") -> bytearray:
    return fakes.udp_frame(
        rip, CIP, 7007, cport, payload=payload, eth_src=RS[rip], eth_dst=DIRECTORS[d][2]
    )


def the_frame(sent: dict[str, list[bytes]]) -> tuple[str, bytes]:
    """(port role "eth0"/"eth1", frame) of the one frame a lab sent."""
    assert len(sent) == 1 and len(next(iter(sent.values()))) == 1, sent
    port, frames = next(iter(sent.items()))
    return port.split("-")[1], frames[0]


def same_forwarding(master_out: dict, backup_out: dict) -> None:
    """The backup sent what the master sent: same port role, next hop and packet; only the
    source MAC (each director's own) differs."""
    (m_port, m_frame), (b_port, b_frame) = the_frame(master_out), the_frame(backup_out)
    assert m_port == b_port
    assert m_frame[:6] == b_frame[:6]
    assert m_frame[12:] == b_frame[12:]
    fakes.assert_valid_ipv4_frame(b_frame)


class Wire:
    """A fake transport between directors: what one sends, the others may receive."""

    max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.inbox: list[bytes] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def receive(self, max_messages: int = 64) -> list[bytes]:
        got, self.inbox = self.inbox[:max_messages], self.inbox[max_messages:]
        return got

    def fileno(self) -> int:
        return -1

    def counters(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self.closed = True


def deliver(sent: list[bytes], receiver: SyncReceiver, now: float) -> int:
    applied = sum(receiver.receive(data, now) for data in sent)
    sent.clear()
    return applied


def conn(
    proto=PROTO_TCP, *, cport=40000, flags=F_MASQ, state=ESTABLISHED, timeout=900
) -> Connection:
    return Connection(
        proto,
        ip(CIP),
        cport,
        ip(VIP),
        80,
        ip("192.168.0.11"),
        8080,
        flags=flags,
        state=state,
        timeout=timeout,
    )


# --- the codec --------------------------------------------------------------------------------


def test_a_message_has_ipvs_version_1_layout():
    """Header: 0, sync ID, size, count, version 1, spare 0; each IPv4 entry: type 0,
    protocol, version 0 and size 36, flags, state, ports, fwmark, timeout, addresses."""
    record = {
        "proto": 6,
        "caddr": ip(CIP),
        "cport": 40000,
        "vaddr": ip(VIP),
        "vport": 80,
        "daddr": ip("192.168.0.12"),
        "dport": 8080,
        "state": ESTABLISHED,
        "flags": F_MASQ | F_SYNC,
        "timeout_s": 900,
        "fwmark": 0,
    }
    template = {
        "proto": 0,
        "caddr": ip(CIP),
        "cport": 0,
        "vaddr": 9,
        "vport": 0,
        "daddr": ip("192.168.0.11"),
        "dport": 0,
        "state": 0,
        "flags": F_TEMPLATE | F_DROUTE,
        "timeout_s": 300,
        "fwmark": 9,
    }
    data = encode_message(42, [encode_entry(record), encode_entry(template)])
    expected = (
        struct.pack(HDR, 0, 42, 8 + 2 * 36, 2, 1, 0)
        + struct.pack(
            ENTRY, 0, 6, 36, 0x20, 1, 40000, 80, 8080, 0, 900, 0x0A00010B, 0x0A000164, 0xC0A8000C
        )
        + struct.pack(ENTRY, 0, 0, 36, 0x1003, 0, 0, 0, 0, 9, 300, 0x0A00010B, 9, 0xC0A8000B)
    )
    assert data == expected


def test_round_trip_of_tcp_udp_and_template_connections():
    """What a master's connections encode to decodes to what Director.sync_in takes: every
    field, the flags reduced to those a backup uses (no SYNC), templates included."""
    master = director_lab("d1")
    master.handle(client_tcp("d1", 1000, SYN), "d1-eth0")
    master.handle(client_udp("d1", 2000), "d1-eth0")
    master.handle(client_tcp("d1", 3000, SYN, vport=443), "d1-eth0")
    d = master.director
    conns = [d.lookup_in(6, ip(CIP), 1000, ip(VIP), 80), d.lookup_in(17, ip(CIP), 2000, ip(VIP), 7)]
    template = d.lookup_in(6, ip(CIP), 3000, ip(VIP), 443).control
    conns.append(template)
    fwmark_template = Connection(
        PROTO_IP, ip(CIP), 0, 7, 0, ip("192.168.0.11"), 0, flags=F_TEMPLATE | F_TUNNEL, timeout=60
    )
    records = [c.to_record(1.0) for c in conns] + [{**fwmark_template.to_record(1.0), "fwmark": 7}]
    msg = decode_message(encode_message(3, [encode_entry(r) for r in records]))
    assert isinstance(msg, SyncMessage) and msg.sync_id == 3 and msg.skipped == 0
    for got, sent in zip(msg.records, records, strict=True):
        del sent["expires_in_s"]
        assert got == {
            **sent,
            "flags": sent["flags"] & (0x7 | F_NOOUTPUT | F_INACTIVE | F_TEMPLATE),
        }
    assert msg.records[2]["flags"] & F_TEMPLATE and msg.records[2]["cport"] == 0
    assert msg.records[1]["proto"] == PROTO_UDP


def entry(
    proto=6, flags=F_MASQ, state=ESTABLISHED, *, stype=0, size=36, version=0, options=b""
) -> bytes:
    body = struct.pack(
        ENTRY,
        stype,
        proto,
        version << 12 | (size + len(options)),
        flags,
        state,
        40000,
        80,
        8080,
        0,
        900,
        ip(CIP),
        ip(VIP),
        ip("192.168.0.11"),
    )
    return body[:size] + options


def message(
    *entries: bytes,
    count: int | None = None,
    sync_id: int = 0,
    version: int = 1,
    reserved: int = 0,
    spare: int = 0,
    size: int | None = None,
) -> bytes:
    padded = b"".join(e + b"\0" * (-len(e) % 4) for e in entries)
    size = 8 + len(padded) if size is None else size
    count = len(entries) if count is None else count
    return struct.pack(HDR, reserved, sync_id, size, count, version, spare) + padded


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "short-header"),
        (message()[:7], "short-header"),
        (message(entry(), size=45), "size-mismatch"),
        (message(entry(), version=0), "not-version-1"),
        (message(entry(), reserved=1), "not-version-1"),
        (message(entry(), spare=1), "not-version-1"),
        (message(entry(), count=2), "truncated-entry"),
        (message(entry()[:30]), "truncated-entry"),
        (
            message(struct.pack(ENTRY, 0, 6, 100, 0, 1, 1, 2, 3, 0, 9, 1, 2, 3)),
            "entry-overruns-message",
        ),
        (message(entry(version=1)), "unknown-entry-version"),
        (message(entry(stype=2)), "unknown-entry-type"),
        (message(entry(stype=1)), "entry-too-short"),  # an IPv6 entry is 72 bytes at least
        (message(struct.pack(ENTRY, 0, 6, 20, 0, 1, 1, 2, 3, 0, 9, 1, 2, 3)), "entry-too-short"),
        (message(entry(options=b"\x01")), "bad-option"),  # no length byte
        (message(entry(options=b"\x41\x00")), "bad-option"),  # zero length
        (message(entry(options=b"\x01\x08" + bytes(8))), "bad-option"),  # sequence data is 24
        (message(entry(options=(b"\x01\x18" + bytes(24)) * 2)), "bad-option"),  # twice
    ],
)
def test_malformed_messages_are_refused_with_a_reason(data, reason):
    assert decode_message(data) == reason


def test_entries_this_director_cannot_use_are_skipped_and_the_rest_applied():
    """As ip_vs_proc_sync_conn: IPv6, a persistence engine, an unknown mandatory parameter,
    an unknown protocol or state, a forwarding method not modelled: skipped, counted."""
    seq = b"\x01\x18" + bytes(24)
    usable = [
        entry(),
        entry(options=seq),
        entry(options=b"\x49\x03abc"),
        entry(proto=17, state=0),
        entry(proto=0, flags=F_TEMPLATE, state=7),
    ]
    unusable = [
        entry(stype=1, size=36, options=bytes(36)),  # IPv6 (72 bytes)
        entry(options=b"\x02\x04abcd"),
        entry(options=b"\x03\x03sip"),
        entry(options=b"\x09\x02ab"),
        entry(proto=1, state=0),
        entry(state=11),
        entry(proto=17, state=1),
        entry(flags=1),
        entry(flags=4),
        entry(proto=50, flags=F_TEMPLATE),
    ]
    msg = decode_message(message(*usable, *unusable))
    assert isinstance(msg, SyncMessage)
    assert (len(msg.records), msg.skipped) == (len(usable), len(unusable))


def valid_messages() -> list[bytes]:
    records = [
        {
            "proto": p,
            "caddr": ip(CIP) + i,
            "cport": 1000 + i,
            "vaddr": ip(VIP),
            "vport": 80 if p == 6 else 7,
            "daddr": ip("192.168.0.11"),
            "dport": 8080,
            "state": ESTABLISHED if p == 6 else 0,
            "flags": f,
            "timeout_s": 900,
            "fwmark": 0,
        }
        for i, (p, f) in enumerate([(6, F_MASQ), (17, F_MASQ), (6, F_TEMPLATE | F_MASQ)])
    ]
    one = encode_message(0, [encode_entry(records[0])])
    three = encode_message(5, [encode_entry(r) for r in records])
    with_options = message(
        entry(options=b"\x01\x18" + bytes(24)), entry(), entry(proto=17, state=0)
    )
    return [one, three, with_options]


def test_truncated_mutated_and_random_datagrams_never_raise():
    """Every truncation of valid messages, 3000 seeded mutations (bytes overwritten, cut,
    duplicated) and 1000 random datagrams: decoding returns a message or a reason, and
    applying what decodes to a configured backup never raises either."""
    rng = random.Random(20030611)
    backup = director_lab("d2").director
    receiver = SyncReceiver(backup, 0)
    cases = []
    for data in valid_messages():
        cases += [data[:n] for n in range(len(data))]
        for _ in range(1000):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 6)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            if rng.random() < 0.2:
                at = rng.randrange(len(mutated))
                mutated = (
                    mutated[:at] + mutated[at:][::-1]
                    if rng.random() < 0.5
                    else mutated + mutated[at:]
                )
            if rng.random() < 0.5:  # keep the size field honest so decoding goes deeper
                struct.pack_into("!H", mutated, 2, len(mutated) & 0xFFFF)
            cases.append(bytes(mutated))
    cases += [rng.randbytes(rng.randrange(80)) for _ in range(1000)]
    decoded = 0
    for data in cases:
        result = decode_message(data)
        assert isinstance(result, SyncMessage | str)
        if isinstance(result, SyncMessage):
            decoded += 1
            for record in result.records:
                assert record["proto"] in (0, 6, 17) and record["flags"] & 0x7 in (0, 2, 3)
        receiver.receive(data, 1.0)
    assert decoded > 1000  # the mutations reached the entries, not just the header checks
    assert receiver.messages == len(cases)
    assert not receiver.apply_errors


def test_other_sync_ids_are_ignored_and_counted_zero_takes_all():
    """A backup with sync ID 5 applies 5's messages and ignores 6's; with ID 0 it applies
    every ID, as the kernel's backup does."""
    record = conn().to_record(0.0)
    msg5 = encode_message(5, [encode_entry(record)])
    msg6 = encode_message(6, [encode_entry({**record, "cport": 40001})])
    backup = director_lab("d2").director
    receiver = SyncReceiver(backup, 5)
    assert receiver.receive(msg6, 1.0) == 0
    assert receiver.ignored_sync_id == 1 and len(backup.conns) == 0
    assert receiver.receive(msg5, 1.0) == 1 and len(backup.conns) == 1
    anyone = SyncReceiver(director_lab("d2").director, 0)
    assert anyone.receive(msg5, 1.0) + anyone.receive(msg6, 1.0) == 2
    assert anyone.counters()["conns_applied"] == 2


def test_an_entry_without_timeout_gets_the_state_timeout_and_unknown_services_are_counted():
    backup = director_lab("d2")
    receiver = SyncReceiver(backup.director)
    fin = {**conn(state=FIN_WAIT).to_record(0.0), "timeout_s": 0}
    other = {**conn().to_record(0.0), "vport": 81}
    assert receiver.receive(encode_message(0, [encode_entry(fin), encode_entry(other)]), 10.0) == 1
    synced = backup.director.lookup_in(6, ip(CIP), 40000, ip(VIP), 80)
    assert synced.timeout == 120 and synced.expires == 130.0
    assert receiver.conns_no_service == 1 and backup.director.drops["sync_no_service"] == 1


# --- batching and flushing ------------------------------------------------------------------


def test_messages_are_filled_up_to_the_size_limit_then_sent_at_once():
    """With the 1472-byte limit of a 1500-byte MTU a message holds 40 entries (41 would not
    fit): 100 updates leave as two full messages at once, the last 20 wait for the tick."""
    sent = []
    sender = SyncSender(sent.append, 9)
    for i in range(100):
        sender.queue(conn(cport=1000 + i), now=5.0)
    assert [len(m) for m in sent] == [8 + 40 * 36] * 2
    assert 8 + 41 * 36 > DEFAULT_MAX_MESSAGE_BYTES >= 8 + 40 * 36
    assert [m[4] for m in sent] == [40, 40] and all(m[1] == 9 for m in sent)
    assert sender.counters()["conns_pending"] == 20
    sender.tick(5.999)
    assert len(sent) == 2
    sender.tick(6.0)
    assert len(sent) == 3 and sent[2][4] == 20
    cports = [r["cport"] for m in sent for r in decode_message(m).records]
    assert cports == list(range(1000, 1100))
    assert sender.counters() == {
        "conns_queued": 100,
        "conns_pending": 0,
        "messages_sent": 3,
        "bytes_sent": 3 * 8 + 100 * 36,
        "send_errors": 0,
    }


def test_a_message_holds_at_most_255_entries_whatever_the_size_limit():
    sent = []
    sender = SyncSender(sent.append, max_message_bytes=65507)
    for i in range(300):
        sender.queue(conn(cport=i), now=0.0)
    assert len(sent) == 1 and sent[0][4] == 255 and len(sent[0]) == 8 + 255 * 36


def test_a_partly_filled_message_leaves_one_interval_after_its_first_entry():
    sent = []
    sender = SyncSender(sent.append, flush_interval_s=1.0)
    assert sender.deadline_s() is None
    sender.queue(conn(cport=1), now=10.0)
    sender.queue(conn(cport=2), now=10.5)
    assert sender.deadline_s() == 11.0
    sender.tick(10.99)
    assert sent == []
    sender.tick(11.0)
    assert len(sent) == 1 and sent[0][4] == 2 and sender.deadline_s() is None
    sender.queue(conn(cport=3), now=11.2)
    assert sender.deadline_s() == pytest.approx(12.2)


def test_a_refused_send_is_counted_and_dropped():
    def refuse(data: bytes) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    sender = SyncSender(refuse)
    sender.queue(conn(), now=0.0)
    sender.flush()
    assert sender.counters()["send_errors"] == 1 and sender.deadline_s() is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sync_id": 256},
        {"sync_id": -1},
        {"max_message_bytes": 43},
        {"flush_interval_s": 0},
        {"threshold": 50, "period": 50},
        {"threshold": -1},
    ],
)
def test_bad_sender_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        SyncSender(lambda data: None, **kwargs)


# --- the rule ---------------------------------------------------------------------------------


TCP, UDP, TPL = conn(), conn(PROTO_UDP, state=NONE), conn(flags=F_TEMPLATE | F_MASQ, state=NONE)


@pytest.mark.parametrize(
    "which, pkts, old, new, expected",
    [
        # UDP (one state): the 3rd packet, then every 50th after it
        (UDP, 1, NONE, NONE, False),
        (UDP, 2, NONE, NONE, False),
        (UDP, 3, NONE, NONE, True),
        (UDP, 4, NONE, NONE, False),
        (UDP, 52, NONE, NONE, False),
        (UDP, 53, NONE, NONE, True),
        (UDP, 103, NONE, NONE, True),
        # TCP: never outside ESTABLISHED, FIN_WAIT, CLOSE_WAIT, TIME_WAIT, CLOSE
        (TCP, 1, NONE, SYN_RECV, False),
        (TCP, 3, NONE, SYN_RECV, False),
        (TCP, 53, CLOSE_WAIT, LAST_ACK, False),
        # entering ESTABLISHED is not enough: the count decides
        (TCP, 2, NONE, ESTABLISHED, False),
        (TCP, 3, NONE, ESTABLISHED, True),
        (TCP, 4, ESTABLISHED, ESTABLISHED, False),
        (TCP, 53, ESTABLISHED, ESTABLISHED, True),
        # entering a closing state is sent at once, whatever the count
        (TCP, 10, ESTABLISHED, FIN_WAIT, True),
        (TCP, 10, ESTABLISHED, CLOSE_WAIT, True),
        (TCP, 11, CLOSE_WAIT, TIME_WAIT, True),
        (TCP, 2, SYN_RECV, CLOSE, True),
        (TCP, 11, FIN_WAIT, FIN_WAIT, False),
        (TCP, 103, FIN_WAIT, FIN_WAIT, True),
        # templates: with a period, every time they are looked at
        (TPL, 1, NONE, NONE, True),
        (TPL, 2, NONE, NONE, True),
        (TPL, 77, NONE, NONE, True),
    ],
)
def test_should_sync_follows_ip_vs_sync_conn_needed_with_the_defaults(
    which, pkts, old, new, expected
):
    assert should_sync(which, pkts, old, new) is expected


@pytest.mark.parametrize(
    "which, pkts, old, new, expected",
    [
        (UDP, 3, NONE, NONE, True),
        (UDP, 53, NONE, NONE, False),
        (TPL, 3, NONE, NONE, True),
        (TPL, 4, NONE, NONE, False),
        (TCP, 9, ESTABLISHED, FIN_WAIT, True),
        (TCP, 53, ESTABLISHED, ESTABLISHED, False),
    ],
)
def test_should_sync_with_period_zero_sends_once_or_on_state_changes(
    which, pkts, old, new, expected
):
    """sync_threshold = "3 0": only once at the threshold, or on state changes."""
    assert should_sync(which, pkts, old, new, period=0) is expected


def test_a_tcp_connection_through_the_forwarder_is_synced_on_the_kernels_packets():
    """SYN, ACK: nothing; the 3rd client packet: sent; then nothing until the 53rd; the
    client's FIN (CLOSE_WAIT): sent at once; the server's FIN (TIME_WAIT, on the reply
    path): sent with the client's next packet. Replies never count."""
    lab = director_lab("d1")
    sender = SyncSender(lambda data: None)
    lab.fwd.sync = sender.conn_in
    synced_after = []

    def step(frame, port):
        lab.handle(frame, port)
        synced_after.append(sender.conns_queued)

    step(client_tcp("d1", 1000, SYN), "d1-eth0")
    rip = next(
        a for a in RS if lab.director.lookup_in(6, ip(CIP), 1000, ip(VIP), 80).daddr == ip(a)
    )
    step(server_tcp("d1", rip, 8080, 1000, SYN | ACK), "d1-eth1")
    step(client_tcp("d1", 1000, ACK), "d1-eth0")
    step(client_tcp("d1", 1000, PSH | ACK, payload=b"GET /"), "d1-eth0")  # 3rd: sent
    assert synced_after == [0, 0, 0, 1]
    for _ in range(48):  # client packets 4..51, with replies between
        step(server_tcp("d1", rip, 8080, 1000, ACK, payload=b"x"), "d1-eth1")
        step(client_tcp("d1", 1000, ACK), "d1-eth0")
    assert sender.conns_queued == 1
    step(client_tcp("d1", 1000, ACK), "d1-eth0")  # 52nd
    step(client_tcp("d1", 1000, ACK), "d1-eth0")  # 53rd: sent
    assert synced_after[-2:] == [1, 2]
    step(client_tcp("d1", 1000, FIN | ACK), "d1-eth0")  # CLOSE_WAIT: sent
    step(server_tcp("d1", rip, 8080, 1000, FIN | ACK), "d1-eth1")  # TIME_WAIT, on replies
    step(client_tcp("d1", 1000, ACK), "d1-eth0")  # the next client packet carries it
    assert synced_after[-3:] == [3, 3, 4]
    c = lab.director.lookup_in(6, ip(CIP), 1000, ip(VIP), 80)
    assert (c.state, c.old_state, c.in_pkts) == (TIME_WAIT, TIME_WAIT, 55)


# --- end to end: master, fake transport, backup, failover -------------------------------------


def master_and_backup(sync_id: int = 7) -> tuple[Lab, SyncSender, Lab, SyncReceiver, list]:
    wire: list[bytes] = []
    master, backup = director_lab("d1"), director_lab("d2")
    sender = SyncSender(wire.append, sync_id)
    master.fwd.sync = sender.conn_in
    return master, sender, backup, SyncReceiver(backup.director, sync_id), wire


def open_tcp(lab: Lab, cport: int, now: float) -> str:
    """SYN, the real server's SYN-ACK, ACK and a request (3 client packets) to VIP:80 on
    the lab's director. Returns the real server's address."""
    d = next(iter(lab.ports)).split("-")[0]
    outer, inner = f"{d}-eth0", f"{d}-eth1"
    lab.handle(client_tcp(d, cport, SYN), outer, now)
    rip = next(
        a for a in RS if ip(a) == lab.director.lookup_in(6, ip(CIP), cport, ip(VIP), 80).daddr
    )
    lab.handle(server_tcp(d, rip, 8080, cport, SYN | ACK), inner, now)
    lab.handle(client_tcp(d, cport, ACK), outer, now)
    lab.handle(client_tcp(d, cport, PSH | ACK, payload=b"GET /"), outer, now)
    return rip


def table(director: Director) -> dict:
    return {
        (c.proto, c.caddr, c.cport, c.vaddr, c.vport, c.is_template): (
            c.daddr,
            c.dport,
            c.state,
            c.flags & ~F_SYNC,
            c.dest.addr,
            c.timeout,
        )
        for c in director.conns
    }


def test_backup_carries_the_masters_nat_tcp_connections_on_after_failover():
    """Two connections on different real servers reach the backup with the master's real
    servers, states, flags and timers; after the failover the backup forwards the next
    inbound ACK and the real server's reply exactly as the master does, scheduling
    nothing; a backup without sync would have dropped both."""
    master, sender, backup, receiver, wire = master_and_backup()
    rips = [open_tcp(master, 1000, 1.0), open_tcp(master, 1001, 1.0)]
    assert len(set(rips)) == 2
    assert wire == [] and sender.deadline_s() == 2.0  # batched, not yet sent
    sender.tick(2.0)
    assert len(wire) == 1
    assert deliver(wire, receiver, 2.0) == 2
    assert table(backup.director) == table(master.director)
    for dest in (d for svc in backup.director.services() for d in svc.dests):
        assert dest.stats.conns == 0 and dest.inactconns == 0
    assert sum(d.activeconns for svc in backup.director.services() for d in svc.dests) == 2

    unsynced = director_lab("d2")
    backup_sender = SyncSender(wire.append, 7)
    backup.fwd.sync = backup_sender.conn_in
    for cport, rip in zip((1000, 1001), rips, strict=True):
        ack = (client_tcp("d1", cport, ACK), client_tcp("d2", cport, ACK))
        same_forwarding(
            master.handle(ack[0], "d1-eth0", 3.0), backup.handle(ack[1], "d2-eth0", 3.0)
        )
        reply = (
            server_tcp("d1", rip, 8080, cport, PSH | ACK, payload=b"200 OK"),
            server_tcp("d2", rip, 8080, cport, PSH | ACK, payload=b"200 OK"),
        )
        same_forwarding(
            master.handle(reply[0], "d1-eth1", 3.0), backup.handle(reply[1], "d2-eth1", 3.0)
        )
        assert unsynced.handle(ack[1], "d2-eth0", 3.0) == {}
        assert unsynced.handle(reply[1], "d2-eth1", 3.0) == {}
    assert unsynced.fwd.dropped["tcp-no-connection"] == 2
    assert unsynced.fwd.ignored["not-a-connection"] == 2
    assert table(backup.director) == table(master.director)
    assert len(backup.director.conns) == 2
    assert all(d.stats.conns == 0 for svc in backup.director.services() for d in svc.dests)
    # The backup counts on from the threshold, as IPVS's does: no update for packet 4.
    assert backup_sender.conns_queued == 0


def test_backup_carries_a_udp_flow_on():
    master, sender, backup, receiver, wire = master_and_backup()
    for _ in range(3):
        master.handle(client_udp("d1", 5000), "d1-eth0", 1.0)
    sender.flush()
    assert deliver(wire, receiver, 1.5) == 1
    assert table(backup.director) == table(master.director)
    rip = next(
        a for a in RS if ip(a) == master.director.lookup_in(17, ip(CIP), 5000, ip(VIP), 7).daddr
    )
    same_forwarding(
        master.handle(client_udp("d1", 5000), "d1-eth0", 2.0),
        backup.handle(client_udp("d2", 5000), "d2-eth0", 2.0),
    )
    same_forwarding(
        master.handle(server_udp("d1", rip, 5000), "d1-eth1", 2.0),
        backup.handle(server_udp("d2", rip, 5000), "d2-eth1", 2.0),
    )


def test_persistence_templates_are_synced_and_keep_clients_on_their_server_after_failover():
    """The template goes out with its connection's first packet; on the backup a NEW
    connection from that client goes to the template's real server, where a backup without
    the template would have scheduled another."""
    master, sender, backup, receiver, wire = master_and_backup()
    master.handle(client_tcp("d1", 900, SYN, src=CIP2, vport=443), "d1-eth0", 1.0)  # takes rr's 1st
    assert sender.conns_queued == 1  # CIP2's template, at once
    master.handle(client_tcp("d1", 1000, SYN, vport=443), "d1-eth0", 1.0)
    template = master.director.lookup_in(6, ip(CIP), 1000, ip(VIP), 443).control
    assert sender.conns_queued == 2
    sender.flush()
    assert deliver(wire, receiver, 1.0) == 2
    copy = backup.director.conns.lookup_template(6, ip(CIP), ip(VIP), 443)
    assert copy is not None and copy.dest.addr == template.daddr and copy.timeout == 300
    assert copy.dest.persistconns == 1

    unsynced = director_lab("d2")
    outs = [
        lab.handle(client_tcp("d2", 2000, SYN, vport=443), "d2-eth0", 5.0)
        for lab in (backup, unsynced)
    ]
    chosen = [the_frame(out)[1][:6] for out in outs]
    assert chosen[0] == mac(RS[next(a for a in RS if ip(a) == template.daddr)])
    assert chosen[1] != chosen[0]
    assert backup.director.lookup_in(6, ip(CIP), 2000, ip(VIP), 443).control is copy


def test_connection_sync_runs_both_roles_over_one_transport():
    """The daemon's glue: d1's forwarder hook fills a message, the tick at its deadline
    sends it, d2 reads it when its transport is readable; closing flushes what is pending."""
    wires = {"d1": Wire(), "d2": Wire()}
    labs = {name: director_lab(name) for name in wires}
    syncs = {name: ConnectionSync(labs[name].director, wires[name], 4) for name in wires}
    for name in wires:
        labs[name].fwd.sync = syncs[name].sender.conn_in
    open_tcp(labs["d1"], 1000, 1.0)
    assert syncs["d1"].deadline_s() == 2.0
    syncs["d1"].tick(1.5)
    assert wires["d1"].sent == []
    syncs["d1"].tick(2.0)
    wires["d2"].inbox += wires["d1"].sent
    syncs["d2"].on_readable(2.1)
    assert len(labs["d2"].director.conns) == 1
    counters = syncs["d2"].counters()
    assert counters["sync_id"] == 4 and counters["received"]["conns_applied"] == 1
    assert syncs["d1"].counters()["sent"]["messages_sent"] == 1
    open_tcp(labs["d1"], 1001, 3.0)
    syncs["d1"].close()
    assert wires["d1"].closed and len(wires["d1"].sent) == 2


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"sync_iface": "d1-eth1", "sync_id": 256}, "sync ID must be an integer 0..255"),
        ({"sync_iface": "d1-eth1", "sync_id": -1}, "sync ID must be an integer 0..255"),
        ({"sync_id": 3}, "needs a sync interface"),
        ({"sync_iface": ""}, "sync interface must be"),
        ({"sync_iface": "a-very-long-interface"}, "sync interface must be"),
        ({"sync_iface": "eth 1"}, "sync interface must be"),
    ],
)
def test_daemon_config_refuses_bad_sync_settings(kwargs, words):
    with pytest.raises(ValueError, match=words):
        DaemonConfig(interfaces=["d1-eth0"], **kwargs)


def test_daemon_config_takes_sync_settings():
    cfg = DaemonConfig(interfaces=["d1-eth0"], sync_iface="d1-eth1", sync_id=255)
    assert (cfg.sync_iface, cfg.sync_id) == ("d1-eth1", 255)
    assert DaemonConfig(interfaces=["d1-eth0"]).sync_iface is None


def test_cli_has_sync_options_and_refuses_bad_ids_before_anything_runs():
    runner = CliRunner()
    result = runner.invoke(app, ["director", "run", "--help"], env={"COLUMNS": "200"})
    assert "--sync-iface" in result.output and "--sync-id" in result.output
    result = runner.invoke(
        app, ["director", "run", "-i", "d1-eth0", "--sync-iface", "d1-eth1", "--sync-id", "300"]
    )
    assert result.exit_code == 1 and "sync ID must be" in result.output


def test_message_size_follows_the_mtu_like_the_kernels_master():
    assert max_message_bytes(1500) == max_message_bytes(9000) == 1472
    assert max_message_bytes(1400) == 1372
    with pytest.raises(ValueError):
        max_message_bytes(60)
    assert interface_mtu("lo") >= 1280


def test_multicast_transport_between_two_directors_on_loopback():
    """The socket adapter itself, without root where the kernel allows it (Linux >= 5.7
    lets anyone bind a socket to a device): two transports on lo stand for two directors;
    one's update reaches the other's table, and nobody is given its own datagrams back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # not 8848: a director here must not hear the test
    try:
        master_side = MulticastTransport("lo", ip("127.0.0.2"), port=port)
    except SyncTransportError as exc:
        pytest.skip(f"no multicast sockets for this user here: {exc}")
    backup_side = MulticastTransport("lo", ip("127.0.0.1"), port=port)
    backup = director_lab("d2")
    master, replica = (
        ConnectionSync(director_lab("d1").director, master_side, 3),
        ConnectionSync(backup.director, backup_side, 3),
    )
    try:
        assert master_side.max_message_bytes == 1472  # lo's MTU is 64 KiB; 1500 is the cap
        master.sender.queue(conn(), now=0.0)
        master.sender.flush()
        deadline = time.monotonic() + 2.0
        while not backup.director.conns and time.monotonic() < deadline:
            select.select([replica.fileno()], [], [], 0.05)
            replica.on_readable(1.0)
        assert len(backup.director.conns) == 1
        select.select([master.fileno()], [], [], 0.2)
        assert master_side.receive() == []
    finally:
        master.close()
        replica.close()


def test_a_returning_director_asks_for_the_whole_table_and_learns_idle_connections():
    """A master that crashed comes back with an empty table. An idle connection is synced
    again only every 50 client packets, so without help it would stay unknown and break when
    the master preempts. A change of services sends a resync request; the peer answers with
    every connection (rate-limited), and the returning director learns them all."""
    wires = {"d1": Wire(), "d2": Wire()}
    labs = {name: director_lab(name) for name in wires}
    syncs = {name: ConnectionSync(labs[name].director, wires[name], 4) for name in wires}
    open_tcp(labs["d2"], 1000, 1.0)  # d2 (master now) holds an idle connection
    syncs["d1"].request_resync(5.0)
    syncs["d1"].request_resync(5.02)  # a second change before it went: one request covers both
    assert syncs["d1"].deadline_s() == 5.0
    syncs["d1"].tick(5.05)
    assert len(wires["d1"].sent) == 1 and decode_message(wires["d1"].sent[0]).resync_request
    wires["d2"].inbox += wires["d1"].sent
    syncs["d2"].on_readable(5.1)
    syncs["d2"].tick(5.1)
    wires["d1"].inbox += wires["d2"].sent
    syncs["d1"].on_readable(5.2)
    assert table(labs["d1"].director) == table(labs["d2"].director)
    assert syncs["d2"].counters()["resyncs_answered"] == 1
    syncs["d1"].request_resync(5.5)  # another change: not before a second after the last
    syncs["d1"].tick(6.0)
    assert len(wires["d1"].sent) == 1
    syncs["d1"].tick(6.05)
    assert len(wires["d1"].sent) == 2


def test_a_resync_request_decodes_and_other_spare_values_do_not():
    from testbed.director.sync import HEADER, SYNC_PROTO_VERSION, encode_resync_request

    msg = decode_message(encode_resync_request(9))
    assert msg.resync_request and msg.sync_id == 9 and msg.records == []
    bad = HEADER.pack(0, 9, HEADER.size, 0, SYNC_PROTO_VERSION, 2)
    assert decode_message(bad) == "not-version-1"


# --- distrust: sync is unauthenticated ---------------------------------------------------------


def test_received_timeouts_are_capped_at_what_this_director_would_give():
    """A peer (or anyone on the segment) sending 2^32-1 s cannot pin entries for a century:
    a connection gets at most its state's timeout, a template its service's persistence."""
    backup = director_lab("d2")
    receiver = SyncReceiver(backup.director)
    forever = {**conn(state=ESTABLISHED).to_record(0.0), "timeout_s": 0xFFFFFFFF}
    fin = {**conn(cport=40001, state=FIN_WAIT).to_record(0.0), "timeout_s": 0xFFFFFFFF}
    udp = {
        **conn(PROTO_UDP, cport=40002, state=0).to_record(0.0),
        "vport": 7,
        "dport": 7007,
        "timeout_s": 10**9,
    }
    template = {
        **conn(cport=0, flags=F_MASQ | F_TEMPLATE, state=0).to_record(0.0),
        "vport": 443,
        "dport": 443,
        "timeout_s": 0xFFFFFFFF,
    }
    data = encode_message(0, [encode_entry(r) for r in (forever, fin, udp, template)])
    assert receiver.receive(data, 10.0) == 4
    got = {c.cport: c.timeout for c in backup.director.conns}
    assert got == {40000: 900, 40001: 120, 40002: 300, 0: 300}


def test_a_resync_answer_is_spread_over_time_in_bounded_slices():
    """A peer asking for our whole table gets it at most RESYNC_SLICE_ENTRIES entries a
    loop turn and RESYNC_RATE_PER_S a second: the forwarding loop runs in between."""
    from testbed.director.sync import RESYNC_RATE_PER_S, RESYNC_SLICE_ENTRIES

    lab = director_lab("d2")
    wire = Wire()
    sync = ConnectionSync(lab.director, wire, 4)
    svc = lab.director.services()[0]
    for i in range(2000):
        lab.director.schedule_new(svc, 6, 0x64400000 + i, 1000, svc.addr, svc.port, 1.0)
    wire.inbox.append(encode_resync_request(4))
    sync.on_readable(2.0)
    now, turns, entries = 2.0, 0, 0
    while True:
        due = sync.deadline_s()
        now = max(now, due)
        before = sum(len(decode_message(m).records) for m in wire.sent)
        sync.tick(now)
        sent = sum(len(decode_message(m).records) for m in wire.sent)
        assert sent - before <= RESYNC_SLICE_ENTRIES
        turns += 1
        entries = sent
        if sync.counters()["resyncs_answered"]:
            break
        assert turns < 100
    assert entries == 2000 and turns >= 2000 // RESYNC_SLICE_ENTRIES
    assert now - 2.0 >= (2000 - RESYNC_SLICE_ENTRIES) / RESYNC_RATE_PER_S


def test_resync_requests_during_an_answer_are_coalesced_into_one_more():
    lab = director_lab("d2")
    wire = Wire()
    sync = ConnectionSync(lab.director, wire, 4)
    svc = lab.director.services()[0]
    for i in range(1000):
        lab.director.schedule_new(svc, 6, 0x64400000 + i, 1000, svc.addr, svc.port, 1.0)
    wire.inbox.append(encode_resync_request(4))
    sync.on_readable(2.0)
    sync.tick(2.0)  # the first slice
    assert sync.counters()["resync_in_progress"]
    wire.inbox += [encode_resync_request(4)] * 5  # a flood of requests meanwhile
    sync.on_readable(2.01)
    assert sync.counters()["resync_requests_coalesced"] == 5
    now = 2.01
    while sync.counters()["resyncs_answered"] < 2:
        now = max(now, sync.deadline_s())
        sync.tick(now)
        assert now < 10
    assert sync.counters()["resyncs_answered"] == 2  # one more, not five
    assert sync.deadline_s() is None or sync.deadline_s() > now


def test_at_most_a_few_messages_are_read_per_loop_turn():
    from testbed.director.sync import MAX_MESSAGES_PER_WAKEUP

    lab = director_lab("d2")
    wire = Wire()
    sync = ConnectionSync(lab.director, wire, 0)
    wire.inbox += [
        encode_message(0, [encode_entry(conn(cport=40000 + i).to_record(0.0))]) for i in range(20)
    ]
    sync.on_readable(1.0)
    assert sync.receiver.messages == MAX_MESSAGES_PER_WAKEUP
    assert len(wire.inbox) == 20 - MAX_MESSAGES_PER_WAKEUP


def test_the_multicast_transport_takes_only_the_peers_datagrams():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        backup = MulticastTransport("lo", ip("127.0.0.1"), port=port, peer="127.0.0.2")
    except SyncTransportError as exc:
        pytest.skip(f"no multicast sockets for this user here: {exc}")
    peer = MulticastTransport("lo", ip("127.0.0.2"), port=port)
    stranger = MulticastTransport("lo", ip("127.0.0.3"), port=port)
    try:
        stranger.send(b"from a stranger")
        peer.send(b"from the peer")
        got: list[bytes] = []
        deadline = time.monotonic() + 2.0
        while not got and time.monotonic() < deadline:
            select.select([backup.fileno()], [], [], 0.05)
            got += backup.receive()
        time.sleep(0.1)
        got += backup.receive()
        assert got == [b"from the peer"]
        assert backup.counters()["ignored_not_peer"] == 1
    finally:
        for t in (backup, peer, stranger):
            t.close()


def test_daemon_config_checks_the_sync_peer():
    with pytest.raises(ValueError):
        DaemonConfig(interfaces=["d1-eth0"], sync_iface="d1-eth1", sync_peer="10.0.0.300")
    with pytest.raises(ValueError, match="needs a sync interface"):
        DaemonConfig(interfaces=["d1-eth0"], sync_peer="10.0.0.3")
    cfg = DaemonConfig(interfaces=["d1-eth0"], sync_iface="d1-eth1", sync_peer="192.168.0.3")
    assert cfg.sync_peer == "192.168.0.3"
