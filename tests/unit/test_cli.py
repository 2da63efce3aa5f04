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
