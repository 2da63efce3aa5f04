"""The statistics behind the verdicts: paired intervals, the words they support, and the
sequential rule, checked against simulated measurements with this machine's noise."""

import math
import random

import pytest

from testbed.harness.stats import (
    CANT_TELL,
    LOOKS,
    MATTERS,
    NO_EFFECT,
    Effect,
    decide,
    look_confidence,
    paired_effect,
    verdict,
)

# The spread of one pair's log-ratio on these machines: the A/A comparison of full
# `reproduce` runs (same configuration in both halves of a pair, blocks interleaved): 0.080
# over 25 pairs on 2026-12-05 (the other comparisons 0.062 to 0.079).
MEASURED_PAIR_SD = 0.08


def simulate(true_ratio: float, sd: float, rng: random.Random, max_pairs: int = LOOKS[-1]):
    """The sequential rule on synthetic pairs: rates whose log-ratio is ln(true_ratio) plus
    normal noise, with a drift shared by both halves of a pair (which must cancel)."""
    with_knob, without = [], []
    for n in range(1, max_pairs + 1):
        drift = math.exp(rng.gauss(0, 0.3))  # the machine's speed this minute
        base = 3000.0 * drift
        without.append(base * math.exp(rng.gauss(0, sd / math.sqrt(2))))
        with_knob.append(base * true_ratio * math.exp(rng.gauss(0, sd / math.sqrt(2))))
        decision = decide(with_knob, without, final=n == max_pairs)
        if decision is not None and decision.done:
            return decision
    raise AssertionError("the rule never decided")


def test_a_ratio_and_its_interval_from_pairs():
    effect = paired_effect([2.0, 2.2, 1.8, 2.0], [1.0, 1.0, 1.0, 1.0])
    assert effect.ratio == pytest.approx((2.0 * 2.2 * 1.8 * 2.0) ** 0.25)
    assert effect.low < effect.ratio < effect.high and effect.n == 4
    wider = paired_effect([2.0, 2.2, 1.8, 2.0], [1.0] * 4, confidence=0.99)
    assert wider.low < effect.low and wider.high > effect.high


def test_drift_shared_by_a_pair_cancels():
    slow_then_fast = [1000, 2000, 500, 4000]
    effect = paired_effect([1.25 * x for x in slow_then_fast], slow_then_fast)
    assert effect.ratio == pytest.approx(1.25) and effect.high - effect.low < 1e-9


@pytest.mark.parametrize(
    "low,high,word",
    [
        (1.15, 1.4, MATTERS),
        (0.5, 0.85, MATTERS),
        (0.95, 1.05, NO_EFFECT),
        (0.92, 1.09, NO_EFFECT),
        (1.05, 1.2, CANT_TELL),
        (0.85, 1.02, CANT_TELL),
        (0.7, 1.5, CANT_TELL),
    ],
)
def test_the_words_follow_from_where_the_interval_lies(low, high, word):
    assert verdict(Effect((low * high) ** 0.5, low, high, 8, 0.99)) == word


def test_bad_pairs_are_refused():
    for with_knob, without in (([1.0], [1.0]), ([1.0, 0.0], [1.0, 1.0]), ([1.0, 2.0], [1.0])):
        with pytest.raises(ValueError):
            paired_effect(with_knob, without)


def test_each_look_is_stricter_than_95_percent_so_the_run_keeps_95():
    assert look_confidence() == pytest.approx(1 - 0.05 / (len(LOOKS) + 1))
    assert decide([1.0] * 3, [1.0] * 3) is None  # not a planned look
    assert decide([1.1, 1.2, 1.3], [1.0] * 3, final=True).done


def test_a_1_3x_effect_with_this_machines_noise_is_called_matters():
    rng = random.Random(1)
    decisions = [simulate(1.3, MEASURED_PAIR_SD, rng) for _ in range(200)]
    assert sum(d.verdict == MATTERS for d in decisions) >= 0.95 * len(decisions)
    assert all(d.verdict != NO_EFFECT for d in decisions)


def test_an_a_a_comparison_is_not_called_matters_in_95_percent_of_runs():
    rng = random.Random(2)
    decisions = [simulate(1.0, MEASURED_PAIR_SD, rng) for _ in range(1000)]
    assert sum(d.verdict == MATTERS for d in decisions) <= 0.05 * len(decisions)
    assert sum(d.verdict == NO_EFFECT for d in decisions) >= 0.9 * len(decisions)


def test_an_a_a_comparison_keeps_its_coverage_when_the_noise_is_large():
    rng = random.Random(3)
    decisions = [simulate(1.0, 0.3, rng) for _ in range(500)]
    assert sum(d.verdict == MATTERS for d in decisions) <= 0.05 * len(decisions)
    assert sum(d.effect.low <= 1.0 <= d.effect.high for d in decisions) >= 0.95 * len(decisions)


def test_sequential_sampling_stops_early_when_the_answer_is_clear_and_at_the_budget_otherwise():
    rng = random.Random(4)
    clear = simulate(2.0, MEASURED_PAIR_SD, rng)
    assert clear.done and clear.effect.n == LOOKS[0]
    borderline = simulate(1.1, 0.2, rng, max_pairs=9)  # on a bound, noisy, short budget
    assert borderline.done and borderline.effect.n == 9
