"""What a reader and an experimenter get from the harness: one flat results.csv per run,
plots that show every measurement beside the mean, and an experiment of their own, copied
into the checkout's experiments/ folder, found by `experiment list` and run by name or path.

Points run the no-root ``selftest`` experiment of `tests.unit.experiments_fixture` (or a copy
of it) in real child processes: no Mininet.
"""

from __future__ import annotations

import csv
import json
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from testbed import REPO_ROOT
from testbed.cli.main import app
from testbed.harness import EXPERIMENTS
from testbed.harness.framework import EXTRA_MODULES_ENV, plan_sweep
from testbed.harness.results import TABLE_FILE, Series, load_run, table_rows
from testbed.harness.runner import create_run, execute
from tests.unit import experiments_fixture

runner = CliRunner()


def _table(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / TABLE_FILE).open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_writes_one_flat_table_a_row_per_point_and_repeat(tmp_path):
    sweep = plan_sweep(
        experiments_fixture.EXPERIMENT,
        ["rate_pps=1000,5000", "layout=dr,nat", "fail_at_pps=5000"],
        repeat=2,
    )
    run_dir = create_run(sweep, tmp_path)
    execute(run_dir, show_progress=False)
    rows = _table(run_dir)
    assert [r["point_id"] for r in rows] == [p.point_id for p in sweep.points]  # 2 x 2 x 2
    assert len(rows) == 8
    header = list(rows[0])
    assert header[:7] == [
        "point_id",
        "repeat",
        "status",
        "valid",
        "invalid_reasons",
        "error",
        "elapsed_s",
    ]
    for name in ("rate_pps", "layout", "capacity_pps", "achieved_pps", "delivered_pps"):
        assert name in header  # every parameter, swept or not, and every summary figure
    for row in rows:
        record = json.loads((run_dir / "points" / row["point_id"] / "result.json").read_text())
        assert row["status"] == record["status"] and row["layout"] == record["params"]["layout"]
        if record["status"] == "ok":
            assert float(row["delivered_pps"]) == pytest.approx(record["summary"]["delivered_pps"])
        else:  # the failed points: their error, and empty figure cells
            assert "synthetic failure" in row["error"] and row["delivered_pps"] == ""
    nat = [r for r in rows if r["layout"] == "nat" and r["status"] == "ok"]
    assert [float(r["delivered_pps"]) for r in nat] == [pytest.approx(1000.0)] * len(nat)


def test_a_summary_figure_named_like_a_column_is_prefixed_not_lost():
    rows = [
        {
            "point_id": "p1",
            "repeat": 0,
            "status": "ok",
            "valid": False,
            "invalid_reasons": ["sender short", "cpu"],
            "error": None,
            "elapsed_s": 1.5,
            "params": {"rate_pps": 10.0},
            "summary": {"rate_pps": 9.0, "status": "x", "loss_frac": 0.1},
        }
    ]
    header, flat = table_rows(rows)
    assert header[-3:] == ["summary_rate_pps", "summary_status", "loss_frac"]
    assert flat[0]["rate_pps"] == 10.0 and flat[0]["summary_rate_pps"] == 9.0
    assert flat[0]["invalid_reasons"] == "sender short; cpu"


def test_series_keep_every_measurement_and_plots_draw_each_beside_the_mean(tmp_path):
    from testbed.report import style

    sweep = plan_sweep(experiments_fixture.EXPERIMENT, ["rate_pps=1000,2000"], repeat=3)
    run_dir = create_run(sweep, tmp_path)
    execute(run_dir, show_progress=False)
    (series,) = load_run(run_dir).series("rate_pps", "delivered_pps", by=["layout"])
    assert [len(v) for v in series.values] == series.n == [3, 3]
    assert series.y == [pytest.approx(sum(v) / 3) for v in series.values]

    with style.context():
        ax = style.new_figure().subplots()
        style.plot_series(ax, series)
        lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["dr"].get_xdata()) == [1000.0, 2000.0]  # the means
    points = lines["each measurement"]
    assert list(points.get_xdata()) == [1000.0] * 3 + [2000.0] * 3
    assert list(points.get_ydata()) == [v for vals in series.values for v in vals]


def test_bar_plots_draw_each_measurement_on_its_bar():
    from testbed.report import style

    with style.context():
        ax = style.new_figure().subplots()
        style.plot_bars(ax, {"1 NIC": [10.0, 12.0, 14.0], "2 NICs": [20.0], "none": []})
        (points,) = [ln for ln in ax.get_lines() if ln.get_label() == "each measurement"][:1]
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == [pytest.approx(12.0), pytest.approx(20.0)]  # empty groups get no bar
    ys = [y for ln in ax.get_lines() for y in ln.get_ydata()]
    assert sorted(ys) == [10.0, 12.0, 14.0, 20.0]
    assert points.get_label() == "each measurement"


def test_a_hand_made_series_without_measurements_still_plots():
    from testbed.report import style

    series = Series("dr", {}, [1.0, 2.0], [5.0, 6.0], [4.0, 5.0], [6.0, 7.0], [2, 2], [], [])
    with style.context():
        ax = style.new_figure().subplots()
        style.plot_series(ax, series)
    assert ax.containers[0].get_label() == "dr"  # means with min-max bars


@pytest.fixture
def user_experiment(monkeypatch):
    """A user's experiment: a copy of the fixture's definition, renamed, placed in the
    checkout's experiments/ folder as a user would, and removed afterwards."""
    monkeypatch.delenv(EXTRA_MODULES_ENV, raising=False)
    tag = uuid.uuid4().hex[:8]
    name = f"user-copy-{tag}"
    path = REPO_ROOT / "experiments" / f"user_copy_{tag}.py"
    text = Path(experiments_fixture.__file__).read_text()
    assert 'name="selftest"' in text
    path.write_text(text.replace('name="selftest"', f'name="{name}"'))
    try:
        yield name, path
    finally:
        path.unlink(missing_ok=True)
        EXPERIMENTS.pop(name, None)
        for module in [m for m in sys.modules if m.endswith(f"user_copy_{tag}")]:
            del sys.modules[module]


def test_a_copied_experiment_is_listed_and_runs_by_path_and_by_name(user_experiment, tmp_path):
    name, path = user_experiment
    listed = runner.invoke(app, ["experiment", "list"], env={"COLUMNS": "300"})
    assert listed.exit_code == 0 and name in listed.output, listed.output
    relative = path.relative_to(REPO_ROOT)
    for how in (str(relative), name):
        result = runner.invoke(
            app,
            ["experiment", "run", how, "-p", "rate_pps=1000,4000", "--results", str(tmp_path)],
            env={"COLUMNS": "300"},
        )
        assert result.exit_code == 0, result.output
        assert "2 points: 2 measured (0 invalid), 0 failed" in result.output
    runs = sorted((tmp_path / name).iterdir())
    assert len(runs) == 2
    for run_dir in runs:
        assert json.loads((run_dir / "params.json").read_text())["module"] == str(path)
        assert [r["status"] for r in _table(run_dir)] == ["ok", "ok"]
        assert (run_dir / "report" / "report.md").exists()
