"""The experiment machinery: how an experiment is declared and swept (`framework`), run one
process per point (`runner`, `point`), stored and read back (`results`, `environment`), and
the measurements the layout experiments share (`trials`: a trial at an offered rate, a
capacity search, table pre-fill).

The experiments themselves are files in the checkout's ``experiments/`` folder, loaded by path
(`framework.experiment_modules`); copy one to make a new experiment. The report and its plots
are `testbed.report`, above this package. Importing it imports neither Mininet nor matplotlib.
"""

from __future__ import annotations

from testbed.harness.framework import (
    EXPERIMENTS,
    Experiment,
    PointContext,
    PointResult,
    get_experiment,
    load_experiments,
    register,
)

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "PointContext",
    "PointResult",
    "get_experiment",
    "load_experiments",
    "register",
]
