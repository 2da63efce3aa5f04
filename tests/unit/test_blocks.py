"""Interleaved rounds: every open configuration once per round in a random order, pairs by
round, decided comparisons leaving the rounds."""

import math
import random

from testbed.harness.blocks import Comparison, Sequencer
from testbed.harness.stats import LOOKS, MATTERS, NO_EFFECT

COMPARISONS = [
    Comparison("aa", "base-twin", "base", "the baseline against itself"),
    Comparison("big", "fast", "base", "a knob that doubles the rate"),
    Comparison("small", "slightly", "base", "a knob that does nearly nothing"),
]
TRUE = {"base": 1.0, "base-twin": 1.0, "fast": 2.0, "slightly": 1.09}


def run(seq: Sequencer, rng: random.Random, max_rounds: int = LOOKS[-1]):
    orders = []
    for _ in range(max_rounds):
        order = seq.next_round()
        if not order:
            break
        orders.append(order)
        drift = math.exp(rng.gauss(0, 0.3))
        seq.record(
            [
                {"config": c, "rate": 3000 * drift * TRUE[c] * math.exp(rng.gauss(0, 0.03))}
                for c in order
            ]
        )
    return orders, seq.finish()


def test_every_round_measures_each_open_configuration_once_in_varying_order():
    seq = Sequencer(COMPARISONS, measure=lambda r: r["rate"], seed=5)
    orders, _ = run(seq, random.Random(1), max_rounds=4)
    for order in orders:
        assert sorted(order) == sorted(TRUE) and len(order) == len(set(order))
    assert len({tuple(o) for o in orders}) > 1  # the order changes between rounds
    assert all(seq.rows[i]["round"] == i // 4 for i in range(16))


def test_pairs_come_from_the_same_round():
    seq = Sequencer(COMPARISONS[:1], measure=lambda r: r["rate"])
    seq.record([{"config": "base", "rate": 10.0}, {"config": "base-twin", "rate": 11.0}])
    seq.record([{"config": "base-twin", "rate": 22.0}, {"config": "base", "rate": 20.0}])
    seq.record([{"config": "base", "rate": 5.0}])  # a round whose twin failed: no pair
    assert seq.pairs(COMPARISONS[0]) == ([11.0, 22.0], [10.0, 20.0])


def test_clear_comparisons_stop_and_leave_the_rounds_and_the_rest_are_decided_at_the_end():
    seq = Sequencer(COMPARISONS, measure=lambda r: r["rate"], seed=3)
    orders, decisions = run(seq, random.Random(2))
    assert decisions["big"].verdict == MATTERS and decisions["big"].effect.n == LOOKS[0]
    assert decisions["aa"].verdict == NO_EFFECT and decisions["small"].verdict != MATTERS
    assert len(orders) > LOOKS[0]  # "slightly" took longer to settle
    assert all("fast" in o for o in orders[: LOOKS[0]]) and not any(
        "fast" in o for o in orders[LOOKS[0] :]
    )
    assert all(d.done for d in decisions.values())
    assert seq.next_round() == []  # nothing left to measure


def test_the_order_is_reproducible_from_the_seed():
    a = Sequencer(COMPARISONS, measure=lambda r: r["rate"], seed=9).next_round()
    b = Sequencer(COMPARISONS, measure=lambda r: r["rate"], seed=9).next_round()
    assert a == b
