"""Interleaved blocks: in which order an experiment measures its configurations, which
measurements pair up, and when a comparison has its answer.

For experiments that compare several variants of a system against one baseline on a machine
whose speed drifts by tens of percent over minutes. Measuring one configuration after the
other lets the drift pick the answer; here every *round* measures each configuration that is
still needed once, in a fresh random order (short blocks, A B A B ..., so no configuration
always follows another), and a *comparison* pairs each round's variant with that round's
baseline: both halves of a pair saw nearly the same machine. `testbed.harness.stats` turns
the pairs into an effect with its interval, at the planned looks; a comparison whose verdict
is clear stops, and its variant leaves the rounds, so the time goes to what is still open.

Pure: the experiment measures; this decides what to measure next. The random order comes
from a seeded generator whose seed the run records.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from testbed.harness.stats import LOOKS, Decision, decide

Row = Mapping[str, object]


@dataclass(frozen=True)
class Comparison:
    """A variant measured against the baseline: ``key`` names the question (``nic``),
    ``question`` says it in words; the ratio is variant over baseline."""

    key: str
    variant: str
    baseline: str
    question: str


@dataclass
class Sequencer:
    """Rounds of blocks until every comparison is decided or the budget ends.

    ``measure(row)`` is the value compared (higher is better); rows are dicts with at least
    ``round`` and ``config``.
    """

    comparisons: Sequence[Comparison]
    measure: Callable[[Row], float]
    seed: int = 0
    looks: Sequence[int] = LOOKS
    rows: list[Row] = field(default_factory=list)
    decisions: dict[str, Decision] = field(default_factory=dict)

    def __post_init__(self) -> None:
        keys = [c.key for c in self.comparisons]
        if len(set(keys)) != len(keys):
            raise ValueError(f"comparison keys must be unique, got {keys}")
        self._rng = random.Random(self.seed)
        self.round = 0

    @property
    def open(self) -> list[Comparison]:
        return [
            c
            for c in self.comparisons
            if not (c.key in self.decisions and self.decisions[c.key].done)
        ]

    def next_round(self) -> list[str]:
        """The configurations to measure in the next round, in their random order: the
        baselines and variants of the comparisons still open (empty when all are done)."""
        needed: list[str] = []
        for c in self.open:
            for config in (c.baseline, c.variant):
                if config not in needed:
                    needed.append(config)
        self._rng.shuffle(needed)
        return needed

    def record(self, rows: Sequence[Row]) -> None:
        """The rows of one finished round; then look at every open comparison."""
        self.rows.extend({**row, "round": self.round} for row in rows)
        self.round += 1
        for c in self.open:
            decision = self._decide(c, final=False)
            if decision is not None:
                self.decisions[c.key] = decision

    def finish(self) -> dict[str, Decision]:
        """The last look (the budget ended): every comparison gets a decision, if it has at
        least two pairs."""
        for c in self.open:
            decision = self._decide(c, final=True)
            if decision is not None:
                self.decisions[c.key] = decision
        return dict(self.decisions)

    def pairs(
        self, c: Comparison, measure: Callable[[Row], float] | None = None
    ) -> tuple[list[float], list[float]]:
        """(variant, baseline) values of the rounds that measured both."""
        measure = measure or self.measure
        by_round: dict[int, dict[str, Row]] = {}
        for row in self.rows:
            by_round.setdefault(int(row["round"]), {})[str(row["config"])] = row
        with_knob, without = [], []
        for configs in by_round.values():
            if c.variant in configs and c.baseline in configs:
                with_knob.append(measure(configs[c.variant]))
                without.append(measure(configs[c.baseline]))
        return with_knob, without

    def _decide(self, c: Comparison, final: bool) -> Decision | None:
        with_knob, without = self.pairs(c)
        return decide(with_knob, without, final=final, looks=self.looks)
