"""The seed reproduction's verdicts and comparison table, from made-up step figures."""

from tests.unit.definitions import definition

_seed = definition("seed")
INCONCLUSIVE = _seed.INCONCLUSIVE
SEED = _seed.SEED
capacity_samples = _seed.capacity_samples
combine = _seed.combine
comparison_rows = _seed.comparison_rows
default_rounds = _seed.default_rounds
judge = _seed.judge
run_noise = _seed.run_noise
sweep_args = _seed.sweep_args
verdicts = _seed.verdicts

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


def one_round(steps: dict[str, dict]) -> dict[str, list[float]]:
    return capacity_samples({step: [summary] for step, summary in steps.items()})


def test_verdicts_follow_the_ratios():
    v = {h: (verdict, ev) for h, verdict, ev in verdicts(one_round(STEPS), STEPS)}
    assert v["NIC"][0] == "not the bottleneck"
    assert (
        v["IRQ (per-frame wake-ups)"][0] == "a bottleneck"
        and "1.51x" in v["IRQ (per-frame wake-ups)"][1]
    )
    assert v["LVS type"][0] == "the main factor"
    assert v["bus (DMA)"][0] == "not testable here"
    assert (
        v["connection table"][0] == "not the bottleneck" and "240,000" in v["connection table"][1]
    )


def test_verdicts_flip_when_the_figures_do():
    steps = {
        **STEPS,
        "nat1": {"capacity_pps": 1500},
        "nat-coalescing": {"capacity_pps": 3100},
        "table-bits-16": {"capacity_pps": 6000},
    }
    v = {h: verdict for h, verdict, _ in verdicts(one_round(steps), steps)}
    assert v["NIC"] == "matters"
    assert v["IRQ (per-frame wake-ups)"] == "not the bottleneck"
    assert v["connection table"] == "matters"


def test_missing_steps_give_no_verdict_rather_than_a_wrong_one():
    v = {h for h, _, _ in verdicts(one_round({"nat": STEPS["nat"]}))}
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


def test_an_effect_needs_every_round_on_the_same_side():
    assert judge([1300.0], [1000.0], "yes", "no") == ("yes", 1.3)
    assert judge([1050.0], [1000.0], "yes", "no")[0] == "no"
    assert judge([800.0], [1000.0], "yes", "no")[0] == "yes"  # two-sided: fewer is an effect too
    # Means 1.3x apart, but one round with the knob is below one without it.
    assert judge([1100.0, 1500.0], [1000.0, 1000.0 * 1.0 + 150], "yes", "no")[0] == INCONCLUSIVE
    assert judge([1400.0, 1500.0], [1000.0, 1150.0], "yes", "no")[0] == "yes"
    # One-sided: the hypothesis is that the knob helps; a clear loss says no.
    assert judge([800.0], [1000.0], "yes", "no", one_sided=True)[0] == "no"
    assert judge([700.0, 900.0], [950.0, 1000.0], "yes", "no", one_sided=True)[0] == "no"
    assert judge([600.0, 1000.0], [950.0, 990.0], "yes", "no", one_sided=True)[0] == INCONCLUSIVE


def test_rounds_are_averaged_and_every_measurement_is_weighed():
    cal = {
        "quota_cores": 0.05,
        "converged": True,
        "measured_quota_cores": 0.05,
        "capacity_pps": 3000,
    }
    rounds = {
        "calibrate": [cal, {**cal, "capacity_pps": 3100}],
        "nat": [{"capacity_pps": 3000, "converged": True}, {"capacity_pps": 3300}],
        "nat1": [{"capacity_pps": 2000}, {"capacity_pps": 3050}],
        "dr": [{"capacity_pps": 6000}, {"capacity_pps": 9000}],
    }
    s = combine(rounds)
    assert s["dr"]["capacity_pps"] == 7500 and s["dr"]["rounds"] == 2
    assert s["nat"]["converged"] is True  # not a number to average
    assert s["calibrate"]["capacity_pps"] == 3000  # the first calibration is the one used
    samples = capacity_samples(rounds)
    assert samples["nat"] == [3000, 3300, 3000, 3100]  # the calibrations measured NAT at that quota
    assert run_noise(rounds) == 3050 / 2000  # nat1's rounds, the widest spread
    v = {h: (verdict, ev) for h, verdict, ev in verdicts(samples, s)}
    assert (
        v["NIC"][0] == INCONCLUSIVE and "nat1 2,000/3,050" in v["NIC"][1]
    )  # 1.23x, but 3,050 > 3,000
    assert v["LVS type"][0] == "the main factor"  # 6,000 and 9,000 both beyond NAT's highest
    # A calibration that ended elsewhere measured another configuration.
    rounds["calibrate"] = [{**cal, "converged": False}]
    assert capacity_samples(rounds)["nat"] == [3000, 3300]


def test_reproduce_runs_two_rounds_unless_quick():
    assert default_rounds(quick=False) == 2 and default_rounds(quick=True) == 1
