"""The seed reproduction's verdicts and comparison table, from made-up step figures."""

from testbed.experiments.seed import SEED, comparison_rows, sweep_args, verdicts

STEPS = {
    "calibrate": {"quota_cores": 0.05, "nat_total_pps": 6100},
    "dr": {"capacity_pps": 6000, "director_in_pps": 6000},
    "nat": {"capacity_pps": 3050, "director_total_pps": 6100, "director_out_pps": 3050},
    "nat1": {"capacity_pps": 3000},
    "nat-coalescing": {"capacity_pps": 4600, "director_total_pps": 9200},
    "table-bits-12": {"capacity_pps": 2950},
    "table-bits-16": {"capacity_pps": 3050},
    "table-size-nat": {"entries": 240000},
    "table-size-dr": {"entries": 61000},
}


def test_verdicts_follow_the_ratios():
    v = {h: (verdict, ev) for h, verdict, ev in verdicts(STEPS)}
    assert v["NIC"][0] == "not the bottleneck"
    assert v["IRQ (per-frame wake-ups)"][0] == "a bottleneck" and "1.51x" in v["IRQ (per-frame wake-ups)"][1]
    assert v["LVS type"][0] == "the main factor"
    assert v["bus (DMA)"][0] == "not testable here"
    assert v["connection table"][0] == "not the bottleneck" and "240,000" in v["connection table"][1]


def test_verdicts_flip_when_the_figures_do():
    steps = {**STEPS, "nat1": {"capacity_pps": 1500}, "nat-coalescing": {"capacity_pps": 3100},
             "table-bits-16": {"capacity_pps": 6000}}
    v = {h: verdict for h, verdict, _ in verdicts(steps)}
    assert v["NIC"] == "matters"
    assert v["IRQ (per-frame wake-ups)"] == "not the bottleneck"
    assert v["connection table"] == "matters"


def test_missing_steps_give_no_verdict_rather_than_a_wrong_one():
    v = {h for h, _, _ in verdicts({"nat": STEPS["nat"]})}
    assert v == {"bus (DMA)"}


def test_comparison_rows_put_the_seed_beside_the_measured():
    rows = {name: (seed, measured) for name, seed, measured, _ in comparison_rows(STEPS)}
    assert rows["LVS-NAT, in+out pps at saturation"] == (SEED["nat_total_pps"], 6100)
    assert rows["LVS-NAT with coalescing, in+out pps"] == (8000, 9200)
    assert rows["Connection table entries at 2,000 conn/s, fin 30 s (NAT)"] == (62000, 240000)


def test_reproduce_sweeps_every_step_in_order():
    args = sweep_args(quick=True)
    assert args[0].startswith("step=calibrate,dr,nat,")
    assert "quick=true" in args
