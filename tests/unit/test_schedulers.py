"""The IPVS schedulers, on plain stand-in objects (they must not need the director's model)."""

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from testbed.director.schedulers import (
    SCHED_FLAG_1,
    SCHED_FLAG_2,
    SCHEDULERS,
    describe_sched_flags,
)


@dataclass(eq=False)
class FakeDest:
    name: str
    addr: int
    port: int = 80
    weight: int = 1
    last_weight: int = -1
    activeconns: int = 0
    inactconns: int = 0
    overloaded: bool = False
    available: bool = True

    def __post_init__(self):
        if self.last_weight < 0:
            self.last_weight = self.weight


@dataclass(eq=False)
class FakeService:
    dests: list = field(default_factory=list)
    flags: int = 0


def service(*weights, flags=0):
    """Real servers rs1..rsN with the given weights, listed as IPVS lists them (newest
    first: rsN .. rs1)."""
    dests = [FakeDest(f"rs{i + 1}", 0x0A00000B + i, weight=w) for i, w in enumerate(weights)]
    return FakeService(list(reversed(dests)), flags)


def make(name, svc):
    sched = SCHEDULERS[name]()
    sched.update(svc)
    return sched


def pick(sched, svc, caddr=0x0A00010B, cport=40000, vaddr=0x0A000064, vport=80):
    return sched.schedule(svc, caddr, cport, vaddr, vport)


def names(sched, svc, n, **kw):
    return [pick(sched, svc, **kw).name for _ in range(n)]


def test_registry_has_the_ipvsadm_names():
    assert set(SCHEDULERS) == {"rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "mh", "lblc"}


def test_rr_starts_with_the_newest_and_spreads_evenly():
    svc = service(1, 1, 1)
    rr = make("rr", svc)
    assert names(rr, svc, 6) == ["rs3", "rs2", "rs1", "rs3", "rs2", "rs1"]
    counts = Counter(names(rr, svc, 3000))
    assert set(counts.values()) == {1000}


def test_rr_skips_quiesced_and_overloaded_and_survives_deletion():
    svc = service(1, 0, 1, 1)
    rr = make("rr", svc)
    svc.dests[0].overloaded = True  # rs4
    assert set(names(rr, svc, 10)) == {"rs1", "rs3"}
    last = pick(rr, svc)
    svc.dests.remove(last)
    rr.update(svc)
    assert pick(rr, svc).name in {"rs1", "rs3"}


def test_wrr_follows_the_kernel_gcd_stepping():
    svc = service(2, 3, 4)  # list order: rs3(4), rs2(3), rs1(2)
    wrr = make("wrr", svc)
    cycle = ["rs3", "rs3", "rs2", "rs3", "rs2", "rs1", "rs3", "rs2", "rs1"]
    assert names(wrr, svc, 18) == cycle + cycle


def test_wrr_ratios_equal_weight_ratios_over_a_long_run():
    svc = service(5, 3, 1, 0)
    wrr = make("wrr", svc)
    counts = Counter(names(wrr, svc, 9000))
    assert counts == {"rs1": 5000, "rs2": 3000, "rs3": 1000}


def test_wrr_with_a_common_divisor_and_a_weight_change():
    svc = service(4, 2)
    wrr = make("wrr", svc)
    assert Counter(names(wrr, svc, 600)) == {"rs1": 400, "rs2": 200}
    svc.dests[0].weight = 6  # rs2
    wrr.update(svc)
    assert Counter(names(wrr, svc, 1000)) == {"rs1": 400, "rs2": 600}


def test_lc_picks_the_least_loaded():
    svc = service(1, 1, 5)
    rs3, rs2, rs1 = svc.dests
    rs1.activeconns, rs2.activeconns, rs3.activeconns = 2, 1, 3
    rs2.inactconns = 300  # 1*256 + 300 = 556 > rs1's 512
    assert pick(make("lc", svc), svc).name == "rs1"
    rs1.weight = 0
    assert pick(make("lc", svc), svc).name == "rs2"


def test_wlc_divides_overhead_by_weight():
    svc = service(1, 3)
    rs2, rs1 = svc.dests
    rs1.activeconns, rs2.activeconns = 1, 2  # overheads 256 and 512; 256/1 > 512/3
    assert pick(make("wlc", svc), svc).name == "rs2"
    rs2.activeconns = 4  # 1024/3 > 256/1
    assert pick(make("wlc", svc), svc).name == "rs1"


def test_wlc_ties_go_to_the_first_in_list_order():
    svc = service(1, 1)
    assert pick(make("wlc", svc), svc).name == "rs2"


def test_sed_ignores_inactive_connections_and_adds_one():
    svc = service(1, 2)
    rs2, rs1 = svc.dests
    rs2.activeconns = 1  # sed: (1+1)/2 = 1 vs (0+1)/1 = 1: tie -> first (rs2)
    rs1.inactconns = 1000
    assert pick(make("sed", svc), svc).name == "rs2"
    assert pick(make("wlc", svc), svc).name == "rs2"
    rs2.activeconns = 2  # sed: 3/2 > 1/1 -> rs1, whatever rs1's inactive count
    assert pick(make("sed", svc), svc).name == "rs1"


def test_nq_prefers_an_idle_server_even_if_lighter():
    svc = service(1, 10)
    rs2, rs1 = svc.dests
    rs2.activeconns = 1  # sed would keep rs2 (2/10 < 1/1)
    assert pick(make("sed", svc), svc).name == "rs2"
    assert pick(make("nq", svc), svc).name == "rs1"  # idle
    rs1.activeconns = 1
    assert pick(make("nq", svc), svc).name == "rs2"


@pytest.mark.parametrize("name", ["rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "mh", "lblc"])
def test_weight_zero_is_never_chosen(name):
    rnd = random.Random(7)
    svc = service(0, 3, 0, 1, 2)
    sched = make(name, svc)
    for _ in range(2000):
        for d in svc.dests:
            d.activeconns, d.inactconns = rnd.randrange(5), rnd.randrange(5)
        dest = pick(
            sched,
            svc,
            caddr=rnd.getrandbits(32),
            cport=rnd.randrange(65536),
            vaddr=rnd.getrandbits(32),
        )
        assert dest is None or dest.weight > 0


@pytest.mark.parametrize("name", ["rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "mh", "lblc"])
def test_no_usable_server_gives_none(name):
    svc = service(0, 0)
    assert pick(make(name, svc), svc) is None
    empty = FakeService()
    assert pick(make(name, empty), empty) is None


@pytest.mark.parametrize("name", ["sh", "mh"])
def test_source_hashing_is_stable_and_spreads(name):
    svc = service(1, 1, 1, 1)
    sched = make(name, svc)
    rnd = random.Random(3)
    clients = [rnd.getrandbits(32) for _ in range(4000)]
    first = [pick(sched, svc, caddr=c) for c in clients]
    assert first == [pick(sched, svc, caddr=c, cport=1234) for c in clients]  # port ignored
    counts = Counter(d.name for d in first)
    assert len(counts) == 4 and min(counts.values()) > 700


def test_sh_port_flag_hashes_the_client_port_too():
    svc = service(1, 1, 1, flags=SCHED_FLAG_2)
    sh = make("sh", svc)
    chosen = {pick(sh, svc, cport=p).name for p in range(1000, 1100)}
    assert len(chosen) == 3


def test_sh_gives_buckets_by_weight():
    svc = service(3, 1)
    sh = make("sh", svc)
    counts = Counter(d.name for d in sh._buckets)
    assert counts == {"rs1": 192, "rs2": 64}


def test_sh_fallback_finds_another_server():
    svc = service(1, 1)
    sh = make("sh", svc)
    victim = pick(sh, svc)
    victim.weight = 0
    assert pick(sh, svc) is None  # the table is not rebuilt without an update
    svc.flags = SCHED_FLAG_1
    assert pick(sh, svc) not in (None, victim)


def test_dh_is_keyed_on_the_destination_address():
    svc = service(1, 1, 1)
    dh = make("dh", svc)
    rnd = random.Random(5)
    for _ in range(200):
        vaddr = rnd.getrandbits(32)
        d = pick(dh, svc, vaddr=vaddr, caddr=1)
        assert d is pick(dh, svc, vaddr=vaddr, caddr=rnd.getrandbits(32))
    svc.dests[0].available = False
    dead = svc.dests[0]
    assert all(pick(dh, svc, vaddr=v) is not dead for v in range(256))


def test_mh_removing_one_of_n_moves_about_its_share():
    n = 10
    svc = service(*[1] * n)
    mh = make("mh", svc)
    rnd = random.Random(11)
    clients = [rnd.getrandbits(32) for _ in range(20000)]
    before = {c: pick(mh, svc, caddr=c) for c in clients}
    removed = svc.dests[4]
    svc.dests.remove(removed)
    mh.update(svc)
    after = {c: pick(mh, svc, caddr=c) for c in clients}
    moved = [c for c in clients if before[c] is not after[c]]
    own = [c for c in clients if before[c] is removed]
    assert set(own) <= set(moved)  # every key of the removed server moved
    assert len(moved) <= len(clients) * (1 / n + 0.03)  # and not much else
    assert abs(len(own) - len(clients) / n) < len(clients) * 0.02


def test_mh_table_follows_weights():
    svc = service(1, 2, 5)
    mh = make("mh", svc)
    counts = Counter(d.name for d in mh._lookup)
    assert sum(counts.values()) == mh.TAB_SIZE
    assert abs(counts["rs3"] / counts["rs1"] - 5) < 0.2
    assert abs(counts["rs2"] / counts["rs1"] - 2) < 0.1


def test_mh_quiesce_keeps_the_table_and_fallback_reroutes():
    svc = service(1, 1, 1)
    mh = make("mh", svc)
    victim = svc.dests[1]
    keys = [c for c in range(5000) if pick(mh, svc, caddr=c) is victim]
    others = {c: pick(mh, svc, caddr=c) for c in range(5000) if c not in set(keys)}
    victim.weight = 0  # an edit keeps last_weight, so slots stay where they were
    mh.update(svc)
    assert all(pick(mh, svc, caddr=c) is None for c in keys)
    assert all(pick(mh, svc, caddr=c) is d for c, d in others.items())
    svc.flags = SCHED_FLAG_1
    assert all(pick(mh, svc, caddr=c) not in (None, victim) for c in keys)


def test_lblc_sticks_to_a_destination_until_overloaded():
    svc = service(2, 2)
    lblc = make("lblc", svc)
    first = pick(lblc, svc, vaddr=0xC0000201)
    other = next(d for d in svc.dests if d is not first)
    first.activeconns = 2  # not more than its weight: stay
    assert pick(lblc, svc, vaddr=0xC0000201) is first
    first.activeconns = 3  # more than its weight, and `other` has < weight/2
    assert pick(lblc, svc, vaddr=0xC0000201) is other
    assert pick(lblc, svc, vaddr=0xC0000201) is other  # the new choice is remembered


def test_sched_flag_names():
    assert describe_sched_flags("sh", SCHED_FLAG_1 | SCHED_FLAG_2) == ["sh-fallback", "sh-port"]
    assert describe_sched_flags("mh", SCHED_FLAG_2) == ["mh-port"]
    assert describe_sched_flags("rr", SCHED_FLAG_1) == ["flag-1"]


def test_mh_maps_clients_as_kernel_ipvs_does():
    """The kernel's hsiphash (SipHash-1-3 on 64-bit) with ip_vs_mh.c's fixed keys: six
    clients over 3:2:1 weights land where kernel IPVS 6.1 put them (tests/kernel, mh)."""
    from testbed.director import ipvsadm
    from testbed.director.model import Director, ip_to_int

    d = Director()
    assert ipvsadm.run(["-A", "-t", "10.0.1.100:80", "-s", "mh"], d).rc == 0
    for rs, weight in (("192.168.0.11", 3), ("192.168.0.12", 2), ("192.168.0.13", 1)):
        assert (
            ipvsadm.run(["-a", "-t", "10.0.1.100:80", "-r", f"{rs}:80", "-w", str(weight)], d).rc
            == 0
        )
    svc = d.services()[0]
    vip = ip_to_int("10.0.1.100")
    picks = [
        svc.scheduler.schedule(svc, ip_to_int(f"10.0.1.{11 + i}"), 20000 + i, vip, 80).addr & 255
        for i in range(6)
    ]
    assert picks == [12, 13, 13, 11, 11, 11]
