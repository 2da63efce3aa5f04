"""The connection table's limit and IPVS's defences (defense.py): the levels as
update_defense_level() moves them, drop_packet's rate, drop_entry's scan and todrop_entry,
secure_tcp's table, the limit with eviction of half-open entries, and a SYN flood through the
Director that leaves its table and its expiry heap bounded."""

import random

import pytest

from testbed.director import ipvsadm
from testbed.director.conntable import (
    ESTABLISHED,
    INPUT,
    OUTPUT,
    SYN_RECV,
    SYNACK,
    TH_ACK,
    TH_SYN,
    Connection,
    ConnTable,
)
from testbed.director.defense import (
    IDLE_BEFORE_DROP_S,
    Defense,
    TableFull,
    memory_needed_bytes,
)
from testbed.director.model import Director

VIP, RIP = 0x0A000164, 0xC0A8000B


def half_open(table: ConnTable, caddr: int, now: float = 0.0) -> Connection:
    conn = Connection(6, caddr, 1000, VIP, 80, RIP, 80, timeout=60)
    table.insert(conn, now)
    table.on_tcp_packet(conn, INPUT, TH_SYN, now)
    return conn


def established(table: ConnTable, caddr: int, now: float = 0.0) -> Connection:
    conn = half_open(table, caddr, now)
    table.on_tcp_packet(conn, OUTPUT, TH_SYN | TH_ACK, now)
    table.on_tcp_packet(conn, INPUT, TH_ACK, now)
    assert conn.state == ESTABLISHED
    return conn


# -- the levels ----------------------------------------------------------------------------------


def test_automatic_modes_switch_to_2_when_room_runs_low_and_back_to_1():
    d = Defense(1000, amemthresh=100, drop_entry=1, drop_packet=1, secure_tcp=1)
    assert not d.update(800) and (d.drop_entry, d.drop_packet, d.secure_tcp) == (1, 1, 1)
    assert not d.dropentry and d.drop_rate == 0
    assert d.update(950)  # 50 entries of room < 100: every defence on, secure_tcp changes
    assert (d.drop_entry, d.drop_packet, d.secure_tcp) == (2, 2, 2)
    assert d.dropentry and d.secure_on
    assert d.drop_rate == 100 // (100 - 50) == 2
    assert d.update(800)  # room again: back to 1, secure_tcp off
    assert (d.drop_entry, d.drop_packet, d.secure_tcp) == (1, 1, 1)
    assert not d.dropentry and d.drop_rate == 0 and not d.secure_on


def test_mode_3_is_always_on_and_mode_0_always_off():
    d = Defense(1000, amemthresh=100, drop_entry=3, drop_packet=3, secure_tcp=3, am_droprate=7)
    d.update(0)
    assert d.dropentry and d.drop_rate == 7 and d.secure_on
    d = Defense(1000, amemthresh=100, drop_entry=0, drop_packet=0, secure_tcp=0)
    d.update(1000)
    assert not d.dropentry and d.drop_rate == 0 and not d.secure_on


def test_drop_packet_drops_one_in_rate():
    d = Defense(1000, amemthresh=100, drop_packet=1)
    d.update(975)  # room 25: rate 100 // 75 = 1, every packet
    assert d.drop_rate == 1 and all(d.todrop() for _ in range(5))
    d.update(940)  # room 60: rate 100 // 40 = 2
    assert [d.todrop() for _ in range(6)] == [False, True, False, True, False, True]
    assert d.drops["drop_packet"] == 8


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("drop_entry", 4, "0, 1, 2 or 3"),
        ("conn_max", 0, "conn_max must be"),
        ("amemthresh", -1, "amemthresh must be"),
        ("am_droprate", 0, "am_droprate must be"),
        ("drop_packet", True, "takes an integer"),
        ("nope", 1, "unknown setting"),
    ],
)
def test_bad_settings_are_refused(name, value, complaint):
    with pytest.raises(ValueError, match=complaint):
        Defense().set(name, value)


# -- drop_entry ------------------------------------------------------------------------------------


def test_todrop_entry_spares_recent_and_busy_entries_and_drops_one_in_n():
    d = Defense()
    table = ConnTable(8, seed=1)
    conn = established(table, 1, now=0.0)
    conn.in_pkts = 2
    assert not d.todrop_entry(conn, IDLE_BEFORE_DROP_S - 1)  # refreshed within 60 s
    later = IDLE_BEFORE_DROP_S + 1
    assert [d.todrop_entry(conn, later) for _ in range(4)] == [True, False, True, False]
    conn.in_pkts = 9
    assert not d.todrop_entry(conn, later)  # busy: more than 8 packets
    conn.in_pkts = 0
    assert not d.todrop_entry(conn, later)


def test_random_dropentry_drops_half_open_entries_and_keeps_established_ones():
    d = Defense(seed=3)
    table = ConnTable(8, seed=1)  # 256 buckets: 1/32 of them is 8 buckets a scan
    opened = [half_open(table, i) for i in range(2000)]
    kept = [established(table, 100_000 + i) for i in range(200)]
    dropped = sum(d.random_dropentry(table, 1.0) for _ in range(40))
    assert dropped == d.drops["drop_entry"] > 0
    assert len(table) == len(opened) + len(kept) - dropped
    assert all(c.state == ESTABLISHED for c in kept) and set(kept) <= set(table)


def test_defence_tick_switches_the_tcp_table_for_secure_tcp():
    d = Defense(100, amemthresh=10, secure_tcp=1)
    table = ConnTable(8, seed=1)
    d.tick(table, 0.0)
    conn = half_open(table, 1)
    assert not table.secure_tcp and conn.state == SYN_RECV
    for i in range(95):
        half_open(table, 10 + i)
    d.tick(table, 1.0)
    assert table.secure_tcp
    dr = Connection(6, 7, 1000, VIP, 80, RIP, 80, flags=0x0083, timeout=60)  # DR: NOOUTPUT
    table.insert(dr, 1.0)
    table.on_tcp_packet(dr, INPUT, TH_SYN, 1.0)
    assert dr.state == SYNACK  # tcp_states_dos: a DR SYN enters SYNACK
    nat = half_open(table, 8, 1.0)
    table.on_tcp_packet(nat, INPUT, TH_ACK, 1.0)
    assert nat.state == SYN_RECV  # NAT: no ESTABLISHED before the real server answered
    table.on_tcp_packet(nat, OUTPUT, TH_SYN | TH_ACK, 1.0)
    table.on_tcp_packet(nat, INPUT, TH_ACK, 1.0)
    assert nat.state == SYNACK  # the client's ACK alone does not establish it...
    table.on_tcp_packet(nat, OUTPUT, TH_ACK, 1.0)
    assert nat.state == ESTABLISHED  # ...the real server's answer does


# -- the limit -----------------------------------------------------------------------------------


def director_with_service(conn_max: int, **defense) -> tuple[Director, object]:
    d = Director(8, seed=1, defense=Defense(conn_max, seed=1, **defense))
    ipvsadm.run(["-A", "-t", "10.0.1.100:80", "-s", "rr"], d, None, now=0)
    ipvsadm.run(["-a", "-t", "10.0.1.100:80", "-r", "192.168.0.11:80", "-m"], d, None, now=0)
    return d, d.services()[0]


def syn(d: Director, svc, caddr: int, now: float) -> Connection | None:
    conn = d.schedule_new(svc, 6, caddr, 1000, svc.addr, 80, now)
    if conn is not None:
        d.on_tcp_packet(conn, INPUT, TH_SYN, now)
    return conn


def test_at_the_limit_a_new_connection_evicts_a_half_open_one():
    d, svc = director_with_service(100)
    first = [syn(d, svc, i, 0.0) for i in range(100)]
    assert len(d.conns) == 100
    late = syn(d, svc, 10_000, 1.0)
    assert late is not None and len(d.conns) == 100
    assert d.defense.drops["evicted"] == 1 and sum(c in set(d.conns) for c in first) == 99


def test_at_the_limit_established_connections_are_never_pushed_out():
    d, svc = director_with_service(100)
    for i in range(100):
        conn = syn(d, svc, i, 0.0)
        d.on_tcp_packet(conn, OUTPUT, TH_SYN | TH_ACK, 0.0)
        d.on_tcp_packet(conn, INPUT, TH_ACK, 0.0)
    assert syn(d, svc, 10_000, 1.0) is None
    assert d.refused == "table-full" and d.defense.drops["table_full"] == 1
    assert len(d.conns) == 100


def test_with_drop_entry_off_the_limit_refuses():
    d, svc = director_with_service(10, drop_entry=0)
    for i in range(10):
        syn(d, svc, i, 0.0)
    assert syn(d, svc, 99, 0.0) is None and d.refused == "table-full"


def test_a_synced_entry_past_the_limit_raises_table_full():
    d, svc = director_with_service(1, drop_entry=0)
    syn(d, svc, 1, 0.0)
    record = {
        "proto": 6,
        "caddr": 2,
        "cport": 1000,
        "vaddr": svc.addr,
        "vport": 80,
        "daddr": 0xC0A8000B,
        "dport": 80,
        "state": ESTABLISHED,
        "flags": 0,
        "timeout_s": 900,
    }
    with pytest.raises(TableFull):
        d.sync_in(record, 0.0)


def test_a_syn_flood_keeps_the_table_and_its_expiry_heap_bounded():
    """200,000 spoofed SYNs into a 5,000-entry table, 20,000 a second, with the defence timer
    running: the table stays at its limit, the heap of timers within twice it (it used to
    keep every removed connection alive until its 60 s timer), and a real client's SYN in the
    middle of it still gets its entry."""
    d, svc = director_with_service(5000)
    rng = random.Random(7)
    client = None
    for i in range(200_000):
        now = i / 20_000
        syn(d, svc, 0x64400000 + rng.randrange(1 << 22), now)
        if i == 150_000:
            client = syn(d, svc, 0x0A00010B, now)
        if i % 20_000 == 0:
            d.expire(now)
            d.tick(now)
        assert len(d.conns) <= 5000
    assert client is not None
    assert len(d.conns._heap) <= 2 * len(d.conns) + 1024
    assert d.defense.drops["evicted"] > 100_000 and "table_full" not in d.defense.drops


def test_memory_estimate_grows_with_the_limit():
    assert memory_needed_bytes(2_000_000) > memory_needed_bytes(1_000_000) > 500 << 20
