"""director-compare's report arithmetic: CPU per request, its trials' median and range, the
ratios to kernel IPVS with their bounds, and the table that marks a capacity as a lower bound."""

import pytest

from tests.unit.definitions import definition

dc = definition("director-compare")


def test_machine_cpu_per_request():
    assert dc.machine_us_per_request(0.5, 2, 1000.0) == pytest.approx(1000.0)
    assert dc.machine_us_per_request(0.5, 2, 0.0) is None


def test_ratios_are_to_kernel_ipvs_in_a_fixed_order():
    by = {
        "python": {"capacity_pps": 500.0, "machine_us_per_request": 300.0},
        "ipvs": {"capacity_pps": 2000.0, "machine_us_per_request": 100.0},
        "openflow": {"capacity_pps": 1000.0, "machine_us_per_request": None},
    }
    rows = dc.ratio_table(by)
    assert [r["director"] for r in rows] == ["ipvs", "python", "openflow"]
    assert [r["capacity_ratio"] for r in rows] == [1.0, 0.25, 0.5]
    assert [r["cpu_ratio"] for r in rows] == [1.0, 3.0, None]


def test_without_kernel_ipvs_there_are_no_ratios():
    rows = dc.ratio_table({"python": {"capacity_pps": 500.0, "machine_us_per_request": 3.0}})
    assert rows[0]["capacity_ratio"] is None and rows[0]["cpu_ratio"] is None


def test_every_director_maps_to_a_layout_director():
    from testbed.topo.plan import DIRECTOR_KINDS

    assert set(dc.LAYOUT_DIRECTOR) == set(dc.DIRECTORS) == set(dc.LABELS)
    assert set(dc.LAYOUT_DIRECTOR.values()) <= set(DIRECTOR_KINDS)


def cpu_trial(busy_frac, answered_pps, reasons=()):
    return {"busy_frac": busy_frac, "answered_pps": answered_pps, "invalid_reasons": [*reasons]}


def test_cpu_trials_give_the_median_and_range_of_cpu_per_request():
    trials = [cpu_trial(0.10, 500), cpu_trial(0.12, 500), cpu_trial(0.30, 500)]
    summary, invalid = dc.cpu_summary(trials, cpus=2, rate_pps=500)
    assert summary["machine_us_per_request"] == pytest.approx(480.0)  # 0.12 x 2 cores / 500
    assert summary["machine_us_per_request_min"] == pytest.approx(400.0)
    assert summary["machine_us_per_request_max"] == pytest.approx(1200.0)
    assert summary["cpu_trials"] == 3 and invalid == []


def test_a_cpu_trial_short_of_its_rate_or_unfaithful_makes_the_point_invalid():
    trials = [cpu_trial(0.1, 500), cpu_trial(0.1, 400), cpu_trial(0.1, 500, ["sender short"])]
    _, invalid = dc.cpu_summary(trials, cpus=2, rate_pps=500)
    assert len(invalid) == 2
    assert "not carried (400/s)" in invalid[0] and "sender short" in invalid[1]


def test_repeats_combine_by_mean_but_keep_the_widest_range():
    combined = dc.combine(
        [
            {"capacity_pps": 100.0, "x_min": 5.0, "x_max": 9.0, "note": None},
            {"capacity_pps": 300.0, "x_min": 4.0, "x_max": 8.0, "note": None},
        ]
    )
    assert combined == {"capacity_pps": 200.0, "x_min": 4.0, "x_max": 9.0, "note": None}


def test_the_cpu_ratio_bounds_come_from_both_ranges():
    by = {
        "ipvs": {
            "capacity_pps": 1000.0,
            "machine_us_per_request": 100.0,
            "machine_us_per_request_min": 90.0,
            "machine_us_per_request_max": 110.0,
        },
        "python": {
            "capacity_pps": 400.0,
            "capacity_is_lower_bound": 1.0,
            "machine_us_per_request": 300.0,
            "machine_us_per_request_min": 270.0,
            "machine_us_per_request_max": 330.0,
        },
    }
    ipvs, python = dc.ratio_table(by)
    assert python["cpu_ratio"] == pytest.approx(3.0)
    assert python["cpu_ratio_lo"] == pytest.approx(270 / 110)
    assert python["cpu_ratio_hi"] == pytest.approx(330 / 90)
    lines = dc.table_lines([ipvs, python])
    assert "| kernel IPVS (NAT) | 1,000 | 1.00 |" in lines[2]
    assert ">= 400 | 0.40" in lines[3] and "300 (270-330)" in lines[3]
    assert "3.00 (2.45-3.67)" in lines[3]


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="cpu_trials"):
        dc.Params(cpu_trials=0)
    with pytest.raises(ValueError, match="cpu_rate_pps"):
        dc.Params(cpu_rate_pps=0)
    with pytest.raises(ValueError, match="switch=ovs"):
        dc.Params(director="openflow", switch="bridge")
