"""The seed reproduction's pure parts: Little's law from table samples, the verdicts object
of summary.json, and the report's tables, from made-up blocks."""

import json
import math
import random

from testbed.harness.blocks import Sequencer
from tests.unit.definitions import definition

seed = definition("seed")


def made_up_rounds(n_rounds: int = 8, rng_seed: int = 1) -> Sequencer:
    """Rounds of blocks with known effects: DR 2x NAT, coalescing 1.4x, the rest 1x."""
    truth = {
        "nat": 1.0,
        "nat-again": 1.0,
        "nat1": 1.0,
        "dr": 2.0,
        "nat-coalescing": 1.4,
        "nat-empty-table": 1.0,
    }
    rng = random.Random(rng_seed)
    seq = Sequencer(seed.COMPARISONS, measure=seed.efficiency, seed=3)
    for _ in range(n_rounds):
        order = seq.next_round()
        if not order:
            break
        drift = math.exp(rng.gauss(0, 0.2))
        rows = []
        for config in order:
            eff = 50_000 * drift * truth[config] * math.exp(rng.gauss(0, 0.03))
            cores = 0.06 * math.exp(rng.gauss(0, 0.02))
            rows.append(
                {
                    "config": config,
                    "requests_per_cpu_s": eff,
                    "answered_rps": eff * cores,
                    "carried_rps": eff * cores,
                    "director_cores": cores,
                    "director_in_pps": eff * cores,
                    "director_total_pps": eff * cores * (1 if config == "dr" else 2),
                    "saturated": True,
                    "phase": "rounds",
                }
            )
        seq.record(rows)
    return seq


def test_verdicts_carry_the_schema_the_issue_names_and_the_right_words():
    seq = made_up_rounds()
    v = seed.verdicts(seq, seq.finish())
    assert set(v) == {"nic", "irq", "lvs_type", "bus", "conntable", "firewall", "aa"}
    for key in ("nic", "irq", "lvs_type", "conntable", "aa"):
        entry = v[key]
        assert {"verdict", "effect", "ci95", "n", "measure"} <= set(entry)
        assert entry["ci95"][0] <= entry["effect"] <= entry["ci95"][1] and entry["n"] >= 2
        assert entry["agree"]  # capacity and cost tell the same story here
    assert v["lvs_type"]["verdict"] == "matters" and 1.8 < v["lvs_type"]["effect"] < 2.2
    assert v["irq"]["verdict"] == "matters"
    assert v["nic"]["verdict"] == v["aa"]["verdict"] == v["conntable"]["verdict"] == "no effect"
    assert v["bus"]["verdict"] == v["firewall"]["verdict"] == "not testable" and v["bus"]["why"]
    json.dumps(v)  # summary.json must take it


def test_a_capacity_that_disagrees_with_the_cost_is_flagged_with_the_cpu_share():
    seq = made_up_rounds()
    for row in seq.rows:  # DR's director got a third less CPU in its blocks
        if row["config"] == "dr":
            row["director_cores"] *= 0.66
            row["answered_rps"] *= 0.66
    v = seed.verdicts(seq, seq.finish())
    assert v["lvs_type"]["agree"] is False and v["lvs_type"]["cpu_share"]["effect"] < 0.75
    assert "capacity and CPU cost disagree" in seed.verdict_table(v)


def test_littles_law_finds_the_terminal_state_and_predicts_the_steady_size():
    rate, timeouts = (
        2000.0,
        {"ESTABLISHED": 900.0, "FIN_WAIT": 30.0, "TIME_WAIT": 120.0, "SYN_RECV": 60.0},
    )
    samples = []
    for t in range(2, 181, 2):
        waiting = rate * min(t, 120.0)  # every connection ends in TIME_WAIT for 120 s
        states = {"SYN_RECV": 3, "ESTABLISHED": 40, "FIN_WAIT": 20, "TIME_WAIT": int(waiting)}
        samples.append((float(t), sum(states.values()), states))
    out = seed.little(samples, rate, timeouts, probe_s=12.0)
    assert out["terminal_state"] == "TIME_WAIT" and out["terminal_timeout_s"] == 120.0
    assert out["predicted_entries"] == 63 + rate * 120.0
    assert abs(out["measured_over_predicted"] - 1) < 0.01
    short = seed.little(samples[:6], rate, timeouts, probe_s=12.0)  # the quick run: no check
    assert (
        short["measured_entries"] is None and short["predicted_entries"] == out["predicted_entries"]
    )
    assert "error" in seed.little(samples[:1], rate, timeouts, probe_s=12.0)


def test_the_report_tables_show_every_hypothesis_with_its_interval():
    seq = made_up_rounds()
    v = seed.verdicts(seq, seq.finish())
    table = seed.verdict_table(v)
    for word in (
        "| NIC |",
        "| LVS type |",
        "| bus (DMA) |",
        "| connection table |",
        "| A/A (noise floor) |",
    ):
        assert word in table
    assert "[" in table.split("| LVS type |")[1].split("\n")[0]  # the interval is beside the effect
    figures = seed.seed_figures(
        seq.rows,
        {
            "nat": {
                "predicted_entries": 240063.0,
                "rate_cps": 2000.0,
                "time_in_table_s": 120.03,
                "terminal_state": "TIME_WAIT",
                "terminal_timeout_s": 120.0,
            }
        },
    )
    assert figures["nat_total_pps"]["n"] >= 2 and figures["nat_total_pps"]["ci95"] is not None
    compare = seed.comparison_table(figures)
    assert "| LVS-NAT, in+out pps | 6,000 |" in compare and "240,063" in compare


def test_the_experiment_registers_its_report_and_summary_hooks():
    """Without them a run measures but its report has no verdicts and summary.json no answer."""
    seed = definition("seed")
    assert seed.EXPERIMENT.report is seed.report
    assert seed.EXPERIMENT.summarize is seed.summarize


def test_a_disagreement_from_lost_replies_says_so():
    """One NIC under overload: the same CPU per packet, but replies lost after their requests
    were forwarded; the note names the unanswered shares."""
    seq = made_up_rounds()
    for row in seq.rows:
        if row["config"] == "nat1":
            row["answered_rps"] *= 0.8
    v = seed.verdicts(seq, seq.finish())
    assert v["nic"]["agree"] is False
    assert round(v["nic"]["unanswered"]["variant"], 2) == 0.2
    assert v["nic"]["unanswered"]["baseline"] == 0.0
    assert "20% got no reply through it (the seed's NAT: 0%)" in seed.verdict_table(v)


def _cal_block(efficiency: float, saturated: bool = True) -> dict:
    return {"requests_per_cpu_s": efficiency, "saturated": saturated}


def test_calibration_takes_the_median_block_not_the_last_one():
    """A noisy block (one in three is off by a third here) moves the quota only as far as
    the median of all the blocks: the CI run that calibrated on one block overshot 1.5x."""
    rows = [_cal_block(30000), _cal_block(30000)]
    quota, done = seed.next_quota(rows, 6000, 0.1)
    assert math.isclose(quota, 0.1) and not done  # two saturated blocks: not yet enough
    rows.append(_cal_block(15000))  # the outlier
    quota, done = seed.next_quota(rows, 6000, 0.1)
    assert math.isclose(quota, 0.1) and done


def test_calibration_offers_more_until_saturated_and_stops_after_six_blocks():
    quota, done = seed.next_quota([_cal_block(50000, saturated=False)], 6000, 0.06)
    assert quota == 0.06 and not done
    rows = [_cal_block(e) for e in (10000, 40000, 10000, 40000, 10000, 40000)]
    quota, done = seed.next_quota(rows, 6000, 0.3)
    assert done and math.isclose(quota, 3000 / 25000)
    quota, _ = seed.next_quota([_cal_block(1.0)] * 3, 6000, 0.5)
    assert quota == 1.0  # never more than one core
