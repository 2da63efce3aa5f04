"""testbed.report: rendering a run into figures and report.md, the shared style, and the
curves (`RunData.series`) report hooks draw."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from testbed.cli.main import app
from testbed.harness import EXPERIMENTS
from testbed.harness.framework import EXTRA_MODULES_ENV, plan_sweep
from testbed.harness.results import load_run
from testbed.harness.runner import create_run, execute
from testbed.report import Figure, ReportError, Section, render_run, style
from tests.unit import experiments_fixture

SELFTEST = experiments_fixture.EXPERIMENT
runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """dr and nat at 1000, 2000 and 3000 pps, twice, with the load generator capped at
    2500 pps: every 3000 pps point is invalid."""
    sweep = plan_sweep(
        SELFTEST, ["rate_pps=1000,2000,3000", "layout=dr,nat", "sender_max_pps=2500"], repeat=2
    )
    path = create_run(sweep, tmp_path_factory.mktemp("results"))
    execute(path, show_progress=False)
    return path


def test_series_average_valid_repeats_and_set_invalid_points_apart(run_dir):
    run = load_run(run_dir)
    assert run.swept == ["rate_pps", "layout"]
    curves = run.series("rate_pps", "delivered_pps", by=["layout"])
    assert [c.label for c in curves] == ["dr", "nat"]
    dr, nat = curves
    assert dr.x == [1000.0, 2000.0] and dr.n == [2, 2]  # 3000 is invalid (sender capped)
    assert dr.y == pytest.approx([1000.0, 2000.0])
    assert dr.invalid_x == [3000.0, 3000.0] and dr.invalid_y == pytest.approx([2500.0, 2500.0])
    assert nat.y == pytest.approx([1000.0, 1500.0])  # half the capacity
    assert nat.key == {"layout": "nat"}
    (whole,) = run.series("rate_pps", "achieved_pps")
    assert whole.label == "" and whole.x == [1000.0, 2000.0]


def test_point_values_name_parameters_or_figures(run_dir):
    point = load_run(run_dir).points[0]
    assert point.value("rate_pps") == 1000.0
    assert point.value("delivered_pps") == pytest.approx(1000.0)
    assert point.params.layout == "dr"  # the typed dataclass
    with pytest.raises(KeyError, match="neither a parameter"):
        point.value("latency_ms")
    assert point.samples()[0] == {"t_s": 0.0, "sent_pkts": 0.0, "delivered_pkts": 0.0}


def test_render_writes_figures_and_the_report(run_dir):
    path = render_run(run_dir)
    out = run_dir / "report"
    assert path == out / "report.md"
    assert (out / "delivered.png").read_bytes().startswith(b"\x89PNG")
    svg = (out / "delivered.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<dc:date>" not in svg
    text = path.read_text()
    assert text.startswith("# selftest: Synthetic saturating director")
    assert "lvs-testbed experiment run selftest --param rate_pps=1000,2000,3000" in text
    assert "![Delivered against offered load](delivered.png)" in text
    assert "dr: carried up to 2,000 pps" in text  # the finding the experiment wrote
    assert "## Method" in text
    assert "| `capacity_pps` | 3000 (default) |" in text
    assert "**invalid**: load generator reached 2,500 of 3,000 pps" in text
    assert "| kernel |" in text and "| packages |" in text
    assert "12 points, 12 measured (4 invalid), 0 failed, 0 not run" in text


def test_rendering_twice_gives_the_same_files(run_dir):
    render_run(run_dir)
    first = {p.name: p.read_bytes() for p in (run_dir / "report").iterdir()}
    render_run(run_dir)
    second = {p.name: p.read_bytes() for p in (run_dir / "report").iterdir()}
    assert first == second
    assert set(first) == {"report.md", "delivered.png", "delivered.svg"}


def test_stale_figures_are_removed(run_dir):
    (run_dir / "report").mkdir(exist_ok=True)
    (run_dir / "report" / "old.png").write_bytes(b"x")
    render_run(run_dir)
    assert not (run_dir / "report" / "old.png").exists()


def _with_report(monkeypatch, report) -> None:
    monkeypatch.setitem(EXPERIMENTS, "selftest", dataclasses.replace(SELFTEST, report=report))


def test_a_failing_report_hook_is_an_error_not_silence(run_dir, monkeypatch):
    def broken(run):
        raise ZeroDivisionError("no data")

    _with_report(monkeypatch, broken)
    with pytest.raises(
        ReportError, match="report hook of selftest failed: ZeroDivisionError: no data"
    ):
        render_run(run_dir)


def test_a_failing_drawing_and_bad_names_are_errors(run_dir, monkeypatch):
    def bad_draw(fig):
        raise ValueError("no axes")

    _with_report(monkeypatch, lambda run: [Figure("f", "F", bad_draw)])
    with pytest.raises(ReportError, match="drawing figure 'f' failed: ValueError: no axes"):
        render_run(run_dir)
    _with_report(monkeypatch, lambda run: [Figure("a b", "F", lambda fig: None)])
    with pytest.raises(ReportError, match="figure name 'a b'"):
        render_run(run_dir)
    _with_report(monkeypatch, lambda run: ["text"])
    with pytest.raises(ReportError, match="not a Figure or Section"):
        render_run(run_dir)


def test_an_interrupted_run_renders_with_pending_points(tmp_path):
    sweep = plan_sweep(SELFTEST, ["rate_pps=1000,2000"])
    path = create_run(sweep, tmp_path)
    text = render_run(path).read_text()  # nothing ran yet
    assert "2 points, 0 measured (0 invalid), 0 failed, 2 not run" in text
    assert "| pending |" in text


def test_a_report_of_sections_only(run_dir, monkeypatch):
    _with_report(monkeypatch, lambda run: [Section("Notes", "Only text.\n")])
    text = render_run(run_dir).read_text()
    assert "## Notes\n\nOnly text.\n" in text
    assert sorted(p.name for p in (run_dir / "report").iterdir()) == ["report.md"]


def test_cli_report(run_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(EXTRA_MODULES_ENV, experiments_fixture.__name__)
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "report.md" in result.output
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "params.json is missing" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2


# -- style -------------------------------------------------------------------------------------


def test_colours_are_fixed_per_layout_and_stable_for_other_keys():
    assert style.colour("dr") == style.COLOURS["dr"]
    assert style.colour("nat") != style.colour("dr")
    assert style.colour("batch=64") == style.colour("batch=64")
    assert style.colour("batch=64") in style.PALETTE


@pytest.mark.parametrize(
    "name, label",
    [
        ("delivered_pps", "delivered (packets/s)"),
        ("quota_cores", "quota (cores)"),
        ("bw_mbit", "bw (Mbit/s)"),
        ("wait_us", "wait (µs)"),
        ("loss_frac", "loss (fraction)"),
        ("layout", "layout"),
        ("table_bits", "table (bits)"),
    ],
)
def test_axis_labels_carry_the_unit_from_the_name(name, label):
    assert style.axis_label(name) == label


def test_the_backend_is_headless():
    import matplotlib

    assert matplotlib.get_backend().lower() == "agg"
