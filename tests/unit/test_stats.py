"""Counters and the 2-second rate estimator (ip_vs_est.c), against hand-computed figures."""

from testbed.director.model import DestSpec, Director, ServiceSpec, ip_to_int
from testbed.director.stats import Counters, RateEstimator, Stats


def test_estimator_matches_hand_computed_sequence():
    # 10 new connections, 1000 packets and 100000 bytes in every 2 s period.
    # Scaled rates per period: conns 10<<9 = 5120, pkts 1000<<9 = 512000,
    # bytes 100000<<4 = 1600000. avg += (rate - avg) >> 2 from avg = 0:
    #   cps avg: 1280, 2240, 2960, 3500  -> decoded (avg + 511) >> 10: 1, 2, 3, 3
    #   pps avg: 128000, 224000, 296000, 350000 -> 125, 219, 289, 342
    #   bps avg: 400000, 700000, 925000, 1093750 -> (avg + 15) >> 5: 12500, 21875, 28906, 34180
    s = Stats()
    cps, pps, bps = [], [], []
    for _ in range(4):
        s.conns += 10
        s.inpkts += 1000
        s.inbytes += 100000
        s.estimate()
        cps.append(s.cps)
        pps.append(s.inpps)
        bps.append(s.inbps)
    assert cps == [1, 2, 3, 3]
    assert pps == [125, 219, 289, 342]
    assert bps == [12500, 21875, 28906, 34180]
    assert (s.outpps, s.outbps) == (0, 0)


def test_estimator_converges_to_the_true_rate():
    s = Stats()
    for _ in range(100):
        s.outpkts += 3000  # 1500 packets/s
        s.outbytes += 3_000_000  # 1.5 MB/s
        s.estimate()
    assert s.outpps == 1500
    assert s.outbps == 1_500_000


def test_estimator_decays_when_traffic_stops():
    s = Stats()
    for _ in range(50):
        s.inpkts += 200
        s.estimate()
    assert s.inpps == 100
    s.estimate()  # no packets: avg loses a quarter, 102400 -> 76800 -> 75
    assert s.inpps == 75


def test_zero_resets_counters_and_rates():
    s = Stats()
    s.conns, s.inpkts = 5, 50
    s.estimate()
    s.zero()
    assert s.as_tuple() == (0, 0, 0, 0, 0)
    assert s.rates() == (0, 0, 0, 0, 0)
    s.estimate()  # no jump from the old reference point
    assert s.rates() == (0, 0, 0, 0, 0)


def test_counters_sum():
    base, a, b = Counters(), Counters(), Counters()
    base.conns = 1
    a.inpkts, b.inpkts, b.outbytes = 2, 3, 7
    total = Counters()
    total.set_sum(base, [a, b])
    assert total.as_tuple() == (1, 5, 0, 0, 7)
    total.add(a)
    assert total.inpkts == 7


def test_rate_estimator_runs_every_two_seconds_of_the_injected_clock():
    est = RateEstimator(start_s=100.0)
    calls = []

    def collect():
        calls.append(True)
        return []

    assert not est.tick(101.9, collect)
    assert est.tick(102.0, collect)
    assert not est.tick(103.0, collect)
    assert est.tick(104.1, collect)
    assert est.tick(111.0, collect)  # late: one step, then the schedule restarts from now
    assert not est.tick(112.9, collect)
    assert est.tick(113.0, collect)
    assert len(calls) == 4


def test_director_sums_real_server_counters_into_service_and_total():
    d = Director(seed=1)
    svc = d.add_service(ServiceSpec(6, ip_to_int("10.0.0.100"), 80))
    d1 = d.add_dest(svc.key, DestSpec(ip_to_int("10.0.0.11"), 80))
    d2 = d.add_dest(svc.key, DestSpec(ip_to_int("10.0.0.12"), 80))
    d1.stats.inpkts, d2.stats.inpkts = 10, 20
    d1.stats.inbytes, d2.stats.inbytes = 1000, 2000
    d.refresh_stats()
    assert svc.stats.inpkts == 30
    assert d.stats.inbytes == 3000
    # a deleted real server's traffic stays in the service and the total
    d.del_dest(svc.key, d1.addr, 80)
    d.refresh_stats()
    assert svc.stats.inpkts == 30 and d.stats.inpkts == 30


def test_director_tick_estimates_summed_rates():
    d = Director(seed=1, now=0.0)
    svc = d.add_service(ServiceSpec(6, ip_to_int("10.0.0.100"), 80))
    dest = d.add_dest(svc.key, DestSpec(ip_to_int("10.0.0.11"), 80))
    for step in range(1, 60):
        dest.stats.inpkts += 4000  # 2000 pps
        assert d.tick(2.0 * step)
    assert dest.stats.inpps == 2000
    assert svc.stats.inpps == 2000
    assert d.stats.inpps == 2000
