"""The classroom labs on real layouts, taken as a student takes them: `lab start N` in a
terminal, the handout's command blocks pasted into its CLI as a terminal pastes them (and its
second-terminal commands run beside it), then the lab's `check` passes and `check --save` has
written the hand-in. On the same layout: the lab's typical mistake, whose first hint names it
and, typed as it stands, fixes it; `lab reset` from another process bringing the failure
back; the reference solution passing from outside. Lab 4's check reads real sweeps.

One layout per lab: everything a lab tests runs on the layout its `lab start` built."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed import REPO_ROOT
from testbed.labs import (
    LabContext,
    all_ok,
    format_results,
    get_lab,
    lab01_dr,
    lab02_nat,
    lab03_schedulers,
    lab05_failover,
    lab06_openflow,
)
from testbed.labs.actions import mac_of, set_arp_settings
from testbed.labs.console import LabCLI
from testbed.labs.handin import HANDIN_ENV
from testbed.labs.model import first_failure
from testbed.net.hosts import RunHosts
from testbed.runtime.registry import list_runs, owner_alive
from tests.unit.handouts import SECOND_TERMINAL, pasted_blocks

from .terminal import Terminal

CLI = [sys.executable, "-m", "testbed"]
PROMPT = r"lvs-testbed> "
VERDICT = r"\d+ of \d+ checks pass[^\n]*: (all checks pass|not there yet)"
BLOCK_TIMEOUT_S = 240  # lab 5's blocks hold two failovers (15 s each) and restores
START_TIMEOUT_S = 180
TRANSCRIPTS_ENV = "LVS_TESTBED_TRANSCRIPTS"  # a folder: each lab's terminal session kept there


def live_run(kind: str):
    runs = [r for r in list_runs() if r.name.startswith(f"{kind}-") and owner_alive(r)]
    assert runs, f"no live {kind} run"
    return max(runs, key=lambda r: r.stat().st_mtime)


def second_terminal(line: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A `sudo lvs-testbed ...` line of a handout, run as a second terminal would (as root)."""
    argv = [*CLI, *line[len(SECOND_TERMINAL) :].split()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)


def run_cli_check(term: Terminal, command: str = "check") -> str:
    """Type ``command`` in the lab's CLI; what it printed up to its verdict."""
    start = term.mark()
    term.type(command)
    found = term.wait_for(VERDICT, 300, start)
    assert found, term.text(start)
    return term.text(start)[: found.end()]


def cli_commands_of(hint: str, lab_hosts: set[str]) -> list[str]:
    """The commands a hint gives in backquotes that the lab's CLI takes: host commands and
    the CLI's own (`restore`)."""
    return [
        c
        for c in re.findall(r"`([^`]+)`", hint)
        if c.split()[0] in lab_hosts or hasattr(LabCLI, f"do_{c.split()[0]}")
    ]


# -- each lab's typical mistake: make it, return what its first hint must name ------------------
def lab1_mistake(term: Terminal, ctx: LabContext) -> list[str]:
    """rs3 left answering ARP (arp_ignore 0), and fw asked for the VIP meanwhile."""
    set_arp_settings(ctx.hosts, "rs3", "rs3-eth0", 0, 0)
    ctx.hosts.cmd("fw", "ip neigh flush dev fw-eth1")
    ctx.hosts.cmd("c1", "curl -s -m 2 http://10.0.0.100/ >/dev/null")
    return [lab01_dr.SERVERS_CHECK, "rs3", "sysctl -w net.ipv4.conf.all.arp_ignore=1"]


def lab1_stale_entry(term: Terminal, ctx: LabContext) -> list[str]:
    """rs3 fixed, but fw still holds the MAC it learnt from rs3 for the VIP."""
    set_arp_settings(ctx.hosts, "rs3", "rs3-eth0", 1, 2)
    rs3_mac = mac_of(ctx.hosts, "rs3", "rs3-eth0")
    ctx.hosts.cmd("fw", f"ip neigh replace 10.0.0.100 lladdr {rs3_mac} dev fw-eth1 nud reachable")
    return [lab01_dr.FW_ENTRY_CHECK, "rs3", "fw ip neigh flush dev fw-eth1"]


def typed(term: Terminal, *commands: str) -> None:
    """Type ``commands`` into the lab's CLI and wait until they have run."""
    start = term.mark()
    for command in commands:
        term.type(command)
    term.type("sh echo TYPED-$((40+2))")
    assert term.wait_for(rf"TYPED-42\n{PROMPT}", BLOCK_TIMEOUT_S, start), term.text(start)


def lab2_mistake(term: Terminal, ctx: LabContext) -> list[str]:
    """rs2's gateway mistyped."""
    typed(term, "rs2 ip route replace default via 192.168.0.1")
    return [lab02_nat.GATEWAY_CHECK, "rs2 ip route replace default via 192.168.0.254"]


def lab3_mistake(term: Terminal, ctx: LabContext) -> list[str]:
    """Persistence left on from part B (step 4 skipped)."""
    typed(term, "d1 ipvsadm -E -t 10.0.0.100:80 -s wrr -p 60")
    return [lab03_schedulers.WRR_CHECK, "persistence", "d1 ipvsadm -E -t 10.0.0.100:80 -s wrr`"]


def lab5_mistake(term: Terminal, ctx: LabContext) -> list[str]:
    """Checked after `failover kill`, without `restore`."""
    typed(term, "failover kill")
    return [lab05_failover.DAEMONS_CHECK, "d1", "`restore`"]


def lab6_mistake(term: Terminal, ctx: LabContext) -> list[str]:
    """Requests sent to d1, the director of labs 1-3 (idle here), not to the VIP."""
    get_lab(6).prepare(ctx)
    ctx.hosts.cmd("c1", "for i in 1 2 3; do curl -s -m 2 http://10.0.0.2/; done")
    return [lab06_openflow.CONNS_CHECK, "send requests to the VIP", "http://10.0.0.100/"]


Mistake = Callable[[Terminal, LabContext], list[str]]
MISTAKES: dict[int, list[Mistake]] = {
    1: [lab1_mistake, lab1_stale_entry],
    2: [lab2_mistake],
    3: [lab3_mistake],
    5: [lab5_mistake],
    6: [lab6_mistake],
}


def first_hint_names_it_and_typing_it_fixes_it(
    term: Terminal, ctx: LabContext, number: int, mistake: Mistake
) -> None:
    lab = get_lab(number)
    expected = mistake(term, ctx)
    results = lab.run_check(ctx)
    first = first_failure(results)
    assert first is not None, format_results(results)
    assert first.name == expected[0], format_results(results)
    for words in expected[1:]:
        assert words in first.detail + first.hint, format_results(results)
    after = results[results.index(first) + 1 :]
    assert all(r.ok or not r.ran for r in after), format_results(results)  # one cause, one FAIL
    hosts = {n.name for n in ctx.plan.nodes}
    commands = cli_commands_of(first.hint, hosts)
    assert commands, first.hint
    typed(term, *commands)
    fixed = lab.run_check(ctx)
    assert all_ok(fixed), f"typed {commands}:\n{format_results(fixed)}"


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("number", sorted(MISTAKES))
def test_a_student_pastes_the_handout_and_the_check_passes(number, tmp_path, no_leftovers):
    lab = get_lab(number)
    handin_dir = tmp_path / "handin"
    env = dict(os.environ, **{HANDIN_ENV: str(handin_dir), "TERM": "xterm"})
    env["PYTHONUNBUFFERED"] = "1"
    term = Terminal([*CLI, "lab", "start", str(number)], env, str(REPO_ROOT))
    try:
        assert term.wait_for(PROMPT, START_TIMEOUT_S), term.text()
        run_dir = live_run(lab.run_kind)
        outside = LabContext(hosts=RunHosts(run_dir), plan=RunHosts(run_dir).plan())

        starting = second_terminal(f"{SECOND_TERMINAL}lab check {number}", env)
        assert starting.returncode == 1, starting.stdout + starting.stderr
        assert "FAIL" in starting.stdout

        for k, block in enumerate(pasted_blocks(lab.handout.read_text())):
            if block.kind == "terminal":
                for line in block.lines:
                    done = second_terminal(line, env)
                    assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
                continue
            start = term.mark()
            term.paste("\n".join([*block.lines, f"sh echo PASTED-$((1000+{k}))"]) + "\n")
            done = rf"PASTED-{1000 + k}\n{PROMPT}"  # and the prompt: a person waits for it
            assert term.wait_for(done, BLOCK_TIMEOUT_S, start), term.text(start)
        shown = term.text()
        for wrong in ("command not found", "*** Unknown command", "Please enter a command"):
            assert wrong not in shown, shown[max(0, shown.find(wrong) - 2000) :][:4000]

        checked = run_cli_check(term)
        assert checked.endswith("all checks pass"), checked
        [report] = handin_dir.glob(f"lab{number:02d}-*.md")  # the handout's `check --save`
        text = report.read_text()
        assert "- check: all checks pass" in text and "## Figures of this run" in text

        for mistake in MISTAKES[number]:
            first_hint_names_it_and_typing_it_fixes_it(term, outside, number, mistake)

        reset = second_terminal(f"{SECOND_TERMINAL}lab reset {number}", env)
        assert reset.returncode == 0, reset.stdout + reset.stderr
        after_reset = lab.run_check(outside)
        assert not all_ok(after_reset), format_results(after_reset)
        lab.solve(outside)
        solved = lab.run_check(outside)
        assert all_ok(solved), format_results(solved)

        term.type("exit")
        assert term.wait_exit(120) == 0, term.text()[-3000:]
    finally:
        term.close()
        if os.environ.get(TRANSCRIPTS_ENV):  # what the student would have seen, to read
            folder = Path(os.environ[TRANSCRIPTS_ENV])
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"lab{number:02d}.txt").write_text(term.text())


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
