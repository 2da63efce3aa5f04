"""Effects with their uncertainty: paired ratios, their confidence intervals, the verdict an
interval supports, and when a comparison has been sampled enough.

For: comparisons measured as pairs, one measurement with the knob and one without, taken
close together in time so that the machine's drift (tens of percent over minutes here) is
shared by both halves of a pair and cancels in their ratio. The effect is the geometric mean
of the pairs' ratios; its interval is Student's t on the logarithms of the ratios (ratios of
rates are skewed; their logarithms are close to normal, and a t interval keeps its coverage
with few pairs, where a bootstrap's is too narrow). Pure: no I/O; the seed experiment and its
tests use it.

The words follow from the interval and a smallest effect that counts (10% by default):

* *matters*: the whole interval lies beyond that effect (above 1.1x, or below 1/1.1x);
* *no effect*: the whole interval lies within it;
* *can't tell*: anything else (the interval straddles a bound: more pairs would decide).

Sampling is sequential: pairs are added in rounds and the interval is looked at after
planned numbers of pairs (`LOOKS`) and once more when the run's time budget ends, stopping a
comparison once its verdict is no longer *can't tell*. Looking several times and stopping at
the first clear answer would make a 95% interval wrong more than 5% of the time, so each look
uses the confidence 1 - 0.05 / (number of possible looks) (Bonferroni): the run as a whole
keeps at least 95%, and the interval reported is the one of the look that ended it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import t as student_t

MATTERS, NO_EFFECT, CANT_TELL, NOT_TESTABLE = "matters", "no effect", "can't tell", "not testable"
VERDICTS = (MATTERS, NO_EFFECT, CANT_TELL, NOT_TESTABLE)
SMALLEST_EFFECT = 0.10
"""The smallest change of a rate that counts as an effect here: 10% either way."""
CONFIDENCE = 0.95
LOOKS = (5, 8, 12, 18, 27, 40)
"""The numbers of pairs after which a comparison's interval is looked at (few: each look
costs width at every other)."""


@dataclass(frozen=True)
class Effect:
    """A ratio (with the knob / without) and its interval at ``confidence``."""

    ratio: float
    low: float
    high: float
    n: int
    confidence: float

    def as_dict(self) -> dict[str, float | int | list[float]]:
        return {
            "effect": self.ratio,
            "ci95": [self.low, self.high],
            "n": self.n,
            "confidence": self.confidence,
        }


def log_ratios(with_knob: Sequence[float], without: Sequence[float]) -> list[float]:
    """ln(a/b) for each pair; pairs with a non-positive side are refused (a rate of 0 is a
    failed measurement, not a ratio)."""
    if len(with_knob) != len(without):
        raise ValueError(f"{len(with_knob)} measurements with the knob but {len(without)} without")
    out = []
    for a, b in zip(with_knob, without, strict=True):
        if not (a > 0 and b > 0) or math.isinf(a) or math.isinf(b):
            raise ValueError(
                f"a pair of rates must both be positive and finite, got {a!r} and {b!r}"
            )
        out.append(math.log(a / b))
    return out


def paired_effect(
    with_knob: Sequence[float], without: Sequence[float], confidence: float = CONFIDENCE
) -> Effect:
    """The geometric-mean ratio of the pairs and its t interval (at least two pairs)."""
    d = log_ratios(with_knob, without)
    n = len(d)
    if n < 2:
        raise ValueError("an interval needs at least two pairs")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    mean = statistics.fmean(d)
    half = float(student_t.ppf((1 + confidence) / 2, n - 1)) * statistics.stdev(d) / math.sqrt(n)
    return Effect(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n, confidence)


def verdict(effect: Effect, smallest: float = SMALLEST_EFFECT) -> str:
    """matters / no effect / can't tell, from where the interval lies (module docstring)."""
    above, below = 1 + smallest, 1 / (1 + smallest)
    if effect.low > above or effect.high < below:
        return MATTERS
    if effect.low >= below and effect.high <= above:
        return NO_EFFECT
    return CANT_TELL


def look_confidence(looks: Sequence[int] = LOOKS, overall: float = CONFIDENCE) -> float:
    """The confidence of each look (the planned ones and the last, when the budget ends)
    that keeps ``overall`` for the whole sequence."""
    return 1 - (1 - overall) / (len(looks) + 1)


def is_look(n: int, looks: Sequence[int] = LOOKS) -> bool:
    return n in looks


@dataclass(frozen=True)
class Decision:
    """Where a comparison stands after ``effect.n`` pairs."""

    effect: Effect
    verdict: str
    done: bool


def decide(
    with_knob: Sequence[float],
    without: Sequence[float],
    *,
    final: bool = False,
    smallest: float = SMALLEST_EFFECT,
    looks: Sequence[int] = LOOKS,
) -> Decision | None:
    """The decision at a planned look (or at the end of the run's budget, ``final``); None
    between looks and with fewer than two pairs. A comparison is done once its verdict is
    not *can't tell*, or when ``final``."""
    n = len(with_knob)
    if n < 2 or not (final or is_look(n, looks)):
        return None
    effect = paired_effect(with_knob, without, look_confidence(looks))
    word = verdict(effect, smallest)
    return Decision(effect, word, final or word != CANT_TELL)
