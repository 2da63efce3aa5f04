"""testbed.measure: rates from counters, fits, percentiles, knees, CPU and fidelity, readers."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from testbed.measure.analysis import (
    check_fidelity,
    cores_used,
    cpu_busy_fraction,
    find_knee,
    interval_rates,
    linear_fit,
    mean_rate,
    percentiles,
)
from testbed.measure.host import (
    UsageReading,
    cpu_busy_fractions,
    parse_net_dev,
    parse_proc_stat,
    read_net_dev,
    read_proc_stat,
    read_usage,
    usage_cores,
)

# -- rates ---------------------------------------------------------------------------------


def test_rates_use_the_measured_interval_not_the_nominal_one():
    # A sampler meant to wake every 0.1 s but woke irregularly; the counter grew at 1000/s.
    times_s = [10.0, 10.1, 10.35, 10.4, 11.0]
    counts = [5000 + 1000 * (t - 10.0) for t in times_s]
    assert interval_rates(times_s, counts) == pytest.approx([1000.0] * 4)
    assert mean_rate(times_s, counts) == pytest.approx(1000.0)
    # The nominal interval would have said 2500/s for the third interval.
    assert (counts[2] - counts[1]) / 0.1 == pytest.approx(2500.0)


def test_rates_follow_a_changing_counter():
    assert interval_rates([0.0, 0.5, 2.5], [0, 100, 500]) == pytest.approx([200.0, 200.0])
    assert interval_rates([0.0, 1.0, 1.25], [0, 100, 200]) == pytest.approx([100.0, 400.0])
    assert mean_rate([0.0, 1.0, 1.25], [0, 100, 200]) == pytest.approx(160.0)


@pytest.mark.parametrize(
    "times_s, counts, message",
    [
        ([0.0], [0], "at least two"),
        ([0.0, 1.0], [0], "2 timestamps but 1"),
        ([0.0, 1.0, 1.0], [0, 1, 2], "timestamps must increase"),
        ([0.0, 1.0, 0.5], [0, 1, 2], "timestamps must increase"),
        ([0.0, 1.0, 2.0], [0, 10, 5], "counter went backwards"),
    ],
)
def test_rates_refuse_bad_samples(times_s, counts, message):
    with pytest.raises(ValueError, match=message):
        interval_rates(times_s, counts)


# -- fits and percentiles --------------------------------------------------------------------


def test_linear_fit_against_hand_values():
    fit = linear_fit([1, 2, 3], [2, 4, 6.5])
    # x mean 2, y mean 25/6; Sxy = 4.5, Sxx = 2 -> slope 2.25, intercept 25/6 - 4.5
    assert fit.slope == pytest.approx(2.25)
    assert fit.intercept == pytest.approx(25 / 6 - 4.5)
    # residuals 1/12, -1/6, 1/12 -> SS_res 1/24; SS_tot = 61/6
    assert fit.r2 == pytest.approx(1 - (1 / 24) / (61 / 6))
    assert fit.n == 3
    assert fit.predict(4) == pytest.approx(2.25 * 4 + 25 / 6 - 4.5)


def test_linear_fit_against_numpy_on_noisy_data():
    rng = np.random.default_rng(7)
    x = np.linspace(0, 100, 50)
    y = 3.5 * x - 20 + rng.normal(0, 15, x.size)
    fit = linear_fit(list(x), list(y))
    slope, intercept = np.polyfit(x, y, 1)
    assert fit.slope == pytest.approx(slope)
    assert fit.intercept == pytest.approx(intercept)
    assert fit.r2 == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2)
    assert 0.9 < fit.r2 < 1


def test_linear_fit_of_constant_data_is_perfect():
    fit = linear_fit([1, 2, 3], [5, 5, 5])
    assert fit.slope == pytest.approx(0, abs=1e-12)
    assert fit.r2 == 1.0


def test_linear_fit_needs_two_distinct_x():
    with pytest.raises(ValueError, match="two distinct x"):
        linear_fit([1, 1], [2, 3])
    with pytest.raises(ValueError, match="2 x values but 1"):
        linear_fit([1, 2], [2])


def test_percentiles_match_numpy():
    values = [random.Random(3).expovariate(1 / 5) for _ in range(1000)]
    got = percentiles(values, (50, 90, 99, 99.9))
    assert list(got) == ["p50", "p90", "p99", "p99.9"]
    for q in (50, 90, 99, 99.9):
        assert got[f"p{q:g}"] == pytest.approx(np.percentile(values, q))
    assert percentiles([1, 2, 3, 4]) == {
        "p50": 2.5,
        "p90": pytest.approx(3.7),
        "p99": pytest.approx(3.97),
    }


def test_percentiles_refuse_nonsense():
    with pytest.raises(ValueError, match="no values"):
        percentiles([])
    with pytest.raises(ValueError, match="from 0 to 100"):
        percentiles([1], (101,))


# -- knees -------------------------------------------------------------------------------------

STEP_PPS = 500.0
GRID_PPS = [STEP_PPS * i for i in range(1, 21)]  # 500 .. 10,000


def test_knee_of_an_ideal_hockey_stick():
    knee = find_knee(GRID_PPS, [min(x, 5000.0) for x in GRID_PPS])
    assert knee.knee_offered_pps == 5000.0
    assert knee.knee_delivered_pps == 5000.0
    assert knee.saturated
    assert knee.capacity_pps == pytest.approx(5000.0)
    assert knee.plateau_pps == pytest.approx(5000.0)
    assert knee.plateau_fit.slope == pytest.approx(0.0, abs=1e-9)


def test_capacity_between_grid_points_is_found_by_the_fit():
    knee = find_knee(GRID_PPS, [min(x, 4321.0) for x in GRID_PPS])
    # The knee snaps to the grid: 4500 still carries 4321/4500 = 96% (within 5%), 5000 does not.
    assert knee.knee_offered_pps == 4500.0
    assert knee.capacity_pps == pytest.approx(4321.0)


@pytest.mark.parametrize("seed", range(20))
def test_knee_on_noisy_curves_with_repeats(seed):
    capacity_pps, tolerance = 5000.0, 0.05
    rng = random.Random(seed)
    offered, delivered = [], []
    for x in GRID_PPS:
        for _ in range(3):
            offered.append(x)
            delivered.append(min(x, capacity_pps) * (1 + rng.gauss(0, 0.015)))
    knee = find_knee(offered, delivered, tolerance_frac=tolerance)
    # The knee is a grid point: the last one at or below the capacity, or the first one above
    # it if that one is still within tolerance (5500 carries 91%: it is not).
    assert knee.knee_offered_pps == 5000.0
    assert knee.capacity_pps == pytest.approx(capacity_pps, rel=0.02)
    assert knee.plateau_pps == pytest.approx(capacity_pps, rel=0.02)
    assert abs(knee.plateau_fit.slope) < 0.02


def test_knee_of_a_soft_saturation_curve():
    # y = x / (1 + (x/C)^4)^(1/4): y/x falls to 95% at x/C = (0.95^-4 - 1)^(1/4) = 0.6908
    capacity_pps = 5000.0
    offered = [100.0 * i for i in range(1, 151)]
    delivered = [x / (1 + (x / capacity_pps) ** 4) ** 0.25 for x in offered]
    knee = find_knee(offered, delivered)
    expected = capacity_pps * (0.95**-4 - 1) ** 0.25
    assert expected - 100 < knee.knee_offered_pps <= expected
    assert knee.capacity_pps == pytest.approx(capacity_pps, rel=0.05)


def test_livelock_shows_as_a_falling_plateau():
    delivered = [x if x <= 4000 else 4000 - 0.5 * (x - 4000) for x in GRID_PPS]
    knee = find_knee(GRID_PPS, delivered)
    assert knee.knee_offered_pps == 4000.0
    assert knee.plateau_fit.slope == pytest.approx(-0.5)
    assert knee.plateau_fit.r2 == pytest.approx(1.0)


def test_an_unsaturated_curve_has_no_capacity():
    knee = find_knee(GRID_PPS, [x * 0.99 for x in GRID_PPS])
    assert knee.knee_offered_pps == GRID_PPS[-1]
    assert not knee.saturated
    assert knee.capacity_pps is None and knee.plateau_pps is None and knee.plateau_fit is None


def test_a_curve_saturated_from_the_start_has_no_knee():
    knee = find_knee([2000.0, 3000.0, 4000.0], [1000.0, 1010.0, 990.0])
    assert knee.knee_offered_pps is None
    assert knee.saturated
    assert knee.capacity_pps == pytest.approx(1000.0)
    assert knee.plateau_pps == pytest.approx(1000.0)


def test_a_single_noisy_dip_below_the_knee_does_not_move_it():
    delivered = [min(x, 5000.0) for x in GRID_PPS]
    delivered[2] *= 0.8  # one bad point at 1500 pps
    assert find_knee(GRID_PPS, delivered).knee_offered_pps == 5000.0


def test_repeats_are_merged_by_median():
    offered = [1000.0, 1000.0, 1000.0, 2000.0, 2000.0, 2000.0]
    delivered = [1000.0, 1000.0, 10.0, 2000.0, 1990.0, 1000.0]  # one outlier each
    knee = find_knee(offered, delivered)
    assert knee.knee_offered_pps == 2000.0 and not knee.saturated


def test_measured_loss_can_end_the_knee_earlier():
    offered = [1000.0, 2000.0, 3000.0]
    delivered = [1000.0, 1990.0, 2980.0]
    assert find_knee(offered, delivered).knee_offered_pps == 3000.0
    knee = find_knee(offered, delivered, loss_frac=[0.0, 0.005, 0.02], max_loss_frac=0.01)
    assert knee.knee_offered_pps == 2000.0 and knee.saturated


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"offered_pps": [], "delivered_pps": []}, "at least one"),
        ({"offered_pps": [1.0], "delivered_pps": []}, "1 offered rates but 0"),
        ({"offered_pps": [0.0], "delivered_pps": [0.0]}, "positive"),
        ({"offered_pps": [1.0], "delivered_pps": [1.0], "tolerance_frac": 1.0}, "tolerance_frac"),
        ({"offered_pps": [1.0], "delivered_pps": [1.0], "loss_frac": []}, "loss values"),
    ],
)
def test_find_knee_refuses_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        find_knee(**kwargs)


# -- CPU and fidelity ----------------------------------------------------------------------


def test_cpu_busy_fraction_by_hand():
    before = [100, 0, 50, 800, 50, 0, 0, 0, 0, 0]
    after = [160, 0, 80, 880, 60, 10, 0, 0, 0, 0]  # +60 user +30 sys +80 idle +10 iowait +10 irq
    assert cpu_busy_fraction(before, after) == pytest.approx(100 / 190)


def test_cpu_busy_fraction_ignores_guest_time_counted_in_user():
    before = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    after = [50, 0, 0, 50, 0, 0, 0, 0, 40, 0]
    assert cpu_busy_fraction(before, after) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "before, after, message",
    [
        ([0] * 7, [0] * 8, "at least 8"),
        ([1] * 8, [1] * 8, "no CPU time passed"),
        ([5] * 8, [4] * 8, "went backwards"),
    ],
)
def test_cpu_busy_fraction_refuses_bad_snapshots(before, after, message):
    with pytest.raises(ValueError, match=message):
        cpu_busy_fraction(before, after)


def test_cores_used():
    assert cores_used(10.0, 11.5, 2.0) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="positive"):
        cores_used(1.0, 2.0, 0.0)
    with pytest.raises(ValueError, match="backwards"):
        cores_used(2.0, 1.0, 1.0)


def test_fidelity_flags_an_under_target_sender():
    fid = check_fidelity(target_pps=10_000, achieved_pps=9_000)
    assert not fid.valid
    assert "reached 9,000 of 10,000 pps" in fid.reasons[0]
    assert check_fidelity(target_pps=10_000, achieved_pps=9_600).valid


def test_fidelity_flags_a_saturated_host():
    fid = check_fidelity(host_cpu_busy_frac=0.97)
    assert not fid.valid and "emulation host CPU 97.0% busy" in fid.reasons[0]
    assert check_fidelity(host_cpu_busy_frac=0.5).valid


def test_fidelity_keeps_every_reason_and_skips_missing_inputs():
    fid = check_fidelity(target_pps=1000, achieved_pps=100, host_cpu_busy_frac=0.99)
    assert len(fid.reasons) == 2
    assert check_fidelity().valid
    assert check_fidelity(target_pps=1000).valid
    custom = check_fidelity(target_pps=1000, achieved_pps=980, min_achieved_frac=0.99)
    assert not custom.valid


# -- readers -----------------------------------------------------------------------------------

PROC_STAT = """\
cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0
cpu1 1335384 28612 516612 13373962 4291 0 1903 0 29201 0

intr 199292 37 0 0 0
ctxt 1990473
btime 1062191376
"""


def test_parse_proc_stat():
    cpus = parse_proc_stat(PROC_STAT)
    assert set(cpus) == {"cpu", "cpu0", "cpu1"}
    assert cpus["cpu0"][:4] == (1393280, 32966, 572056, 13343292)
    with pytest.raises(ValueError, match="not /proc/stat"):
        parse_proc_stat("intr 1 2 3\n")


def test_busy_fractions_per_cpu():
    before = parse_proc_stat(PROC_STAT)
    after = {
        name: tuple(v + d for v, d in zip(values, (100, 0, 0, 0, 0, 0, 0, 0, 0, 0), strict=True))
        if name == "cpu1"
        else tuple(v + d for v, d in zip(values, (0, 0, 0, 100, 0, 0, 0, 0, 0, 0), strict=True))
        for name, values in before.items()
    }
    fractions = cpu_busy_fractions(before, after)
    assert fractions == {
        "cpu": pytest.approx(0.0),
        "cpu0": pytest.approx(0.0),
        "cpu1": pytest.approx(1.0),
    }


def test_read_proc_stat_of_this_machine():
    cpus = read_proc_stat()
    assert "cpu" in cpus and len(cpus["cpu"]) >= 8


# /proc/net/dev as the kernel writes it: its lines are longer than ours.
NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1296      16    0    0    0     0          0         0     1296      16    0    0    0     0       0          0
d1-eth0:123456789012   987654    1    2    0     0          0         3 55555555   44444    0    7    0     0       0          0
"""


def test_parse_net_dev_with_a_glued_counter():
    counters = parse_net_dev(NET_DEV)
    assert set(counters) == {"lo", "d1-eth0"}
    eth = counters["d1-eth0"]
    assert eth["rx_bytes"] == 123456789012 and eth["rx_packets"] == 987654
    assert eth["rx_errs"] == 1 and eth["rx_drop"] == 2 and eth["rx_multicast"] == 3
    assert eth["tx_bytes"] == 55555555 and eth["tx_packets"] == 44444 and eth["tx_drop"] == 7


def test_parse_net_dev_refuses_a_short_line():
    with pytest.raises(ValueError, match="expected 16"):
        parse_net_dev("eth0: 1 2 3\n")


def test_read_net_dev_from_a_path(tmp_path):
    path = tmp_path / "dev"
    path.write_text(NET_DEV)
    assert read_net_dev(path)["lo"]["tx_packets"] == 16
    assert "lo" in read_net_dev()


def test_usage_readings_give_cores_over_measured_time():
    values = iter([2.0, 2.5])
    first = read_usage(lambda: next(values))
    second = read_usage(lambda: next(values))
    assert second.at_s >= first.at_s
    assert usage_cores(UsageReading(2.0, 100.0), UsageReading(2.5, 101.0)) == pytest.approx(0.5)
    assert math.isclose(usage_cores(UsageReading(0.0, 0.0), UsageReading(4.0, 2.0)), 2.0)
