"""Experiments: each is one module here that declares an `Experiment` and registers it.

To add one, write ``testbed/experiments/<name>.py`` (see `framework` for the declaration)
and list the module in `MODULES` below; ``lvs-testbed experiment list`` then shows it. Modules
named in the environment variable ``LVS_TESTBED_EXPERIMENTS`` (comma-separated, full dotted
names) are loaded too: that is how the tests add their no-root ``selftest`` experiment, and
how out-of-tree experiments are tried without editing this file.

Importing this package imports neither Mininet nor matplotlib.
"""

from __future__ import annotations

from testbed.experiments.framework import (
    EXPERIMENTS,
    Experiment,
    PointContext,
    PointResult,
    get_experiment,
    load_experiments,
    register,
)

MODULES: tuple[str, ...] = ("capacity", "cpu_quota", "shaping", "coalescing", "nic_layout", "conntable", "conntable_size", "soak", "failover", "director_compare", "seed")
"""Experiment modules under testbed/experiments, by short name (``"seed_nat"`` for
``testbed.experiments.seed_nat``). The one place an experiment is listed."""

__all__ = [
    "EXPERIMENTS",
    "MODULES",
    "Experiment",
    "PointContext",
    "PointResult",
    "get_experiment",
    "load_experiments",
    "register",
]
