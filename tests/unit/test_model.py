"""The Director: control operations with the kernel's checks, scheduling new connections,
persistence templates, deleted real servers, counters and connection sync."""

import errno

import pytest

from testbed.director.conntable import (
    ESTABLISHED,
    F_NOOUTPUT,
    INPUT,
    TH_ACK,
    TH_SYN,
)
from testbed.director.model import (
    DestSpec,
    Director,
    Fwd,
    IpvsError,
    Proto,
    ServiceSpec,
    int_to_ip,
    ip_to_int,
    service_key,
)

VIP = ip_to_int("10.0.0.100")
RS = [ip_to_int(f"10.0.0.{11 + i}") for i in range(4)]
CLIENT = ip_to_int("10.0.1.11")
TCP80 = service_key(Proto.TCP, VIP, 80)


def lab(scheduler="rr", persistent=False, netmask=0xFFFFFFFF, n=3, fwd=Fwd.DR):
    d = Director(seed=1)
    d.add_service(
        ServiceSpec(Proto.TCP, VIP, 80, scheduler=scheduler, persistent=persistent, netmask=netmask)
    )
    for rip in RS[:n]:
        d.add_dest(TCP80, DestSpec(rip, 80, fwd=fwd))
    return d


def connect(d, caddr=CLIENT, cport=40000, now=0.0, proto=Proto.TCP, vport=80):
    svc = d.find_service(proto, VIP, vport)
    return d.schedule_new(svc, proto, caddr, cport, VIP, vport, now)


def test_ip_helpers():
    assert ip_to_int("10.0.0.1") == 0x0A000001
    assert int_to_ip(0xC0A800FE) == "192.168.0.254"
    with pytest.raises(ValueError):
        ip_to_int("10.0.1")


def raises(err, message, fn, *args):
    with pytest.raises(IpvsError) as info:
        fn(*args)
    assert (info.value.errno, info.value.message) == (err, message)


def test_control_errors_are_worded_like_libipvs_and_change_nothing():
    d = lab()
    before = d.snapshot()
    other = service_key(Proto.TCP, VIP, 81)
    cases = [
        (errno.EEXIST, "Service already exists", d.add_service, ServiceSpec(6, VIP, 80)),
        (
            errno.ENOENT,
            "Scheduler or persistence engine not found",
            d.add_service,
            ServiceSpec(6, VIP, 81, scheduler="fastest"),
        ),
        (errno.ESRCH, "No such service", d.edit_service, ServiceSpec(6, VIP, 81)),
        (
            errno.ENOENT,
            "Scheduler or persistence engine not found",
            d.edit_service,
            ServiceSpec(6, VIP, 80, scheduler="fastest"),
        ),
        (errno.ESRCH, "No such service", d.del_service, other),
        (errno.ESRCH, "No such service", d.zero, other),
        (errno.ESRCH, "Service not defined", d.add_dest, other, DestSpec(RS[0], 80)),
        (errno.EEXIST, "Destination already exists", d.add_dest, TCP80, DestSpec(RS[0], 80)),
        (errno.ENOENT, "No such destination", d.edit_dest, TCP80, DestSpec(RS[3], 80)),
        (errno.ENOENT, "No such destination", d.del_dest, TCP80, RS[3], 80),
        (errno.ESRCH, "Service not defined", d.del_dest, other, RS[0], 80),
        (
            errno.ERANGE,
            "Numerical result out of range",
            d.add_dest,
            TCP80,
            DestSpec(RS[3], 80, weight=-1),
        ),
        (
            errno.ERANGE,
            "Numerical result out of range",
            d.edit_dest,
            TCP80,
            DestSpec(RS[0], 80, u_threshold=5, l_threshold=10),
        ),
        (
            errno.EINVAL,
            "Invalid operation.  Possibly wrong module version, address not unicast, ...",
            d.add_dest,
            TCP80,
            DestSpec(ip_to_int("224.0.0.18"), 80),
        ),
        (errno.EFAULT, "Bad address", d.add_service, ServiceSpec(1, VIP, 80)),
        (
            errno.EINVAL,
            "Invalid operation.  Possibly wrong module version, address not unicast, ...",
            d.add_service,
            ServiceSpec(6, VIP, 70000),
        ),
    ]
    for err, message, fn, *args in cases:
        raises(err, message, fn, *args)
        assert d.snapshot() == before, message


def test_find_service_order_fwmark_then_address_then_port_zero():
    d = Director(seed=1)
    plain = d.add_service(ServiceSpec(6, VIP, 80))
    mark = d.add_service(ServiceSpec(fwmark=7))
    zero = d.add_service(ServiceSpec(6, VIP, 0, persistent=True))
    assert d.find_service(6, VIP, 80) is plain
    assert d.find_service(6, VIP, 80, fwmark=7) is mark
    assert d.find_service(6, VIP, 80, fwmark=8) is plain
    assert d.find_service(6, VIP, 443) is zero
    assert d.find_service(17, VIP, 80) is None
    assert mark.key == (0, 0, 0, 7)


def test_schedule_new_counts_and_flags():
    d = lab(n=2)
    conn = connect(d)
    dest = conn.dest
    assert conn.daddr == dest.addr and conn.dport == 80
    assert conn.fwd is Fwd.DR and conn.flags & F_NOOUTPUT
    assert (dest.activeconns, dest.inactconns, dest.stats.conns) == (0, 1, 1)
    d.on_tcp_packet(conn, INPUT, TH_SYN, 0.0)
    d.on_tcp_packet(conn, INPUT, TH_ACK, 0.1)
    assert conn.state == ESTABLISHED and (dest.activeconns, dest.inactconns) == (1, 0)
    assert d.lookup_in(6, CLIENT, 40000, VIP, 80) is conn
    d.refresh_stats()
    assert d.service(TCP80).stats.conns == 1 and d.stats.conns == 1


def test_nat_connections_keep_the_real_server_port():
    d = Director(seed=1)
    d.add_service(ServiceSpec(6, VIP, 80))
    d.add_dest(TCP80, DestSpec(RS[0], 8080, fwd=Fwd.NAT))
    conn = connect(d)
    assert conn.dport == 8080 and not conn.flags & F_NOOUTPUT
    assert d.lookup_out(6, RS[0], 8080, CLIENT, 40000) is conn


def test_no_usable_server_is_a_counted_drop():
    d = lab(n=1)
    d.edit_dest(TCP80, DestSpec(RS[0], 80, weight=0))
    assert connect(d) is None
    assert d.drops["no_dest"] == 1


def test_persistence_pins_a_client_until_the_template_expires():
    d = lab(persistent=True)
    first = connect(d, cport=1000, now=0.0)
    for port in range(1001, 1010):
        assert connect(d, cport=port, now=1.0).dest is first.dest
    other = connect(d, caddr=CLIENT + 1, cport=1000, now=1.0)
    assert other.dest is not first.dest  # rr moves on for a new client
    template = first.control
    assert template.is_template and template.state_name == "NONE" and template.cport == 0
    assert first.dest.persistconns == 1 and template.n_control == 10
    # the connections go; the template lives its 360 s from last use, then a new pick
    for conn in [c for c in d.conns if not c.is_template]:
        d.conns.remove(conn)
    assert d.expire(360.9) == 0
    assert d.expire(361.0) == 2  # both clients' templates
    assert first.dest.persistconns == 0
    assert connect(d, cport=2000, now=362.0).dest is not first.dest


def test_persistence_netmask_groups_clients():
    d = lab(persistent=True, netmask=ip_to_int("255.255.255.0"))
    dest = connect(d, caddr=ip_to_int("10.0.1.11")).dest
    for host in range(12, 40):
        assert connect(d, caddr=ip_to_int(f"10.0.1.{host}")).dest is dest
    assert connect(d, caddr=ip_to_int("10.0.2.11")).dest is not dest
    templates = [c for c in d.conns if c.is_template]
    assert sorted(int_to_ip(t.caddr) for t in templates) == ["10.0.1.0", "10.0.2.0"]


def test_quiesced_server_keeps_its_persistent_clients_unless_asked():
    d = lab(persistent=True)
    dest = connect(d, cport=1).dest
    d.edit_dest(TCP80, DestSpec(dest.addr, 80, weight=0))
    assert connect(d, cport=2).dest is dest  # the kernel's default
    d.expire_quiescent_template = True
    assert connect(d, cport=3).dest is not dest


def test_fwmark_and_port_zero_templates():
    d = Director(seed=1)
    d.add_service(ServiceSpec(fwmark=3, persistent=True, scheduler="rr"))
    d.add_dest(service_key(0, 0, 0, 3), DestSpec(RS[0], 0))
    svc = d.find_service(6, VIP, 443, fwmark=3)
    conn = d.schedule_new(svc, 6, CLIENT, 5000, VIP, 443, 0.0)
    assert conn.dport == 443  # port 0 real server: the packet's port
    template = conn.control
    assert (template.proto, template.vaddr, template.vport, template.dport) == (0, 3, 0, 0)
    udp = d.schedule_new(svc, 17, CLIENT, 5001, VIP, 53, 0.0)
    assert udp.control is template


def test_deleted_real_server_connections_stay_and_revive():
    d = lab(n=1)
    conn = connect(d)
    dest = conn.dest
    d.del_dest(TCP80, RS[0], 80)
    assert not dest.available and d.lookup_in(6, CLIENT, 40000, VIP, 80) is conn
    assert connect(d, cport=40001) is None
    again = d.add_dest(TCP80, DestSpec(RS[0], 80, weight=2))
    assert again is dest and dest.available and dest.inactconns == 1
    d.del_service(TCP80)
    assert not dest.available and len(d.conns) == 1


def test_edit_service_switches_scheduler_and_persistence():
    d = lab(scheduler="rr")
    d.edit_service(ServiceSpec(6, VIP, 80, scheduler="wrr", persistent=True, timeout_s=60))
    svc = d.service(TCP80)
    assert svc.sched_name == "wrr" and svc.persistent and svc.timeout_s == 60
    assert connect(d).control.timeout == 60


def test_zero_one_service_keeps_the_total():
    d = lab(n=1)
    d.add_service(ServiceSpec(17, VIP, 53))
    d.add_dest(service_key(17, VIP, 53), DestSpec(RS[1], 53))
    connect(d)
    connect(d, proto=Proto.UDP, vport=53)
    d.zero(TCP80)
    d.refresh_stats()
    assert d.service(TCP80).stats.conns == 0 and d.stats.conns == 2
    d.zero()
    d.refresh_stats()
    assert d.stats.conns == 0


def test_timeouts_set_and_zero_means_unchanged():
    d = Director()
    assert d.timeouts() == (900, 120, 300)
    d.set_timeouts(60, 0, 30)
    assert d.timeouts() == (60, 120, 30)
    with pytest.raises(IpvsError):
        d.set_timeouts(-1, 0, 0)
    assert d.timeouts() == (60, 120, 30)


def test_sync_round_trip_to_a_backup():
    master = lab(n=2, fwd=Fwd.NAT)
    conn = connect(master)
    master.on_tcp_packet(conn, INPUT, TH_SYN, 0.0)
    master.on_tcp_packet(conn, INPUT, TH_ACK, 1.0)
    backup = lab(n=2, fwd=Fwd.NAT)
    copy = backup.sync_in(conn.to_record(2.0), now=50.0)
    assert backup.lookup_in(6, CLIENT, 40000, VIP, 80) is copy
    assert copy.state == ESTABLISHED and copy.expires == 950.0
    assert copy.dest.addr == conn.daddr and copy.dest.activeconns == 1
    assert copy.dest.stats.conns == 0  # synced connections are not counted as new
    record = conn.to_record(2.0)
    record["state"] = 4  # FIN_WAIT: now inactive on the backup
    assert backup.sync_in(record, now=60.0) is copy
    assert (copy.dest.activeconns, copy.dest.inactconns) == (0, 1)
    record["vport"] = 81
    assert backup.sync_in(record, now=60.0) is None
    assert backup.drops["sync_no_service"] == 1


def test_config_copy_has_the_same_configuration():
    d = lab(scheduler="wlc", persistent=True)
    d.add_service(ServiceSpec(fwmark=9, scheduler="sh", sched_flags=0x10))
    d.add_dest(service_key(0, 0, 0, 9), DestSpec(RS[3], 0, weight=4, fwd=Fwd.TUN))
    d.set_timeouts(100, 20, 10)
    connect(d)
    twin = d.config_copy()
    assert twin.snapshot()[0] == d.snapshot()[0]
    assert [s.spec() for s in twin.services()] == [s.spec() for s in d.services()]
    assert [[x.spec() for x in s.dests] for s in twin.services()] == [
        [x.spec() for x in s.dests] for s in d.services()
    ]
    assert len(twin.conns) == 0


def test_a_template_is_assured_once_a_connection_it_pins_is_established():
    """ip_vs_control_assure_ct(): NONE until then, ASSURED after (as kernel IPVS lists it)."""
    d = lab(persistent=True)
    conn = connect(d, now=0.0)
    d.on_tcp_packet(conn, INPUT, TH_SYN, 0.0)
    assert conn.control.state_name == "NONE"
    d.on_tcp_packet(conn, INPUT, TH_ACK, 0.1)
    assert conn.state == ESTABLISHED and conn.control.state_name == "ASSURED"


def test_a_udp_template_is_assured_by_a_reply():
    from testbed.director.conntable import OUTPUT

    d = Director(seed=1)
    key = service_key(Proto.UDP, VIP, 53)
    d.add_service(ServiceSpec(Proto.UDP, VIP, 53, scheduler="rr", persistent=True))
    d.add_dest(key, DestSpec(RS[0], 53, fwd=Fwd.NAT))
    conn = connect(d, proto=Proto.UDP, vport=53)
    d.on_udp_packet(conn, 0.0)
    assert conn.control.state_name == "NONE"
    d.on_udp_packet(conn, 0.1, OUTPUT)
    assert conn.control.state_name == "ASSURED"
