"""The connection table: lookups both ways, the TCP state machine, counts, expiry cost."""

from dataclasses import dataclass

import pytest

from testbed.director.conntable import (
    CLOSE,
    CLOSE_WAIT,
    ESTABLISHED,
    F_DROUTE,
    F_INACTIVE,
    F_MASQ,
    F_NOOUTPUT,
    F_TEMPLATE,
    FIN_WAIT,
    INPUT,
    NONE,
    OUTPUT,
    SYN_RECV,
    TH_ACK,
    TH_FIN,
    TH_RST,
    TH_SYN,
    TIME_WAIT,
    Connection,
    ConnTable,
)

CIP, VIP, RIP = 0x0A00010B, 0x0A000064, 0xC0A8000B  # 10.0.1.11, 10.0.0.100, 192.168.0.11


@dataclass(eq=False)
class FakeDest:
    activeconns: int = 0
    inactconns: int = 0
    persistconns: int = 0
    u_threshold: int = 0
    l_threshold: int = 0
    overloaded: bool = False


def new_conn(table, now=0.0, cport=40000, flags=F_MASQ | F_INACTIVE, proto=6, dest=None, timeout=2):
    conn = Connection(
        proto,
        CIP,
        cport,
        VIP,
        80,
        RIP,
        8080,
        flags=flags,
        timeout=timeout,
        dest=dest if dest is not None else FakeDest(),
    )
    table.insert(conn, now)
    return conn


def test_inbound_and_nat_reply_lookups_find_the_same_entry():
    table = ConnTable(12, seed=1)
    conn = new_conn(table)
    assert table.lookup_in(6, CIP, 40000, VIP, 80) is conn
    # the reply goes from the real server to the client
    assert table.lookup_out(6, RIP, 8080, CIP, 40000) is conn
    assert table.lookup_in(6, CIP, 40001, VIP, 80) is None
    assert table.lookup_in(6, CIP, 40000, VIP, 81) is None
    assert table.lookup_in(17, CIP, 40000, VIP, 80) is None
    assert table.lookup_out(6, RIP, 80, CIP, 40000) is None
    assert table.lookup_out(6, VIP, 8080, CIP, 40000) is None


def test_connections_share_buckets_and_chains_grow_with_load():
    table = ConnTable(8, seed=3)  # 256 buckets
    conns = [new_conn(table, cport=1024 + i) for i in range(2048)]
    assert len(table) == 2048
    stats = table.chain_stats()
    assert stats["size"] == 256 and stats["entries"] == 2048
    assert stats["used_buckets"] == 256 and stats["max_chain"] >= 8
    assert sum(n * count for n, count in table.chain_histogram().items()) == 2048
    assert all(table.lookup_in(6, CIP, c.cport, VIP, 80) is c for c in conns)
    assert set(table) == set(conns)


def test_table_bits_are_bounded_like_ip_vs_conn_tab_bits():
    for bits in (7, 21):
        with pytest.raises(ValueError):
            ConnTable(bits)
    assert ConnTable(20).size == 1 << 20


def test_rehash_moves_every_entry_and_shortens_the_chains():
    table = ConnTable(8, seed=3)
    conns = [new_conn(table, cport=1024 + i) for i in range(4096)]
    long_chains = table.chain_stats()["max_chain"]
    table.rehash(16)
    assert table.size == 1 << 16 and len(table) == 4096
    assert table.chain_stats()["max_chain"] < long_chains
    assert all(table.lookup_in(6, CIP, c.cport, VIP, 80) is c for c in conns)
    assert all(table.lookup_out(6, RIP, 8080, CIP, c.cport) is c for c in conns)
    table.remove(conns[0])  # entries stay removable from their new bucket
    assert len(table) == 4095 and table.lookup_in(6, CIP, 1024, VIP, 80) is None
    assert table.expire(10.0) == 4095  # and expire from the same heap
    with pytest.raises(ValueError):
        table.rehash(21)


def test_parked_entries_leave_the_lookups_and_come_back_unchanged():
    table = ConnTable(10, seed=5)
    filler = [new_conn(table, cport=2000 + i) for i in range(3000)]
    real = new_conn(table, cport=40000)
    before = {id(c): c.dest for c in filler}
    assert table.park(lambda c: c.cport >= 40000) == 3000
    assert len(table) == 1 and table.lookup_in(6, CIP, 2000, VIP, 80) is None
    assert table.lookup_in(6, CIP, 40000, VIP, 80) is real
    newer = new_conn(table, cport=40001)  # made while parked: kept by unpark
    with pytest.raises(ValueError):
        table.park(lambda c: True)
    with pytest.raises(ValueError):
        table.rehash(12)
    table.remove(filler[0])  # a parked entry can still go
    assert table.unpark() == 2999 and len(table) == 3001
    assert all(table.lookup_in(6, CIP, c.cport, VIP, 80) is c for c in filler[1:])
    assert table.lookup_in(6, CIP, 40001, VIP, 80) is newer
    assert all(c.dest is before[id(c)] for c in filler)
    assert table.unpark() == 0


def test_templates_are_not_found_by_packet_lookups():
    table = ConnTable(seed=1)
    tpl = Connection(6, CIP, 0, VIP, 80, RIP, 80, flags=F_TEMPLATE, timeout=300)
    table.insert(tpl, 0.0)
    assert table.lookup_in(6, CIP, 0, VIP, 80) is None
    assert table.lookup_template(6, CIP, VIP, 80) is tpl
    assert tpl.state_name == "NONE"


def flow(table, conn, steps, now=1.0):
    """Apply (direction, flags) steps; return the state names after each."""
    seen = []
    for direction, flags in steps:
        table.on_tcp_packet(conn, direction, flags, now)
        seen.append(conn.state_name)
    return seen


def test_nat_handshake_and_client_close():
    table = ConnTable(seed=1)
    conn = new_conn(table)
    steps = [
        (INPUT, TH_SYN),
        (OUTPUT, TH_SYN | TH_ACK),
        (INPUT, TH_ACK),
        (INPUT, TH_FIN | TH_ACK),
        (OUTPUT, TH_ACK),
        (OUTPUT, TH_FIN | TH_ACK),
        (INPUT, TH_ACK),
    ]
    assert flow(table, conn, steps) == [
        "SYN_RECV",
        "SYN_RECV",
        "ESTABLISHED",
        "CLOSE_WAIT",
        "CLOSE_WAIT",
        "TIME_WAIT",
        "TIME_WAIT",
    ]
    assert conn.timeout == 120 and conn.expires == 121.0


def test_nat_server_closes_first():
    table = ConnTable(seed=1)
    conn = new_conn(table)
    flow(table, conn, [(INPUT, TH_SYN), (INPUT, TH_ACK)])
    assert flow(
        table, conn, [(OUTPUT, TH_FIN | TH_ACK), (INPUT, TH_ACK), (INPUT, TH_FIN | TH_ACK)]
    ) == ["FIN_WAIT", "FIN_WAIT", "TIME_WAIT"]


def test_dr_connections_use_the_input_only_table():
    table = ConnTable(seed=1)
    conn = new_conn(table, flags=F_DROUTE | F_INACTIVE | F_NOOUTPUT)
    steps = [
        (INPUT, TH_SYN),
        (INPUT, TH_ACK),
        (INPUT, TH_ACK | 0x08),
        (INPUT, TH_FIN | TH_ACK),
        (INPUT, TH_ACK),
    ]
    # INPUT would take ESTABLISHED + FIN to CLOSE_WAIT; INPUT_ONLY takes it to FIN_WAIT
    assert flow(table, conn, steps) == [
        "SYN_RECV",
        "ESTABLISHED",
        "ESTABLISHED",
        "FIN_WAIT",
        "FIN_WAIT",
    ]
    assert conn.timeout == 120
    table.on_tcp_packet(conn, INPUT, TH_RST, 2.0)
    assert conn.state == CLOSE and conn.expires == 12.0


def test_an_output_packet_clears_nooutput():
    table = ConnTable(seed=1)
    conn = new_conn(table, flags=F_DROUTE | F_INACTIVE | F_NOOUTPUT)
    flow(table, conn, [(INPUT, TH_SYN), (INPUT, TH_ACK)])
    table.on_tcp_packet(conn, OUTPUT, TH_ACK, 1.0)
    assert not conn.flags & F_NOOUTPUT
    table.on_tcp_packet(conn, INPUT, TH_FIN, 1.0)
    assert conn.state == CLOSE_WAIT  # the INPUT table again


def test_rst_and_flagless_packets():
    table = ConnTable(seed=1)
    conn = new_conn(table)
    flow(table, conn, [(INPUT, TH_SYN), (INPUT, TH_ACK)])
    assert flow(table, conn, [(INPUT, TH_RST | TH_ACK)]) == ["CLOSE"]
    other = new_conn(table, cport=40001)
    flow(table, other, [(INPUT, TH_SYN)])
    assert flow(table, other, [(INPUT, 0)]) == ["CLOSE"]  # no syn/fin/ack/rst: CLOSE
    third = new_conn(table, cport=40002)
    assert flow(table, third, [(INPUT, TH_ACK)]) == ["ESTABLISHED"]  # NONE + ack (synced)


def test_active_and_inactive_counts_follow_the_state():
    table = ConnTable(seed=1)
    dest = FakeDest()
    conn = new_conn(table, dest=dest)
    assert (dest.activeconns, dest.inactconns) == (0, 1)  # new connections start inactive
    table.on_tcp_packet(conn, INPUT, TH_SYN, 0.0)
    assert (dest.activeconns, dest.inactconns) == (0, 1)
    table.on_tcp_packet(conn, INPUT, TH_ACK, 0.0)
    assert (dest.activeconns, dest.inactconns) == (1, 0)
    assert conn.active
    table.on_tcp_packet(conn, INPUT, TH_FIN, 0.0)
    assert (dest.activeconns, dest.inactconns) == (0, 1)
    udp = new_conn(table, proto=17, cport=5353, dest=dest, timeout=300)
    table.on_udp_packet(udp, 1.0)
    assert (dest.activeconns, dest.inactconns) == (0, 2)
    assert udp.state_name == "UDP"
    table.remove(conn)
    table.remove(udp)
    table.remove(udp)  # removing twice is harmless
    assert (dest.activeconns, dest.inactconns) == (0, 0)
    assert len(table) == 0


def test_templates_count_as_persistent_and_overload_thresholds():
    table = ConnTable(seed=1)
    dest = FakeDest(u_threshold=4)
    tpl = Connection(6, CIP, 0, VIP, 80, RIP, 80, flags=F_TEMPLATE, timeout=300, dest=dest)
    table.insert(tpl, 0.0)
    assert dest.persistconns == 1 and not dest.overloaded
    conns = [new_conn(table, dest=dest, cport=port) for port in range(1, 5)]
    assert dest.overloaded  # 4 connections >= u_threshold (templates do not count)
    table.remove(conns[0])
    assert dest.overloaded  # hysteresis: clears only below 3/4 of u_threshold
    table.remove(conns[1])
    assert not dest.overloaded
    table.remove(tpl)
    assert dest.persistconns == 0


def test_expiry_with_a_fake_clock():
    table = ConnTable(seed=1)
    conn = new_conn(table, now=100.0)
    table.on_tcp_packet(conn, INPUT, TH_SYN, 100.0)  # SYN_RECV: 60 s
    assert table.expire(159.9) == 0
    table.on_tcp_packet(conn, INPUT, TH_ACK, 150.0)  # ESTABLISHED: 900 s from 150
    assert table.expire(160.0) == 0  # the old deadline passed, the entry was re-armed
    assert table.lookup_in(6, CIP, 40000, VIP, 80) is conn
    table.on_tcp_packet(conn, INPUT, TH_RST, 200.0)  # CLOSE: 10 s, earlier than armed
    assert table.expire(209.9) == 0
    assert table.expire(210.0) == 1
    assert table.lookup_in(6, CIP, 40000, VIP, 80) is None
    assert conn.dest.inactconns == 0


def test_timeouts_come_from_the_table_at_each_packet():
    table = ConnTable(seed=1)
    conn = new_conn(table)
    flow(table, conn, [(INPUT, TH_SYN), (INPUT, TH_ACK)])
    table.tcp_timeouts_s[ESTABLISHED] = 30
    table.on_tcp_packet(conn, INPUT, TH_ACK, 10.0)
    assert conn.expires == 40.0
    assert table.expire(39.0) == 0 and table.expire(40.0) == 1


def test_a_template_outlives_its_timer_while_it_pins_connections():
    table = ConnTable(seed=1)
    tpl = Connection(6, CIP, 0, VIP, 80, RIP, 80, flags=F_TEMPLATE, timeout=300, dest=FakeDest())
    table.insert(tpl, 0.0)
    conn = new_conn(table, timeout=900)
    conn.control = tpl
    tpl.n_control = 1
    assert table.expire(300.0) == 0 and tpl in set(table)
    assert tpl.expires == 600.0
    assert table.expire(900.0) == 1  # the connection; the template is released
    assert tpl.n_control == 0
    assert table.expire(1199.0) == 0
    assert table.expire(1200.0) == 1  # re-armed at 900 for its 300 s
    assert len(table) == 0


def test_expire_does_no_work_when_nothing_is_due_in_a_big_table():
    table = ConnTable(16, seed=1)
    for i in range(100_000):
        conn = Connection(
            6,
            CIP + (i >> 16),
            i & 0xFFFF,
            VIP,
            80,
            RIP,
            80,
            flags=F_INACTIVE,
            timeout=900,
            dest=FakeDest(),
        )
        table.insert(conn, 0.0)
    before = table.expire_work
    for now in range(0, 900, 10):
        assert table.expire(float(now)) == 0
    assert table.expire_work == before  # a peek at the heap top, no pops


def test_expire_work_follows_what_expires():
    table = ConnTable(16, seed=1)
    conns = [new_conn(table, cport=i, timeout=900) for i in range(50_000)]
    for conn in conns[:10]:
        table.on_tcp_packet(conn, INPUT, TH_RST, 0.0)  # CLOSE: 10 s
    before = table.expire_work
    assert table.expire(10.0) == 10
    assert table.expire_work - before == 10


def test_refresh_is_lazy_and_constant_time():
    table = ConnTable(seed=1)
    conn = new_conn(table, timeout=300, proto=17)
    heap_size = len(table._heap)
    for t in range(1, 1000):
        table.on_udp_packet(conn, float(t))
    assert len(table._heap) == heap_size  # refreshing later pushes nothing
    assert conn.expires == 999.0 + 300


def test_record_round_trip_fields():
    table = ConnTable(seed=1)
    conn = new_conn(table)
    table.on_tcp_packet(conn, INPUT, TH_SYN, 5.0)
    record = conn.to_record(10.0)
    assert record["state"] == SYN_RECV and record["timeout_s"] == 60
    assert record["expires_in_s"] == 55.0
    assert (record["caddr"], record["cport"], record["daddr"]) == (CIP, 40000, RIP)


def test_state_constants_are_the_kernel_numbering():
    assert (NONE, ESTABLISHED, SYN_RECV, FIN_WAIT, TIME_WAIT, CLOSE, CLOSE_WAIT) == (
        0,
        1,
        3,
        4,
        5,
        6,
        7,
    )


def test_the_expiry_heap_stays_within_twice_the_entries_and_keeps_parked_timers():
    """Entries removed before their timer leave stale heap items; past twice the entries the
    heap is rebuilt from the live (and parked) ones, so removed connections are freed and
    every remaining one still expires."""
    table = ConnTable(8, seed=5)
    parked = [new_conn(table, cport=2000 + i, timeout=30) for i in range(100)]
    table.park(lambda c: c.cport >= 40000)
    for i in range(5000):  # a flood: made, then removed before its timer
        conn = new_conn(table, now=1.0, cport=40000 + i % 20000, timeout=60)
        table.remove(conn)
        assert len(table._heap) <= 2 * (len(table) + 1 + len(parked)) + 1024  # +1: just removed
    assert table.heap_rebuilds > 0
    table.unpark()
    assert table.expire(100.0) == len(parked) and len(table) == 0
