"""Routes and the ARP cache (neighbours.py): longest-prefix match, gateways, /proc/net/route
input, the per-destination hop cache, ARP requests, the unresolved queue, learning and
refresh. Frames sent are re-parsed with os-ken."""

import random

import pytest
from os_ken.lib.packet import arp, ethernet

from testbed.director.neighbours import (
    ARP_REFRESH_S,
    ARP_RETRY_S,
    QUEUE_FRAMES_MAX,
    Neighbours,
    Route,
    routes_from_proc,
)
from tests.unit.fakes import FakePort, ip, mac, parse, route

A = FakePort("d1-eth0", "02:00:00:00:00:02", "10.0.0.2")
B = FakePort("d1-eth1", "02:00:00:00:02:02", "192.168.0.2")
SERVER_MAC = mac("02:00:00:00:02:0b")


def neighbours(*routes: Route) -> Neighbours:
    for port in (A, B):
        port.take()
    return Neighbours({A.name: A, B.name: B}, list(routes))


def frame(n: int = 0) -> bytearray:
    return bytearray(bytes(12) + b"\x08\x00" + bytes([n]) * 46)


# --- routes --------------------------------------------------------------------------------


def test_longest_prefix_wins_whatever_the_order():
    """The most specific route matches, regardless of the order routes were given in."""
    routes = [
        route("10.0.0.0/8", A.name),
        route("10.1.0.0/16", B.name, "192.168.0.1"),
        route("10.1.2.0/24", B.name),
        route("10.1.2.3/32", A.name),
        route("0.0.0.0/0", A.name, "10.0.0.1"),
    ]
    for seed in range(5):
        random.Random(seed).shuffle(routes)
        n = neighbours(*routes)
        assert n.route(ip("10.9.9.9")) == (A, ip("10.9.9.9"))
        assert n.route(ip("10.1.9.9")) == (B, ip("192.168.0.1"))
        assert n.route(ip("10.1.2.9")) == (B, ip("10.1.2.9"))
        assert n.route(ip("10.1.2.3")) == (A, ip("10.1.2.3"))
        assert n.route(ip("8.8.8.8")) == (A, ip("10.0.0.1"))


def test_no_route_means_no_hop():
    n = neighbours(route("10.0.0.0/24", A.name))
    assert n.route(ip("10.0.1.1")) is None
    assert n.hop_for(ip("10.0.1.1")) is None


def test_destinations_behind_one_gateway_share_its_neighbour_entry():
    """The next hop of a gateway route is the gateway: one entry, one ARP request, one
    queue for every destination behind it."""
    n = neighbours(route("10.0.0.0/24", A.name), route("0.0.0.0/0", A.name, "10.0.0.1"))
    hop = n.hop_for(ip("10.0.2.21"))
    assert hop is n.hop_for(ip("172.16.0.1"))
    assert (hop.ip, hop.port) == (ip("10.0.0.1"), A)
    assert n.hop_for(ip("10.0.0.11")).ip == ip("10.0.0.11")
    n.send_or_queue(hop, frame(1), 0.0)
    n.send_or_queue(n.hop_for(ip("172.16.0.1")), frame(2), 0.1)
    assert n.arp_sent == 1
    n.learn(ip("10.0.0.1"), mac("02:00:00:00:00:01"), A, 0.2)
    assert [f[14] for f in A.take()[1:]] == [1, 2]


def test_set_routes_invalidates_the_hop_cache():
    """A destination whose route moves to another port gets a neighbour entry there."""
    n = neighbours(route("10.1.0.0/16", A.name, "10.0.0.1"))
    before = n.hop_for(ip("10.1.0.5"))
    assert before.port is A
    n.set_routes([route("10.1.0.0/16", B.name, "192.168.0.1")])
    after = n.hop_for(ip("10.1.0.5"))
    assert (after.port, after.ip) == (B, ip("192.168.0.1"))
    n.set_routes([])
    assert n.hop_for(ip("10.1.0.5")) is None


def test_a_next_hop_that_moves_port_gets_a_new_entry():
    """Same next-hop address, other port: the old MAC (learnt on the old port) is not used."""
    n = neighbours(route("10.0.0.0/24", A.name))
    old = n.hop_for(ip("10.0.0.11"))
    n.learn(ip("10.0.0.11"), SERVER_MAC, A, 0.0)
    n.set_routes([route("10.0.0.0/24", B.name)])
    new = n.hop_for(ip("10.0.0.11"))
    assert new is not old and new.port is B and new.mac is None


PROC_ROUTE = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "d1-eth0\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    "d1-eth0\t0500000A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n"
    "d1-eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    "d1-eth1\t0000090A\t0100A8C0\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    "other\t00002C0A\t01001FAC\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    "*\t0000420A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    "*\t00004D0A\t00000000\t0201\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    "*\t0000580A\t00000000\t0201\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    "other\t00001FAC\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    "d1-eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
)
"""/proc/net/route of a namespace (x86) with: a default route, a host route, the connected
/24s, a gateway route on each of d1-eth1 and another device, and blackhole, unreachable and
prohibit routes (device "*")."""


def test_routes_from_proc_reads_the_main_table():
    """default, connected, gateway and host routes on our ports; other devices and
    blackhole/unreachable/prohibit routes are left out."""
    routes = routes_from_proc(PROC_ROUTE, {"d1-eth0", "d1-eth1"})
    assert routes == [
        Route(0, 0, "d1-eth0", ip("10.0.1.1")),
        Route(ip("10.0.0.5"), 32, "d1-eth0"),
        Route(ip("10.0.1.0"), 24, "d1-eth0"),
        Route(ip("10.9.0.0"), 16, "d1-eth1", ip("192.168.0.1")),
        Route(ip("192.168.0.0"), 24, "d1-eth1"),
    ]
    n = Neighbours({"d1-eth0": A, "d1-eth1": B}, routes)
    assert n.route(ip("8.8.8.8")) == (A, ip("10.0.1.1"))
    assert n.route(ip("10.0.0.5")) == (A, ip("10.0.0.5"))
    assert n.route(ip("10.9.1.1")) == (B, ip("192.168.0.1"))
    assert routes_from_proc(PROC_ROUTE, {"d1-eth1"}) == routes[3:]
    assert routes_from_proc(PROC_ROUTE.splitlines()[0], {"d1-eth0"}) == []


def test_an_unreadable_route_file_is_an_error_not_a_guess():
    with pytest.raises(ValueError):
        routes_from_proc(PROC_ROUTE + "d1-eth0\t0000\n", {"d1-eth0"})
    with pytest.raises(ValueError):
        routes_from_proc(PROC_ROUTE + "d1-eth0\tzz\t0\t0001\t0\t0\t0\t0\n", {"d1-eth0"})


def test_route_masks():
    assert Route(0, 0, "x").mask == 0
    assert Route(0, 24, "x").mask == 0xFFFFFF00
    assert Route(0, 32, "x").mask == 0xFFFFFFFF


# --- ARP -----------------------------------------------------------------------------------


def test_known_hop_gets_the_frame_now_with_its_macs():
    """With the MAC known, the frame goes out the hop's port, to the MAC, from the port's."""
    n = neighbours(route("192.168.0.0/24", B.name))
    hop = n.hop_for(ip("192.168.0.11"))
    n.learn(ip("192.168.0.11"), SERVER_MAC, B, 0.0)
    assert n.send_or_queue(hop, frame(7), 1.0) is True
    [out] = B.take()
    assert out[:6] == SERVER_MAC and out[6:12] == B.mac and out[14:] == bytes([7]) * 46
    assert not A.sent and n.arp_sent == 0


def test_unresolved_hop_asks_once_a_second_at_most():
    """The first frame asks at once; later frames within ARP_RETRY_S do not ask again."""
    n = neighbours(route("192.168.0.0/24", B.name))
    hop = n.hop_for(ip("192.168.0.11"))
    asked = []
    for now in (10.0, 10.2, 10.99, 10.0 + ARP_RETRY_S, 10.5 + ARP_RETRY_S, 12.0 + ARP_RETRY_S):
        assert n.send_or_queue(hop, frame(), now) is False
        asked.append(len(B.take()))
    assert asked == [1, 0, 0, 1, 0, 1]
    assert n.arp_sent == 3


def test_arp_request_is_a_broadcast_who_has_from_the_port():
    n = neighbours(route("192.168.0.0/24", B.name))
    n.send_or_queue(n.hop_for(ip("192.168.0.11")), frame(), 0.0)
    [request] = B.take()
    p = parse(request)
    eth, a = p.get_protocol(ethernet.ethernet), p.get_protocol(arp.arp)
    assert (eth.dst, eth.src, eth.ethertype) == ("ff:ff:ff:ff:ff:ff", B.mac_text, 0x0806)
    assert (a.opcode, a.src_mac, a.src_ip, a.dst_ip) == (1, B.mac_text, B.ip_text, "192.168.0.11")


def test_queue_holds_a_few_frames_and_releases_them_in_order():
    """Up to QUEUE_FRAMES_MAX copies wait (later ones are counted and dropped); the answer
    sends them in arrival order with the learnt MAC; the caller's buffer may be reused."""
    n = neighbours(route("192.168.0.0/24", B.name))
    hop = n.hop_for(ip("192.168.0.11"))
    buf = frame()
    for i in range(QUEUE_FRAMES_MAX + 4):
        buf[14] = i
        n.send_or_queue(hop, buf, 0.0)
    assert n.queue_dropped == 4
    B.take()
    n.learn(ip("192.168.0.11"), SERVER_MAC, B, 0.5)
    released = B.take()
    assert [f[14] for f in released] == list(range(QUEUE_FRAMES_MAX))
    assert all(f[:6] == SERVER_MAC and f[6:12] == B.mac for f in released)
    assert hop.queue == []


def test_learning_only_for_hops_in_use_and_on_their_port():
    """ARP about addresses we never route to is not cached; an answer arriving on another
    port than the hop's does not resolve it."""
    n = neighbours(route("192.168.0.0/24", B.name))
    n.learn(ip("192.168.0.99"), SERVER_MAC, B, 0.0)
    assert ip("192.168.0.99") not in n.by_ip
    assert n.hop_for(ip("192.168.0.99")).mac is None
    hop = n.hop_for(ip("192.168.0.11"))
    n.send_or_queue(hop, frame(), 0.0)
    n.learn(ip("192.168.0.11"), SERVER_MAC, A, 0.1)
    assert hop.mac is None and len(hop.queue) == 1
    n.learn(ip("192.168.0.11"), SERVER_MAC, B, 0.2)
    assert hop.mac == SERVER_MAC and hop.confirmed_at == 0.2


def test_a_new_mac_replaces_the_old_one():
    """A VIP that failed over answers from another MAC: frames follow the new one."""
    n = neighbours(route("10.0.0.0/24", A.name))
    hop = n.hop_for(ip("10.0.0.1"))
    n.learn(ip("10.0.0.1"), mac("02:00:00:00:00:01"), A, 0.0)
    n.learn(ip("10.0.0.1"), mac("02:00:00:00:00:99"), A, 1.0)
    n.send_or_queue(hop, frame(), 2.0)
    assert A.take()[0][:6] == mac("02:00:00:00:00:99")


def test_refresh_re_asks_only_hops_not_confirmed_lately():
    """refresh() asks again for known hops confirmed ARP_REFRESH_S ago or more (keeping
    their MAC meanwhile); fresh and unresolved hops are left alone."""
    n = neighbours(route("192.168.0.0/24", B.name))
    stale, fresh = n.hop_for(ip("192.168.0.11")), n.hop_for(ip("192.168.0.12"))
    n.hop_for(ip("192.168.0.13"))  # never resolved
    n.learn(stale.ip, SERVER_MAC, B, 0.0)
    n.learn(fresh.ip, mac("02:00:00:00:02:0c"), B, 20.0)
    n.refresh(ARP_REFRESH_S - 1)
    assert B.take() == []
    n.refresh(ARP_REFRESH_S)
    [request] = B.take()
    assert parse(request).get_protocol(arp.arp).dst_ip == "192.168.0.11"
    assert stale.mac == SERVER_MAC
    n.refresh(ARP_REFRESH_S + 0.5)  # asked half a second ago: not again yet
    assert B.take() == []
    n.learn(stale.ip, SERVER_MAC, B, ARP_REFRESH_S + 0.6)
    n.refresh(50.0)
    [request] = B.take()
    assert parse(request).get_protocol(arp.arp).dst_ip == "192.168.0.12"


def test_frames_waiting_for_a_silent_hop_are_dropped_after_three_seconds():
    """The refresh timer asks again for a hop with frames waiting and gives up on them after
    QUEUE_GIVE_UP_S, counting them as dropped, as the kernel's unresolved queue does."""
    from testbed.director.neighbours import QUEUE_GIVE_UP_S

    port = FakePort("p0", "02:00:00:00:00:01", "10.0.0.2")
    nb = Neighbours({"p0": port}, [Route(0x0A000000, 24, "p0")])
    hop = nb.hop_for(0x0A00000B)
    nb.send_or_queue(hop, bytearray(60), now=10.0)
    nb.send_or_queue(hop, bytearray(60), now=10.5)
    asked = len(port.sent)
    nb.refresh(11.2)
    assert len(port.sent) == asked + 1  # asked again while frames wait
    nb.refresh(10.0 + QUEUE_GIVE_UP_S + 0.1)
    assert hop.queue == [] and nb.queue_dropped == 2
