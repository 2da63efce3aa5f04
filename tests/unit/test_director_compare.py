"""director-compare's report arithmetic: CPU per request and the ratios to kernel IPVS."""

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
