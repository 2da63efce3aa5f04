"""The classroom labs on real layouts: each lab's check fails on its starting state and passes
after its reference solution, in the process that built the layout and from outside it (as
`lvs-testbed lab check` runs); `lab reset` brings the failure back; `lab start` opens the CLI
with `labcheck`, and `lab check`/`lab reset` reach it from another process; lab 4's check
reads real sweeps."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from testbed.labs import LabContext, all_ok, format_results, get_lab
from testbed.net.hosts import RunHosts, TestbedHosts
from testbed.net.network import Testbed

CLI = [sys.executable, "-m", "testbed"]
LAYOUT_LABS = [1, 2, 3, 5, 6]
COULD_NOT_RUN = "the check could run"


@pytest.mark.parametrize("number", LAYOUT_LABS)
def test_check_fails_on_the_starting_state_and_passes_after_the_solution(number, no_leftovers):
    lab = get_lab(number)
    with Testbed(lab.layout, lab.params, kind=lab.run_kind) as tb:
        assert tb.wait_ready(10)
        here = LabContext(hosts=TestbedHosts(tb), plan=tb.plan)
        outside = LabContext(hosts=RunHosts(tb.run.dir), plan=tb.plan)
        lab.prepare(here)
        before = lab.run_check(here)
        assert not all_ok(before), format_results(before)
        assert all(r.name != COULD_NOT_RUN for r in before), format_results(before)

        lab.solve(here)
        after = lab.run_check(here)
        assert all_ok(after), format_results(after)
        from_outside = lab.run_check(outside)
        assert all_ok(from_outside), format_results(from_outside)

        if number != 5:  # lab 5's reset heals; the backup's transitions stay recorded
            lab.prepare(outside)
            again = lab.run_check(here)
            assert not all_ok(again), format_results(again)


class Lines:
    """A child's output, read line by line in a thread, with a wait for a line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.seen = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            with self.seen:
                self.lines.append(line)
                self.seen.notify_all()

    def wait_for(self, text: str, timeout_s: float) -> bool:
        with self.seen:
            return self.seen.wait_for(lambda: any(text in line for line in self.lines), timeout_s)

    def text(self) -> str:
        return "".join(self.lines)


def test_lab_start_check_and_reset_from_another_process(no_leftovers):
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
    start = subprocess.Popen(
        [*CLI, "lab", "start", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    out = Lines(start)
    try:
        assert out.wait_for("Handout:", 60), out.text()
        check = subprocess.run(
            [*CLI, "lab", "check", "1"], capture_output=True, text=True, timeout=120, env=env
        )
        assert check.returncode == 1, check.stdout + check.stderr
        assert "FAIL  every real server holds the VIP on lo" in check.stdout
        reset = subprocess.run(
            [*CLI, "lab", "reset", "1"], capture_output=True, text=True, timeout=60, env=env
        )
        assert reset.returncode == 0, reset.stdout + reset.stderr
        start.stdin.write("labcheck\nexit\n")
        start.stdin.close()
        assert start.wait(timeout=120) == 0, out.text()
        out.thread.join(10)
        assert "checks pass: not there yet" in out.text()
    finally:
        if start.poll() is None:
            start.terminate()
            start.wait(timeout=30)


@pytest.mark.timeout(1800)
def test_lab4_check_reads_real_sweeps_and_the_answers(tmp_path, no_leftovers):
    lab = get_lab(4)
    ctx = LabContext(results_root=tmp_path / "results", answers_dir=tmp_path / "labs")
    assert not all_ok(lab.run_check(ctx))
    lab.solve(ctx)  # the handout's two sweeps, then the reference answers
    after = lab.run_check(ctx)
    assert all_ok(after), format_results(after)
    (ctx.answers_dir / lab.name / "answers.md").unlink()
    without = lab.run_check(ctx)
    assert [r.name for r in without if not r.ok] == ["the answers name the limiting factor"], (
        format_results(without)
    )
