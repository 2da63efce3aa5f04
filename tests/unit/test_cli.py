"""The CLI's help and argument errors (no root needed: errors come before any work)."""

from typer.testing import CliRunner

from testbed.cli.main import app

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("doctor", "up", "clean", "demo"):
        assert cmd in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("lvs-testbed ")


def test_up_help_says_quota_is_a_fraction_of_one_core():
    result = runner.invoke(app, ["up", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert "fraction of ONE core" in result.output
    assert "--bw-mbit" in result.output and "--no-cli" in result.output


def test_unknown_layout_is_a_usage_error():
    result = runner.invoke(app, ["up", "ring"])
    assert result.exit_code == 2


def test_unknown_option_is_a_usage_error():
    result = runner.invoke(app, ["up", "dr", "--colour", "red"])
    assert result.exit_code == 2


def test_out_of_range_parameter_is_refused_before_anything_runs():
    result = runner.invoke(app, ["up", "dr", "--rs", "0"])
    assert result.exit_code == 2
    assert "n_rs must be an integer from 1" in result.output


def test_openflow_director_needs_ovs():
    result = runner.invoke(app, ["up", "nat", "--director", "openflow"])
    assert result.exit_code == 2 and "needs switch=ovs" in result.output


def test_every_layout_setting_is_an_up_option_with_the_plans_default():
    import typer

    from testbed.topo.plan import LayoutParams

    command = typer.main.get_command(app).commands["up"]
    by_name = {p.name: p for p in command.params}
    for f in LayoutParams.knobs():
        assert f.name in by_name, f"LayoutParams.{f.name} has no `up` option"
        option = by_name[f.name]
        default = option.default.value if hasattr(option.default, "value") else option.default
        assert default == f.default, f"--{f.name}: default {default!r}, the plan says {f.default!r}"
        assert option.help == f.metadata["help"]


def test_up_builds_the_plans_params_from_its_options(monkeypatch):
    from testbed.cli import net

    seen = {}
    monkeypatch.setattr(net, "require_root", lambda what: None)
    monkeypatch.setattr(
        net, "run_layout", lambda layout, params, *a, **k: seen.update(layout=layout, params=params)
    )
    result = runner.invoke(
        app,
        [
            "up",
            "nat1",
            "--rs",
            "5",
            "--io",
            "frame",
            "-s",
            "wlc",
            "--no-conn-sync",
            "--director-cpu",
            "0.2",
        ],
    )
    assert result.exit_code == 0, result.output
    p = seen["params"]
    assert seen["layout"] == "nat1" and (
        p.n_rs,
        p.io_mode,
        p.scheduler,
        p.conn_sync,
        p.director_cpu,
    ) == (5, "frame", "wlc", False, 0.2)
    assert runner.invoke(app, ["up", "dr", "--io", "mmap"]).exit_code == 2


def test_flags_read_as_flags_in_help():
    """A flag takes no value, so its help line shows none (typer 0.29 printed `<bool>` after
    every flag, `--no-cli <bool>`, which reads as if a value were needed)."""
    for argv in (["up"], ["experiment", "run"], ["lab", "start"], ["reproduce"], []):
        result = runner.invoke(app, [*argv, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output and "BOOLEAN" not in result.output, argv
        assert "--help" in result.output


def test_ipvsadm_help_and_version_need_no_director(monkeypatch):
    from testbed.runtime import control

    def no_director(*_args, **_kwargs):
        raise AssertionError("-h/--help/-v must not look for a director")

    monkeypatch.setattr(control, "find_director", no_director)
    for flag in ("-h", "--help"):
        result = runner.invoke(app, ["ipvsadm", flag])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output and "--add-service     -A" in result.output
        assert "lvs-testbed ipvsadm --director NAME" in result.output
    version = runner.invoke(app, ["ipvsadm", "--director", "d1", "-v"])
    assert version.exit_code == 0 and version.output.startswith("ipvsadm v1.31")


def test_ipvsadm_without_a_director_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("LVS_TESTBED_RUNDIR", str(tmp_path))
    monkeypatch.delenv("LVS_TESTBED_RUN_DIR", raising=False)
    result = runner.invoke(app, ["ipvsadm", "-L", "-n"])
    assert result.exit_code == 1
    assert "no director is running" in result.output and "lvs-testbed up" in result.output


def test_capture_reaches_the_layout_from_up_and_lab_start(monkeypatch, tmp_path):
    from pathlib import Path

    from testbed.cli import lab, net

    seen = []
    monkeypatch.setattr(net, "require_root", lambda what: None)
    monkeypatch.setattr(lab, "require_root", lambda what: None)
    monkeypatch.setattr(net, "run_layout", lambda *a, **k: seen.append(k.get("capture_root")))
    for argv in (["up", "dr"], ["lab", "start", "1"]):
        assert runner.invoke(app, argv).exit_code == 0
        assert runner.invoke(app, [*argv, "--capture"]).exit_code == 0
        result = runner.invoke(app, [*argv, "--capture", "--capture-dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
    assert seen == [None, Path("captures"), tmp_path] * 2
