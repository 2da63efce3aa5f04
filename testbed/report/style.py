"""One look for every plot of the testbed: headless backend, size, colours, labels, saving.

For: experiments' report hooks and `testbed.report.render`. Importing this module forces
matplotlib's Agg backend, so plots are made the same way on a headless VM, in CI and on a
desktop. Figures are `matplotlib.figure.Figure` objects made here, never through pyplot, so
no global figure state survives from one plot to the next. The same key (a layout such as
``nat``, an I/O mode such as ``ring``) always gets the same colour, in every figure of every
report. Saving is deterministic: the same figure gives byte-identical PNG and SVG files (no
date in the SVG, fixed SVG ids), so rendering a run twice changes nothing.

Not for: deciding what to plot (the experiment's report hook) or writing the report.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=True)

from cycler import cycler  # noqa: E402 - after the backend is chosen
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from testbed.harness.results import Series  # noqa: E402

FIGSIZE_IN = (6.4, 4.0)
DPI = 150

# Okabe & Ito's colour-blind-safe palette.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
COLOURS = {
    # layouts
    "dr": "#0072B2",
    "nat": "#D55E00",
    "nat1": "#009E73",
    "tun": "#CC79A7",
    # director packet I/O modes
    "ring": "#E69F00",
    "frame": "#56B4E9",
}
INVALID_COLOUR = "#999999"

RC = {
    "figure.figsize": FIGSIZE_IN,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=PALETTE),
    "legend.frameon": False,
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
    "svg.hashsalt": "lvs-testbed",  # fixed ids inside SVG files
    "svg.fonttype": "path",  # text as paths: the same drawing without the fonts installed
}

UNITS = {
    "pps": "packets/s",
    "mbit": "Mbit/s",
    "bps": "bit/s",
    "s": "s",
    "ms": "ms",
    "us": "µs",
    "cores": "cores",
    "frac": "fraction",
    "pct": "%",
    "bytes": "bytes",
    "pkts": "packets",
    "bits": "bits",
}


@contextmanager
def context() -> Iterator[None]:
    """The shared style, for making and saving figures (what `render` wraps around hooks)."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(size_in: tuple[float, float] = FIGSIZE_IN) -> Figure:
    return Figure(figsize=size_in, dpi=DPI, layout="constrained")


def colour(key: str) -> str:
    """The colour of a layout, mode or any other series key; unknown keys get a palette colour
    chosen by a stable hash, so they keep it from run to run."""
    if key in COLOURS:
        return COLOURS[key]
    return PALETTE[zlib.crc32(key.encode()) % len(PALETTE)]


def axis_label(name: str) -> str:
    """A label from a name with its unit: ``delivered_pps`` -> ``delivered (packets/s)``."""
    stem, _, suffix = name.rpartition("_")
    if stem and suffix in UNITS:
        return f"{stem.replace('_', ' ')} ({UNITS[suffix]})"
    return name.replace("_", " ")


MEASUREMENT_MARKER_SIZE = 4
MEASUREMENT_ALPHA = 0.7


def plot_series(ax: Axes, series: Series, label: str | None = None) -> None:
    """A series as a line through the means, in its key's colour, with every measurement
    behind each mean drawn beside it as a small hollow point (so the spread and the number
    of repeats show, not only the average); its invalid points as grey crosses (labelled
    once per axes). A series made by hand without its measurements gets min-max bars."""
    name = series.label if label is None else label
    col = colour(series.label)
    if series.values:
        ax.plot(series.x, series.y, color=col, marker="o", label=name or None)
        _plot_measurements(
            ax,
            [x for x, vals in zip(series.x, series.values, strict=True) for _ in vals],
            [v for vals in series.values for v in vals],
            col,
        )
    else:
        yerr = [
            [m - lo for m, lo in zip(series.y, series.y_min, strict=True)],
            [hi - m for m, hi in zip(series.y, series.y_max, strict=True)],
        ]
        ax.errorbar(
            series.x, series.y, yerr=yerr, color=col, marker="o", capsize=3, label=name or None
        )
    if series.invalid_x:
        _, labels = ax.get_legend_handles_labels()
        ax.plot(
            series.invalid_x,
            series.invalid_y,
            linestyle="none",
            marker="x",
            color=INVALID_COLOUR,
            label="_nolegend_" if "invalid" in labels else "invalid",
        )


def _plot_measurements(ax: Axes, xs: list[float], ys: list[float], col: str) -> None:
    """Single measurements as small hollow points, labelled once per axes."""
    _, labels = ax.get_legend_handles_labels()
    ax.plot(
        xs,
        ys,
        linestyle="none",
        marker="o",
        markersize=MEASUREMENT_MARKER_SIZE,
        markerfacecolor="none",
        markeredgecolor=col,
        alpha=MEASUREMENT_ALPHA,
        label="_nolegend_" if "each measurement" in labels else "each measurement",
    )


def plot_bars(ax: Axes, groups: dict[str, list[float]], colours: list[str] | None = None) -> None:
    """One bar per group at the mean of its measurements, each measurement drawn on it as a
    point (spread across the bar's width in a fixed order, so they do not hide each other).
    Groups without measurements get no bar."""
    labels = [k for k, v in groups.items() if v]
    means = [sum(groups[k]) / len(groups[k]) for k in labels]
    cols = colours or [colour(k) for k in labels]
    ax.bar(labels, means, color=cols, alpha=0.6)
    for i, k in enumerate(labels):
        vals = groups[k]
        offsets = (
            [0.0]
            if len(vals) == 1
            else [-0.25 + 0.5 * j / (len(vals) - 1) for j in range(len(vals))]
        )
        _plot_measurements(ax, [i + o for o in offsets], vals, "black")


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.svg``; the same figure gives the same bytes."""
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    with context():
        fig.savefig(paths[0])
        fig.savefig(paths[1], metadata={"Date": None})
    return paths
