"""Pure analysis of measured numbers: rates, fits, percentiles, saturation knees, fidelity.

For: turning what an experiment sampled (counter readings with their own timestamps, offered
and delivered rates, CPU time readings) into the figures a report states. Every function takes
plain numbers and returns plain numbers or small frozen dataclasses, so it is unit-tested on
synthetic data and usable from any process.

Not for: reading counters (`testbed.measure.host` does that) or deciding what a point's
parameters were (the experiment framework does that).

Rates always divide by the MEASURED elapsed time between two samples, never by the interval
the sampler meant to wait: a sampler that oversleeps by 10 % would otherwise report 10 % too
much.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------------------------------------
# Rates from counters


def _check_samples(times_s: Sequence[float], counts: Sequence[float]) -> None:
    if len(times_s) != len(counts):
        raise ValueError(f"{len(times_s)} timestamps but {len(counts)} counter readings")
    if len(times_s) < 2:
        raise ValueError("a rate needs at least two counter samples")
    for i in range(1, len(times_s)):
        if not times_s[i] > times_s[i - 1]:
            raise ValueError(
                f"timestamps must increase: sample {i} at {times_s[i]!r} s "
                f"follows {times_s[i - 1]!r} s"
            )
        if counts[i] < counts[i - 1]:
            raise ValueError(
                f"counter went backwards at sample {i} ({counts[i - 1]!r} -> "
                f"{counts[i]!r}): was it reset or did it wrap?"
            )


def interval_rates(times_s: Sequence[float], counts: Sequence[float]) -> list[float]:
    """The rate over each interval between consecutive samples: delta count / measured delta t.

    ``times_s`` are the instants the counters were read (e.g. ``time.monotonic()``), however
    irregular; ``counts`` the cumulative counter at those instants. Returns one rate per
    interval (``len(times_s) - 1`` values), in counts per second.
    """
    _check_samples(times_s, counts)
    return [
        (counts[i] - counts[i - 1]) / (times_s[i] - times_s[i - 1]) for i in range(1, len(times_s))
    ]


def mean_rate(times_s: Sequence[float], counts: Sequence[float]) -> float:
    """The rate over the whole sampled span: (last - first count) / (last - first instant)."""
    _check_samples(times_s, counts)
    return (counts[-1] - counts[0]) / (times_s[-1] - times_s[0])


# ---------------------------------------------------------------------------------------------
# Fits and distributions


@dataclass(frozen=True)
class LinearFit:
    """y = slope * x + intercept by ordinary least squares; r2 is the coefficient of
    determination (1 - SS_res / SS_tot), 1.0 for a perfect fit of constant data."""

    slope: float
    intercept: float
    r2: float
    n: int

    def predict(self, x: float) -> float:
        return self.slope * x + self.intercept


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> LinearFit:
    """Least-squares line through (xs, ys). Needs two or more distinct x values."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values but {len(ys)} y values")
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError("a line needs at least two distinct x values")
    slope, intercept = np.polyfit(x, y, 1)
    ss_res = float(np.sum((y - (slope * x + intercept)) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0:
        r2 = 1.0 if math.isclose(ss_res, 0.0, abs_tol=1e-12) else 0.0
    else:
        r2 = 1.0 - ss_res / ss_tot
    return LinearFit(float(slope), float(intercept), r2, len(x))


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    """Percentiles by linear interpolation between closest ranks (numpy's default), keyed
    ``p50``, ``p99``, ``p99.9``..."""
    if len(values) == 0:
        raise ValueError("percentiles of no values")
    for q in qs:
        if not 0 <= q <= 100:
            raise ValueError(f"a percentile must be from 0 to 100, got {q!r}")
    result = np.percentile(np.asarray(values, dtype=float), list(qs))
    return {f"p{q:g}": float(v) for q, v in zip(qs, result, strict=True)}


# ---------------------------------------------------------------------------------------------
# Saturation knee


@dataclass(frozen=True)
class Knee:
    """Where a system stops carrying what it is offered (see `find_knee` for the method).

    ``knee_offered_pps``: the highest offered rate still carried within tolerance (None when
    even the lowest was not). ``saturated``: some higher offered rate was not carried.
    ``capacity_pps``: c of the least-squares fit delivered = min(offered, c) (None when not
    saturated: the capacity is then at least the highest offered rate). ``plateau_pps``: median
    delivered rate over the points above the knee. ``plateau_fit``: delivered against offered
    over those points (needs two); a slope near 0 is a flat ceiling, a negative one means
    overload costs throughput (receive livelock).
    """

    knee_offered_pps: float | None
    knee_delivered_pps: float | None
    saturated: bool
    capacity_pps: float | None
    plateau_pps: float | None
    plateau_fit: LinearFit | None


def _grouped_medians(offered: Sequence[float], *series: Sequence[float]) -> list[tuple[float, ...]]:
    """Rows (offered, median of each series) per distinct offered rate, sorted by offered."""
    groups: dict[float, list[list[float]]] = {}
    for i, x in enumerate(offered):
        groups.setdefault(float(x), [[] for _ in series])
        for j, s in enumerate(series):
            groups[float(x)][j].append(float(s[i]))
    return [(x, *(statistics.median(v) for v in groups[x])) for x in sorted(groups)]


def _hockey_stick_capacity(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The c minimising sum (y - min(x, c))^2 over points sorted by x (exact, O(n^2)).

    For c between the k-th and (k+1)-th x, points up to k contribute a constant and the rest
    (y - c)^2, minimised by their mean clamped to that interval; the best interval wins.
    """
    best_sse, best_c = math.inf, xs[-1]
    bounds = [0.0, *xs]
    for k in range(len(xs)):  # k points lie below c
        above = ys[k:]
        c = min(max(statistics.fmean(above), bounds[k]), bounds[k + 1])
        sse = sum((y - x) ** 2 for x, y in zip(xs[:k], ys[:k], strict=True))
        sse += sum((y - c) ** 2 for y in above)
        if sse < best_sse:
            best_sse, best_c = sse, c
    return best_c


def find_knee(
    offered_pps: Sequence[float],
    delivered_pps: Sequence[float],
    *,
    tolerance_frac: float = 0.05,
    loss_frac: Sequence[float] | None = None,
    max_loss_frac: float = 0.01,
) -> Knee:
    """Find the saturation knee of an offered-vs-delivered curve.

    Method:
    1. Repeats are merged: for each distinct offered rate, the median delivered rate (and
       median loss, when given).
    2. A rate is *carried* when delivered >= (1 - tolerance_frac) * offered and, if
       ``loss_frac`` is given (e.g. lost/sent as the receiver counted it), its loss is at most
       ``max_loss_frac``. Without ``loss_frac`` the loss is 1 - delivered/offered, which the
       first test already bounds.
    3. The knee is the HIGHEST carried offered rate. Taking the highest rather than the end of
       the first carried run makes one noisy dip below the knee harmless; above a real knee
       delivered/offered only falls, so a spurious pass there is unlikely.
    4. The capacity is fitted over all merged points as delivered = min(offered, c) by least
       squares (exact search, see `_hockey_stick_capacity`): unlike the knee it does not snap to
       the grid of offered rates. It is reported only when some rate above the knee was not
       carried.
    5. The plateau is the merged points above the knee: their median delivered rate and a
       line through them.

    ``delivered_pps`` must count the same packets as ``offered_pps`` (e.g. inbound only, not
    in + out), so that "carried" means delivered == offered.
    """
    if len(offered_pps) != len(delivered_pps):
        raise ValueError(
            f"{len(offered_pps)} offered rates but {len(delivered_pps)} delivered rates"
        )
    if loss_frac is not None and len(loss_frac) != len(offered_pps):
        raise ValueError(f"{len(offered_pps)} offered rates but {len(loss_frac)} loss values")
    if not offered_pps:
        raise ValueError("a knee needs at least one point")
    if any(not x > 0 for x in offered_pps):
        raise ValueError("offered rates must be positive")
    if not 0 <= tolerance_frac < 1:
        raise ValueError(f"tolerance_frac must be from 0 to below 1, got {tolerance_frac!r}")

    if loss_frac is None:
        rows = [(x, y, None) for x, y in _grouped_medians(offered_pps, delivered_pps)]
    else:
        rows = _grouped_medians(offered_pps, delivered_pps, loss_frac)
    carried = [
        y >= (1 - tolerance_frac) * x and (loss is None or loss <= max_loss_frac)
        for x, y, loss in rows
    ]
    knee_index = max((i for i, ok in enumerate(carried) if ok), default=None)
    above = rows if knee_index is None else rows[knee_index + 1 :]
    saturated = bool(above)

    xs = [r[0] for r in rows]
    ys = [r[1] for r in rows]
    plateau_x = [r[0] for r in above]
    plateau_y = [r[1] for r in above]
    return Knee(
        knee_offered_pps=None if knee_index is None else xs[knee_index],
        knee_delivered_pps=None if knee_index is None else ys[knee_index],
        saturated=saturated,
        capacity_pps=_hockey_stick_capacity(xs, ys) if saturated else None,
        plateau_pps=statistics.median(plateau_y) if plateau_y else None,
        plateau_fit=linear_fit(plateau_x, plateau_y) if len(plateau_x) >= 2 else None,
    )


# ---------------------------------------------------------------------------------------------
# CPU accounting and fidelity


def cpu_busy_fraction(before: Sequence[int], after: Sequence[int]) -> float:
    """Busy fraction of a CPU line of /proc/stat between two snapshots.

    ``before`` and ``after`` are the line's numbers in the kernel's order: user, nice, system,
    idle, iowait, irq, softirq, steal (guest and guest_nice may follow; they are already inside
    user and nice, so they are ignored). Idle time is idle + iowait; busy is the rest of the
    time that passed. For the ``cpu`` line this is the whole machine (1.0 = every core busy).
    """
    if len(before) < 8 or len(after) < 8:
        raise ValueError("a /proc/stat cpu line has at least 8 numbers (user .. steal)")
    delta = [a - b for a, b in zip(after[:8], before[:8], strict=True)]
    if any(d < 0 for d in delta):
        raise ValueError("CPU time went backwards: snapshots swapped or from different machines")
    total = sum(delta)
    if total == 0:
        raise ValueError("no CPU time passed between the two snapshots")
    idle = delta[3] + delta[4]
    return (total - idle) / total


def cores_used(usage_before_s: float, usage_after_s: float, elapsed_s: float) -> float:
    """CPU consumed between two cumulative usage readings (a cgroup's, a process's), in cores:
    1.0 = one core busy for the whole ``elapsed_s``."""
    if not elapsed_s > 0:
        raise ValueError(f"elapsed time must be positive, got {elapsed_s!r}")
    if usage_after_s < usage_before_s:
        raise ValueError("CPU usage went backwards: readings swapped or the group was recreated")
    return (usage_after_s - usage_before_s) / elapsed_s


MIN_ACHIEVED_FRAC = 0.95
MAX_HOST_BUSY_FRAC = 0.90


@dataclass(frozen=True)
class Fidelity:
    """Whether a point measured the system under test rather than the emulator; the reasons
    say why not."""

    reasons: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.reasons


def check_fidelity(
    *,
    target_pps: float | None = None,
    achieved_pps: float | None = None,
    host_cpu_busy_frac: float | None = None,
    min_achieved_frac: float = MIN_ACHIEVED_FRAC,
    max_host_busy_frac: float = MAX_HOST_BUSY_FRAC,
) -> Fidelity:
    """A point is invalid when the load generator did not reach its target (achieved below
    ``min_achieved_frac`` of target: the offered load was not what the x axis says) or when the
    emulation host was CPU-saturated (busy fraction at or above ``max_host_busy_frac``: the
    emulator, not the director, may have been the bottleneck). Checks whose inputs are None are
    skipped."""
    reasons = []
    if target_pps is not None and achieved_pps is not None:
        if not target_pps > 0:
            raise ValueError(f"target_pps must be positive, got {target_pps!r}")
        frac = achieved_pps / target_pps
        if frac < min_achieved_frac:
            reasons.append(
                f"load generator reached {achieved_pps:,.0f} of {target_pps:,.0f} pps "
                f"({frac:.1%} < {min_achieved_frac:.0%} of target)"
            )
    if host_cpu_busy_frac is not None and host_cpu_busy_frac >= max_host_busy_frac:
        reasons.append(
            f"emulation host CPU {host_cpu_busy_frac:.1%} busy "
            f"(>= {max_host_busy_frac:.0%}): the emulator may be the bottleneck"
        )
    return Fidelity(tuple(reasons))
