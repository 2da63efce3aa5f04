"""`mn --custom topos/<layout>.py`: the system Python that mn runs borrows the checkout's .venv
(for its own imports and for the daemons it starts), and `lvs` in mn's CLI answers clearly.
The daemons themselves are tested in tests/integration/test_mn_custom.py."""

from __future__ import annotations

import sys

import pytest

import testbed


def test_children_run_with_the_checkout_venv_only_outside_a_venv(monkeypatch, tmp_path):
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    monkeypatch.setattr(testbed, "CHECKOUT_VENV", venv)
    pick = testbed.child_python.__wrapped__  # uncached
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)  # the system Python, as under mn
    assert pick() == str(venv / "bin" / "python")
    monkeypatch.setattr(sys, "base_prefix", "/elsewhere")  # already in a virtual environment
    assert pick() == sys.executable
    monkeypatch.setattr(testbed, "CHECKOUT_VENV", tmp_path / "none")
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)
    assert pick() == sys.executable  # no .venv: nothing better to use


def test_the_system_python_borrows_the_venvs_packages_of_its_own_version(monkeypatch, tmp_path):
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = tmp_path / ".venv" / "lib" / version / "site-packages"
    site.mkdir(parents=True)
    monkeypatch.setattr(testbed, "CHECKOUT_VENV", tmp_path / ".venv")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "base_prefix", "/elsewhere")
    testbed.use_checkout_venv()
    assert str(site) not in sys.path  # inside a venv: nothing to borrow
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)
    testbed.use_checkout_venv()
    testbed.use_checkout_venv()
    assert sys.path.count(str(site)) == 1 and sys.path[-1] == str(site)


class FakeTestbed:
    def __init__(self) -> None:
        self.run = None
        self.procs = {}
        self.started = 0
        self.logs_dir = None

    def start_daemons(self) -> None:
        self.started += 1
        self.run = type("Run", (), {"dir": "/run/lvs-testbed/mn-dr-x"})()
        self.logs_dir = "/var/log/lvs-testbed/mn-dr-x"

    def stop_daemons(self):
        self.run = None
        return type("Report", (), {"errors": []})()


def test_lvs_command_starts_stops_and_explains_itself(capsys):
    pytest.importorskip("mininet")
    from testbed.net.mn_cli import USAGE, MnLvsCLI

    cli = MnLvsCLI.__new__(MnLvsCLI)  # the command alone, without mn's network and loop
    cli.testbed = FakeTestbed()
    for line, said in (
        ("", USAGE),
        ("start now", USAGE),
        ("status", "lvs: nothing runs"),
        ("stop", "lvs: nothing runs"),
        (
            "start",
            "lvs: started (nothing); run directory /run/lvs-testbed/mn-dr-x; "
            "daemon logs in /var/log/lvs-testbed/mn-dr-x",
        ),
        ("stop", "lvs: stopped; daemon logs kept in /var/log/lvs-testbed/mn-dr-x"),
    ):
        cli.do_lvs(line)
        assert capsys.readouterr().out.strip() == said, line
    assert cli.testbed.started == 1


def test_a_network_that_is_not_a_testbed_layout_is_refused_with_the_fix():
    pytest.importorskip("mininet")
    from testbed.net.network import Testbed

    with pytest.raises(ValueError, match="--custom topos/dr.py --topo lvs-dr"):
        Testbed.adopt(type("Net", (), {"topo": object()})())
