"""The experiment framework: declarations, parameter parsing, sweeps, the run directory,
one process per point, failures, timeouts, interruption and resume, and the CLI.

Points run the no-root ``selftest`` experiment of `tests.unit.experiments_fixture` in real
child processes, so the whole pipeline is exercised without Mininet.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from typer.testing import CliRunner

from testbed.cli.main import app
from testbed.harness import EXPERIMENTS, Experiment, PointResult, register
from testbed.harness.framework import (
    EXTRA_MODULES_ENV,
    ExperimentError,
    SweepError,
    experiment_modules,
    get_experiment,
    param_specs,
    params_from_dict,
    parse_assignments,
    plan_sweep,
)
from testbed.harness.results import load_run
from testbed.harness.runner import create_run, execute
from tests.unit import experiments_fixture
from tests.unit.experiments_fixture import SelftestParams

FIXTURE = experiments_fixture.__name__
SELFTEST = experiments_fixture.EXPERIMENT
REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def fixture_env(monkeypatch):
    monkeypatch.setenv(EXTRA_MODULES_ENV, FIXTURE)


def _run(tmp_path: Path, assignments: list[str], repeat: int = 1, **kwargs) -> tuple[Path, object]:
    sweep = plan_sweep(SELFTEST, assignments, repeat)
    run_dir = create_run(sweep, tmp_path / "results")
    return run_dir, execute(run_dir, show_progress=False, **kwargs)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- declarations and registry ---------------------------------------------------------------


def test_selftest_is_registered_with_its_module():
    assert EXPERIMENTS["selftest"] is SELFTEST
    assert SELFTEST.module == FIXTURE


def test_param_specs_describe_types_defaults_and_help():
    specs = {s.name: s for s in param_specs(SelftestParams)}
    assert list(specs)[:3] == ["rate_pps", "layout", "capacity_pps"]
    assert specs["rate_pps"].type_text == "float" and specs["rate_pps"].default == 1000.0
    assert specs["layout"].type_text == "one of dr, nat"
    assert specs["sender_max_pps"].type_text == "float or none"
    assert specs["n_samples"].type_text == "int"
    assert specs["rate_pps"].help == "Offered load, packets/s."


def _declare(params: type, name: str = "decl-test", description: str = "One line.") -> Experiment:
    return register(Experiment(name, description, params, lambda p, ctx: PointResult({})))


def test_a_parameter_without_default_or_help_is_refused():
    @dataclass
    class NoDefault:
        rate_pps: float = field(metadata={"help": "x"})

    @dataclass
    class NoHelp:
        rate_pps: float = 1.0

    with pytest.raises(ExperimentError, match="has no default"):
        _declare(NoDefault)
    with pytest.raises(ExperimentError, match="has no help"):
        _declare(NoHelp)


def test_unsupported_types_and_bad_defaults_are_refused():
    @dataclass
    class ListParam:
        rates_pps: list = field(default_factory=list, metadata={"help": "x"})

    @dataclass
    class BadDefault:
        rate_pps: int = field(default="fast", metadata={"help": "x"})

    with pytest.raises(ExperimentError, match="not supported"):
        _declare(ListParam)
    with pytest.raises(ExperimentError, match="default 'fast' is not int"):
        _declare(BadDefault)


def test_names_descriptions_and_duplicates_are_checked():
    @dataclass
    class Ok:
        rate_pps: float = field(default=1.0, metadata={"help": "x"})

    with pytest.raises(ExperimentError, match="lower case"):
        _declare(Ok, name="Bad Name")
    with pytest.raises(ExperimentError, match="one line"):
        _declare(Ok, description="two\nlines")
    with pytest.raises(ExperimentError, match="defined in both"):
        _declare(Ok, name="selftest")  # registered by the fixture module, not this one
    try:
        declared = _declare(Ok, name="decl-ok")
        assert declared.module == __name__
    finally:
        EXPERIMENTS.pop("decl-ok", None)


def test_experiment_modules_come_from_the_list_and_the_environment(monkeypatch):
    monkeypatch.setenv(EXTRA_MODULES_ENV, f" {FIXTURE} , other.module ,")
    assert experiment_modules()[-2:] == [FIXTURE, "other.module"]


def test_unknown_experiment_lists_the_known_ones(fixture_env):
    with pytest.raises(ExperimentError, match="unknown experiment 'nope'; known: .*selftest"):
        get_experiment("nope")


def test_a_broken_module_names_itself(monkeypatch):
    monkeypatch.setenv(EXTRA_MODULES_ENV, "tests.unit.no_such_experiment_module")
    with pytest.raises(ExperimentError, match="cannot import experiment module tests.unit.no_such"):
        get_experiment("selftest")


# -- parameter parsing -------------------------------------------------------------------------


def test_values_are_parsed_to_the_field_types():
    values = parse_assignments(
        SELFTEST,
        [
            "rate_pps=1000,2e3",
            "layout=nat",
            "sender_max_pps=none,1500",
            "n_samples=1e1",
        ],
    )
    assert values == {
        "rate_pps": [1000.0, 2000.0],
        "layout": ["nat"],
        "sender_max_pps": [None, 1500.0],
        "n_samples": [10],
    }
    assert type(values["rate_pps"][0]) is float and type(values["n_samples"][0]) is int


def test_repeated_options_add_values():
    assert parse_assignments(SELFTEST, ["rate_pps=1000", "rate_pps=2000,3000"]) == {
        "rate_pps": [1000.0, 2000.0, 3000.0]
    }


@pytest.mark.parametrize(
    "assignment, message",
    [
        (
            "rat_pps=1",
            "unknown parameter 'rat_pps' for experiment selftest; known: rate_pps, layout",
        ),
        ("rate_pps=fast", "rate_pps: 'fast' is not a number"),
        ("rate_pps=inf", "not a finite number"),
        ("n_samples=2.5", "n_samples: '2.5' is not an integer"),
        ("layout=tun", "layout: 'tun' is not one of dr, nat"),
        ("rate_pps=none", "'none' is not a number"),
        ("rate_pps", "expected NAME=VALUE"),
        ("rate_pps=1,1", "1 is given twice"),
        ("rate_pps=", "'' is not a number"),
    ],
)
def test_bad_assignments_are_refused(assignment, message):
    with pytest.raises(SweepError, match=message.replace("(", r"\(")):
        parse_assignments(SELFTEST, [assignment])


def test_every_problem_is_reported_at_once():
    with pytest.raises(SweepError) as err:
        parse_assignments(SELFTEST, ["bogus=1", "rate_pps=x", "layout=ring"])
    assert len(str(err.value).splitlines()) == 3


def test_bools_parse_from_words():
    @dataclass(frozen=True)
    class P:
        fast: bool = field(default=False, metadata={"help": "x"})
        mode: Literal[1, 2] = field(default=1, metadata={"help": "x"})

    exp = Experiment("bools", "x", P, lambda p, c: PointResult({}))
    assert parse_assignments(exp, ["fast=yes,off", "mode=2"]) == {
        "fast": [True, False],
        "mode": [2],
    }
    with pytest.raises(SweepError, match="not a boolean"):
        parse_assignments(exp, ["fast=maybe"])


def test_params_from_dict_checks_json_values():
    params = params_from_dict(SelftestParams, {"rate_pps": 2000, "layout": "nat"})
    assert params.rate_pps == 2000.0 and type(params.rate_pps) is float
    assert params.capacity_pps == 3000.0  # missing: default
    with pytest.raises(ExperimentError, match="parameters speed are not in SelftestParams"):
        params_from_dict(SelftestParams, {"speed": 1})
    with pytest.raises(ValueError, match="is not one of dr, nat"):
        params_from_dict(SelftestParams, {"layout": "tun"})


# -- sweeps ------------------------------------------------------------------------------------


def test_a_2x2_sweep_with_repeats_expands_to_every_combination():
    sweep = plan_sweep(SELFTEST, ["layout=dr,nat", "rate_pps=1000,2000"], repeat=2)
    assert len(sweep.points) == 8
    # field order (rate_pps before layout), last parameter fastest, repeats outermost
    combos = [(p.params["rate_pps"], p.params["layout"], p.repeat) for p in sweep.points]
    assert combos[:4] == [
        (1000.0, "dr", 0),
        (1000.0, "nat", 0),
        (2000.0, "dr", 0),
        (2000.0, "nat", 0),
    ]
    assert [c[2] for c in combos[4:]] == [1, 1, 1, 1]
    assert sweep.points[0].point_id == "000-rate_pps=1000,layout=dr-r0"
    assert sweep.points[7].point_id == "003-rate_pps=2000,layout=nat-r1"
    assert len({p.point_id for p in sweep.points}) == 8
    assert all(p.params["capacity_pps"] == 3000.0 for p in sweep.points)  # defaults filled in


def test_single_values_do_not_go_into_point_ids():
    sweep = plan_sweep(SELFTEST, ["layout=nat"])
    assert [p.point_id for p in sweep.points] == ["000-r0"]
    assert sweep.points[0].params["layout"] == "nat"


def test_the_command_line_of_a_sweep_reads_back_the_same():
    sweep = plan_sweep(SELFTEST, ["rate_pps=1000,2500.5", "sender_max_pps=none"], repeat=3)
    command = sweep.command()
    assert command == (
        "lvs-testbed experiment run selftest --param rate_pps=1000,2500.5 "
        "--param sender_max_pps=none --repeat 3"
    )
    args = command.split()[4:]
    again = plan_sweep(SELFTEST, args[1:-2:2], repeat=int(args[-1]))
    assert again.values == sweep.values and [p.point_id for p in again.points] == [
        p.point_id for p in sweep.points
    ]


def test_values_the_dataclass_refuses_stop_the_sweep_before_it_runs():
    with pytest.raises(SweepError, match="rate_pps=-5: rate_pps must be positive"):
        plan_sweep(SELFTEST, ["rate_pps=1000,-5"])
    with pytest.raises(SweepError, match="--repeat must be at least 1"):
        plan_sweep(SELFTEST, [], repeat=0)


# -- running -----------------------------------------------------------------------------------


def test_a_sweep_writes_the_run_directory(tmp_path):
    run_dir, outcome = _run(
        tmp_path, ["rate_pps=1000,2000", "layout=dr,nat", "fail_at_pps=2000"], repeat=2
    )
    assert run_dir.parent == tmp_path / "results" / "selftest"
    assert outcome.ran == 8 and not outcome.interrupted
    assert outcome.counts == {
        "n_points": 8,
        "n_ok": 4,
        "n_invalid": 0,
        "n_failed": 4,
        "n_pending": 0,
    }

    spec = json.loads((run_dir / "params.json").read_text())
    assert spec["experiment"] == "selftest" and spec["module"] == FIXTURE
    assert spec["values"] == {
        "rate_pps": [1000.0, 2000.0],
        "layout": ["dr", "nat"],
        "fail_at_pps": [2000.0],
    }
    assert spec["repeat"] == 2 and len(spec["points"]) == 8
    assert spec["run_id"] == run_dir.name

    env = json.loads((run_dir / "env.json").read_text())
    for key in ("kernel", "python", "packages", "git_revision", "git_dirty", "cpu_count", "doctor"):
        assert key in env
    assert set(env["packages"]) >= {"mininet", "os-ken", "typer", "matplotlib", "iperf3"}
    assert "mininet" not in env["doctor"]  # its probe imports Mininet

    index = _jsonl(run_dir / "points.jsonl")
    assert [r["point_id"] for r in index] == [p["point_id"] for p in spec["points"]]

    for point in spec["points"]:
        pdir = run_dir / "points" / point["point_id"]
        result = json.loads((pdir / "result.json").read_text())
        assert (pdir / "point.log").exists()
        if point["params"]["rate_pps"] == 2000.0:
            assert result["status"] == "failed" and not result["valid"]
            assert result["error"] == "RuntimeError: synthetic failure at 2000 pps"
            assert "Traceback" in (pdir / "point.log").read_text()
            continue
        assert result["status"] == "ok" and result["valid"]
        assert result["summary"]["delivered_pps"] == pytest.approx(1000.0)
        assert result["samples"] == "samples.csv"
        with (pdir / "samples.csv").open() as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["t_s", "sent_pkts", "delivered_pkts"] and len(rows) == 7

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "incomplete" and summary["n_failed"] == 4
    assert [r["point_id"] for r in summary["points"]] == [p["point_id"] for p in spec["points"]]
    row = summary["points"][0]
    assert row["params"]["rate_pps"] == 1000.0 and row["summary"]["achieved_pps"] == pytest.approx(
        1000.0
    )
    assert len(summary["attempts"]) == 1 and summary["attempts"][0]["outcome"] == "finished"
    assert summary["delivering_points"] == summary["n_ok"]  # the experiment's summarize hook


def test_an_under_target_sender_makes_an_invalid_point(tmp_path):
    run_dir, outcome = _run(tmp_path, ["rate_pps=1000,2000", "sender_max_pps=1500"])
    assert outcome.counts["n_invalid"] == 1 and outcome.counts["n_ok"] == 2
    run = load_run(run_dir)
    bad = run.points[1]
    assert bad.status == "ok" and not bad.valid
    assert "load generator reached 1,500 of 2,000 pps" in bad.invalid_reasons[0]


def test_a_point_that_dies_or_hangs_is_recorded_and_the_sweep_goes_on(tmp_path):
    run_dir, outcome = _run(tmp_path, ["rate_pps=1000,2000,3000", "abort_at_pps=2000"])
    assert outcome.counts["n_ok"] == 2 and outcome.counts["n_failed"] == 1
    assert "exited with code 3 without a result" in outcome.failures[0][1]

    start = time.monotonic()
    run_dir, outcome = _run(tmp_path, ["rate_pps=1000,2000", "sleep_s=30"], timeout_s=0.5)
    assert time.monotonic() - start < 15
    assert [f[1].split(";")[0] for f in outcome.failures] == ["timed out after 0.5 s"] * 2
    assert (
        "stopped by the runner"
        in (run_dir / "points" / "000-rate_pps=1000-r0" / "point.log").read_text()
    )


def test_resume_runs_only_missing_and_failed_points(tmp_path):
    run_dir, first = _run(tmp_path, ["rate_pps=1000,2000,3000", "fail_at_pps=2000"])
    assert first.counts["n_failed"] == 1
    # Forget one good point, as if the sweep had been killed before it ran.
    missing = run_dir / "points" / "002-rate_pps=3000-r0"
    (missing / "result.json").unlink()
    before = json.loads((run_dir / "points" / "000-rate_pps=1000-r0" / "result.json").read_text())
    second = execute(run_dir, show_progress=False)
    assert second.ran == 2  # the failed point (fails again) and the missing one
    assert second.counts["n_ok"] == 2 and second.counts["n_failed"] == 1
    after = json.loads((run_dir / "points" / "000-rate_pps=1000-r0" / "result.json").read_text())
    assert after == before  # a measured point is never rerun
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [a["points_run"] for a in summary["attempts"]] == [3, 2]
    assert execute(run_dir, show_progress=False).ran == 1  # only the failed one, again


def _wait_for(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if text.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_ctrl_c_keeps_what_was_measured_and_resume_finishes_the_run(tmp_path):
    results = tmp_path / "results"
    env = {**os.environ, EXTRA_MODULES_ENV: FIXTURE}
    parent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testbed",
            "experiment",
            "run",
            "selftest",
            "--param",
            "rate_pps=1000,2000,3000,4000",
            "--param",
            "sleep_s=1.5",
            "--results",
            str(results),
            "--no-progress",
            "--no-report",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A shell's background job (CI started with `&`) ignores SIGINT, and Python then
        # keeps ignoring it: Ctrl-C as a terminal sends it needs the default disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for(lambda: any(results.glob("selftest/*/points.jsonl")))
        run_dir = next(results.glob("selftest/*"))
        parent.send_signal(signal.SIGINT)
        out, _ = parent.communicate(timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert parent.returncode == 130, out
    assert f"--resume {run_dir}" in out
    _wait_for(lambda: not _processes_mentioning(str(run_dir)), timeout_s=5)  # no point left running

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert 1 <= summary["n_ok"] < 4 and summary["n_pending"] == 4 - summary["n_ok"]
    statuses = {r["status"] for r in summary["points"]}
    assert statuses <= {"ok", "interrupted", "pending"}
    measured = len(_jsonl(run_dir / "points.jsonl"))

    outcome = execute(run_dir, show_progress=False)
    assert outcome.ran == 4 - measured
    assert outcome.counts["n_ok"] == 4
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert [a["outcome"] for a in summary["attempts"]] == ["interrupted", "finished"]
    assert len(_jsonl(run_dir / "points.jsonl")) == 4


def test_the_parent_imports_neither_mininet_nor_matplotlib():
    code = (
        "import sys\n"
        "import testbed.cli.experiment, testbed.harness.runner, testbed.harness.point\n"
        "import testbed.measure.host, testbed.report\n"
        "from testbed.harness.environment import collect_env\n"
        "collect_env()\n"
        "bad = [m for m in ('mininet', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "experiment" in result.output and "report" in result.output
    result = runner.invoke(app, ["experiment", "run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--param", "--repeat", "--results", "--resume", "--timeout-s"):
        assert option in result.output


def test_cli_list_and_show(fixture_env):
    result = runner.invoke(app, ["experiment", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (
        "selftest" in result.output and "rate_pps=1000: Offered load, packets/s." in result.output
    )
    result = runner.invoke(app, ["experiment", "show", "selftest"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "one of dr, nat" in result.output and "needs root: no" in result.output


def test_cli_unknown_experiment(fixture_env):
    result = runner.invoke(app, ["experiment", "show", "nope"])
    assert result.exit_code == 2 and "known: " in result.output and "selftest" in result.output


def test_cli_bad_parameters_run_nothing(fixture_env, tmp_path):
    results = tmp_path / "results"
    result = runner.invoke(
        app,
        ["experiment", "run", "selftest", "--param", "rat_pps=1", "--results", str(results)],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 2
    assert (
        "unknown parameter 'rat_pps'" in result.output
        and "known: rate_pps, layout" in result.output
    )
    result = runner.invoke(
        app, ["experiment", "run", "selftest", "-p", "rate_pps=1,x", "--results", str(results)]
    )
    assert result.exit_code == 2 and "'x' is not a number" in result.output
    assert not results.exists()


def test_cli_resume_refuses_a_new_sweep(fixture_env, tmp_path):
    run_dir, _ = _run(tmp_path, [])
    result = runner.invoke(
        app, ["experiment", "run", "selftest", "--resume", str(run_dir), "--param", "rate_pps=5"]
    )
    assert result.exit_code == 2 and "do not give --param" in result.output


def test_cli_runs_a_sweep_and_renders_its_report(fixture_env, tmp_path):
    result = runner.invoke(
        app,
        [
            "experiment",
            "run",
            "selftest",
            "-p",
            "rate_pps=1000,5000",
            "-p",
            "fail_at_pps=5000",
            "--results",
            str(tmp_path),
            "--no-progress",
        ],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 1, result.output  # a point failed
    assert "2 points: 1 measured (0 invalid), 1 failed" in result.output
    run_dir = next((tmp_path / "selftest").iterdir())
    assert (run_dir / "report" / "report.md").exists()
    result = runner.invoke(
        app,
        ["experiment", "run", "selftest", "--resume", str(run_dir), "--no-progress", "--no-report"],
    )
    assert result.exit_code == 1 and "1 run now" in result.output
