"""The classroom labs without a layout: the registry and its files (handouts a student can
paste, templates to hand in), the pure parsers and judgements the checks use, dependent checks
reported as not run, lab 4's check on synthetic results (its typical mistake named by the first
hint), the hand-in report, and the `lab` command's list, check --save and argument errors."""

from __future__ import annotations

import json
import re
import shlex
import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from testbed.cli.main import app
from testbed.controllers.flows import L2_OWNER, LB_OWNER, cookie
from testbed.director.ipvsadm import run as ipvsadm_run
from testbed.director.model import Director, ip_to_int
from testbed.labs import (
    LABS,
    LABS_DIR,
    CheckResult,
    Lab,
    LabContext,
    LabError,
    all_ok,
    format_results,
    get_lab,
    handin,
)
from testbed.labs import lab04_bottleneck as lab4
from testbed.labs import lab05_failover as lab5
from testbed.labs.model import Checks, first_failure
from testbed.labs.parse import (
    DestRule,
    arping_macs,
    default_gateway,
    effective_arp_setting,
    inet_addresses,
    lb_connection_flows,
    neigh_mac,
    parse_connections,
    parse_rules,
    parse_stats,
    ratio_within,
    request_names,
    vrrp_blocking_rules,
    weighted_split,
)
from testbed.labs.udpprobe import probe
from testbed.topo.plan import ipvsadm_rules, make_plan
from tests.unit.handouts import PROMPT, blocks, pasted_blocks

runner = CliRunner()


# -- the registry and its files --------------------------------------------------------------------
def test_six_labs_numbered_one_to_six():
    assert sorted(LABS) == [1, 2, 3, 4, 5, 6]
    assert all(LABS[n].number == n for n in LABS)
    assert len({lab.slug for lab in LABS.values()}) == 6
    assert len({lab.run_kind for lab in LABS.values()}) == 6


@pytest.mark.parametrize("number", sorted(LABS))
def test_each_lab_has_a_non_empty_handout_and_teacher_notes(number):
    lab = LABS[number]
    assert lab.dir == LABS_DIR / f"{number:02d}-{lab.slug}"
    for path in (lab.handout, lab.teacher_notes, lab.answers_template):
        assert path.is_file(), path
        assert path.read_text().strip(), f"{path} is empty"


@pytest.mark.parametrize("number", sorted(LABS))
def test_handouts_have_goal_background_steps_hand_in_and_questions(number):
    text = LABS[number].handout.read_text()
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings == ["Goal", "Background", "Steps", "Hand-in", "Questions"]
    assert text.startswith(f"# Lab {number}: {LABS[number].title}")
    questions = text.split("## Questions", 1)[1]
    assert re.search(r"^1\. ", questions, re.MULTILINE), "numbered questions"


@pytest.mark.parametrize("number", sorted(LABS))
def test_handouts_use_the_howto_vocabulary_and_name_the_check(number):
    text = LABS[number].handout.read_text()
    for word in ("CIP", "VIP", "DIP", "RIP"):
        assert word in text, word
    assert f"lab check {number}" in text
    assert "labcheck" not in text  # the lab's check is `check` in its CLI


@pytest.mark.parametrize("number", sorted(LABS))
def test_handouts_and_lab_list_tell_time_prerequisites_and_outcomes(number):
    lab = LABS[number]
    text = " ".join(lab.handout.read_text().split())
    assert lab.minutes and lab.prerequisites and len(lab.outcomes) >= 2
    assert f"Time: {lab.minutes} minutes. Before it: {lab.prerequisites}." in text
    for outcome in lab.outcomes:
        assert f"- {outcome}" in text, outcome
    assert f"Time: {lab.minutes} minutes" in lab.teacher_notes.read_text()


@pytest.mark.parametrize("number", sorted(LABS))
def test_every_lab_has_an_answers_template_with_slots_for_what_it_measures(number):
    lab = LABS[number]
    template = lab.answers_template.read_text()
    assert template.startswith(f"# Lab {number}: answers")
    assert "## Measured" in template
    questions = lab.handout.read_text().split("## Questions", 1)[1]
    asked = len(re.findall(r"^\d+\. ", questions, re.MULTILINE))
    answered = len(re.findall(r"^\d+\. ", template.split("## Measured", 1)[1], re.MULTILINE))
    assert lab.number == 4 or answered == asked, (answered, asked)


@pytest.mark.parametrize("number", sorted(LABS))
def test_every_curl_in_the_handouts_has_a_timeout(number):
    """A curl without -m hangs when no real server answers; the handouts' never do."""
    text = LABS[number].handout.read_text()
    calls = [
        c for b in blocks(text) for line in b.lines for c in re.findall(r"\bcurl [^;|&]*", line)
    ]
    calls += re.findall(r"`[^`]*\b(curl [^`;|&]*)", text)
    for call in calls:
        assert re.search(r"\s(-m|--max-time) \d", call), call


@pytest.mark.parametrize("number", [n for n in LABS if LABS[n].needs_layout])
def test_handout_blocks_paste_as_cli_commands_the_lab_cli_knows(number):
    """Each pasted line starts with a host of the layout or a command of the lab's CLI, and
    holds no placeholder to fill in (a pasted block runs as it is)."""
    pytest.importorskip("mininet")
    from testbed.labs.console import LabCLI

    lab = LABS[number]
    hosts = {n.name for n in make_plan(lab.layout, lab.params).nodes}
    pasted = pasted_blocks(lab.handout.read_text())
    assert [b for b in pasted if b.kind == "cli"], "no CLI block to paste"
    for block in pasted:
        for line in block.lines:
            if block.kind == "cli":
                first = line[len(PROMPT) :].split()[0]
                assert first in hosts or hasattr(LabCLI, f"do_{first}"), line
            assert not re.search(r"\b[A-Z]{2,}_[A-Z_]+\b|<[a-z-]+>", line), f"placeholder: {line}"


@pytest.mark.parametrize("number", sorted(LABS))
def test_handouts_say_which_ipvsadm_is_in_use(number):
    """Item 7 for the userspace director: no kernel IPVS here, and what that means."""
    if number == 4:
        return  # lab 4 runs experiments, it types no ipvsadm
    assert "/proc/net/ip_vs" in " ".join(LABS[number].handout.read_text().split())


@pytest.mark.parametrize("number", sorted(LABS))
def test_teacher_notes_have_answers_and_measured_figures(number):
    """Expected figures are measured ones (or a marked slot to measure), never invented."""
    text = LABS[number].teacher_notes.read_text()
    assert "## Answers" in text and "## What the check verifies" in text
    assert "Measured here" in text or "<!-- measured:" in text


@pytest.mark.parametrize("number", [n for n in LABS if LABS[n].needs_layout])
def test_layout_labs_have_a_plan_and_start_with_lab_start(number):
    lab = LABS[number]
    plan = make_plan(lab.layout, lab.params)
    assert plan.realservers and plan.clients
    assert f"sudo lvs-testbed lab start {number}" in lab.handout.read_text()


def test_up_commands_name_what_differs_from_up_defaults():
    assert get_lab(1).up_command() == "up dr"
    assert get_lab(2).up_command() == "up nat --ha none"
    assert get_lab(5).up_command() == "up nat"
    assert get_lab(6).up_command() == "up dr --switch ovs --director openflow"
    assert get_lab(4).up_command().startswith("none")


def test_unknown_lab_is_a_lab_error():
    with pytest.raises(LabError, match="no lab 7"):
        get_lab(7)


def test_lab4_handout_gives_exactly_the_sweeps_the_check_wants():
    text = get_lab(4).handout.read_text()
    for experiment in lab4.SWEEPS:
        assert lab4.sweep_command(experiment) in text


def test_lab5_handout_uses_the_table_the_solution_and_hints_name():
    assert f"inet {lab5.SPLIT_TABLE}" in get_lab(5).handout.read_text()


# -- results, context and formatting -----------------------------------------------------------
def test_format_results_shows_each_check_hints_for_failures_and_a_verdict():
    results = [
        CheckResult("a", True, "fine", "unused"),
        CheckResult("b", False, "broken", "fix it"),
    ]
    text = format_results(results)
    assert "ok    a: fine" in text and "FAIL  b: broken" in text
    assert "hint: fix it" in text and "hint: unused" not in text
    assert text.splitlines()[-1] == "1 of 2 checks pass: not there yet"
    assert format_results(results[:1]).endswith("all checks pass")
    assert not all_ok([])


def test_a_check_that_cannot_run_becomes_one_failed_result():
    def boom(ctx):
        raise LabError("d1's director is not answering")

    lab = Lab(9, "x", "X", "", "dr", None, lambda ctx: None, lambda ctx: None, boom)
    [result] = lab.run_check(LabContext())
    assert not result.ok and "not answering" in result.detail and "lab start 9" in result.hint


def test_a_check_that_needs_a_failed_one_is_not_run_and_names_the_first_failure():
    checks = Checks()
    ran = []
    gateway = checks.add(CheckResult("gateway", False, "rs2 via 192.168.0.1", "replace it"))
    service = checks.add(CheckResult("service", True, "fine"))
    http = checks.after([gateway, service], "http", lambda: ran.append("http"))
    counters = checks.after([http], "counters", lambda: ran.append("counters"))
    assert not ran  # neither ran: they could only fail for the gateway's reason
    assert not http.ok and http.not_run_because == "gateway"
    assert counters.not_run_because == "gateway"  # the root cause, not the skipped one
    assert checks.after([service], "ok", lambda: CheckResult("ok", True, "")).ok
    assert first_failure(checks.results) is gateway
    text = format_results(checks.results)
    assert 'skip  http: not run: "gateway" failed' in text
    assert text.splitlines()[-1] == (
        "2 of 5 checks pass (2 not run until the first failure is fixed): not there yet"
    )
    assert first_failure([CheckResult("a", True, "")]) is None


def test_layout_labs_refuse_to_run_without_a_layout():
    with pytest.raises(LabError, match="needs its layout"):
        get_lab(1).check(LabContext())


# -- ipvsadm output --------------------------------------------------------------------------------
def ipvsadm(d: Director, command: str, stdin: str | None = None, now: float | None = None) -> str:
    """What ``ipvsadm COMMAND`` prints, run against the model (the director's own front end)."""
    result = ipvsadm_run(shlex.split(command), d, stdin, now)
    assert result.rc == 0, result
    return result.out


def director_with(*commands: str) -> Director:
    d = Director(seed=1)
    for command in commands:
        ipvsadm(d, command)
    return d


def test_parse_rules_reads_the_saved_configuration():
    d = Director(seed=1)
    ipvsadm(d, "-R", stdin=ipvsadm_rules(make_plan("dr")))
    ipvsadm(d, "-E -t 10.0.0.100:80 -s wrr -p 60")
    ipvsadm(d, "-e -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 3")
    rules = parse_rules(ipvsadm(d, "-S -n"))
    assert set(rules) == {("tcp", "10.0.0.100:80"), ("udp", "10.0.0.100:7")}
    http = rules[("tcp", "10.0.0.100:80")]
    assert (http.scheduler, http.persistent_s) == ("wrr", 60)
    assert http.dests["10.0.0.11:80"] == DestRule("Route", 3)
    assert http.dests["10.0.0.12:80"] == DestRule("Route", 1)
    assert rules[("udp", "10.0.0.100:7")].persistent_s is None


def test_parse_rules_knows_masquerading_tunnelling_and_scheduler_flags():
    d = director_with(
        "-A -u 10.0.1.100:7 -s sh -b sh-fallback",
        "-a -u 10.0.1.100:7 -r 192.168.0.11:7 -m -w 0",
        "-A -t 10.0.0.100:80 -s rr",
        "-a -t 10.0.0.100:80 -r 10.0.0.12:80 -i",
    )
    rules = parse_rules(ipvsadm(d, "-S -n"))
    echo = rules[("udp", "10.0.1.100:7")]
    assert echo.scheduler == "sh" and echo.sched_flags == "sh-fallback"
    assert echo.dests["192.168.0.11:7"] == DestRule("Masq", 0)
    assert rules[("tcp", "10.0.0.100:80")].dests["10.0.0.12:80"].forward == "Tunnel"


STATS = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.0.1.100:80                       6       38       30     2671     3588
  -> 192.168.0.11:80                     2       13       10      890     1196
  -> 192.168.0.12:80                     4       25       20     1781     2392
UDP  10.0.1.100:7                        1        1        1       30       30
"""


def test_parse_stats_reads_service_and_real_server_counters():
    stats = parse_stats(STATS)
    http = stats[("tcp", "10.0.1.100:80")]
    assert (http.total.conns, http.total.in_pkts, http.total.out_pkts) == (6, 38, 30)
    assert http.dests["192.168.0.12:80"].out_bytes == 2392
    assert stats[("udp", "10.0.1.100:7")].dests == {}


def test_parse_stats_reads_the_directors_own_layout():
    d = director_with("-A -t 10.0.0.100:80 -s rr", "-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g")
    stats = parse_stats(ipvsadm(d, "-L -n --stats --exact"))
    assert stats[("tcp", "10.0.0.100:80")].dests["10.0.0.11:80"].conns == 0


def test_parse_connections_reads_the_directors_listing():
    d = director_with("-A -u 10.0.0.100:7 -s rr", "-a -u 10.0.0.100:7 -r 10.0.0.13:7 -g")
    vip = ip_to_int("10.0.0.100")
    conn = d.schedule_new(
        d.find_service(17, vip, 7), 17, ip_to_int("10.0.1.11"), 40001, vip, 7, 10.0
    )
    d.on_udp_packet(conn, 10.0)
    [entry] = parse_connections(ipvsadm(d, "-L -n -c", now=10.5))
    assert (entry.proto, entry.source, entry.virtual, entry.destination) == (
        "udp",
        "10.0.1.11:40001",
        "10.0.0.100:7",
        "10.0.0.13:7",
    )


# -- ip, arping, sysctl ----------------------------------------------------------------------------
def test_default_gateway():
    routes = (
        "default via 192.168.0.254 dev rs1-eth0 \n"
        "192.168.0.0/24 dev rs1-eth0 proto kernel scope link src 192.168.0.11 \n"
    )
    assert default_gateway(routes) == "192.168.0.254"
    assert default_gateway("192.168.0.0/24 dev rs1-eth0 proto kernel scope link\n") is None
    assert default_gateway("") is None


def test_inet_addresses_of_ip_addr_output():
    out = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
        "1: lo    inet 10.0.0.100/32 scope global lo\\       valid_lft forever preferred_lft "
        "forever\n"
    )
    assert inet_addresses(out) == {"127.0.0.1/8", "10.0.0.100/32"}


def test_the_larger_of_all_and_the_interface_applies():
    assert effective_arp_setting(0, 1) == 1
    assert effective_arp_setting(2, 0) == 2
    assert effective_arp_setting(0, 0) == 0


ARPING = """ARPING 10.0.0.100 from 10.0.0.1 fw-eth1
Unicast reply from 10.0.0.100 [4A:1B:2C:3D:4E:5F]  0.612ms
Unicast reply from 10.0.0.100 [AA:BB:CC:DD:EE:01]  0.700ms
Unicast reply from 10.0.0.100 [4A:1B:2C:3D:4E:5F]  0.540ms
Sent 2 probes (1 broadcast(s))
Received 3 response(s)
"""


def test_arping_macs_collects_every_answering_mac():
    assert arping_macs(ARPING) == {"4a:1b:2c:3d:4e:5f", "aa:bb:cc:dd:ee:01"}
    assert arping_macs("Sent 2 probes (2 broadcast(s))\nReceived 0 response(s)\n") == set()


def test_neigh_mac():
    assert neigh_mac("10.0.0.100 lladdr 4A:1B:2C:3D:4E:5F REACHABLE\n") == "4a:1b:2c:3d:4e:5f"
    assert neigh_mac("10.0.0.100  FAILED\n") is None


def test_request_names_marks_failed_requests_empty():
    assert request_names("REQ rs1\nREQ \nnoise\nREQ rs3\n") == ["rs1", "", "rs3"]


# -- judging figures -------------------------------------------------------------------------------
def test_weighted_split_accepts_noise_and_refuses_another_split():
    weights = {"rs1": 3, "rs2": 2, "rs3": 1}
    assert all(s.ok for s in weighted_split({"rs1": 30, "rs2": 20, "rs3": 10}, weights, 60))
    assert all(s.ok for s in weighted_split({"rs1": 33, "rs2": 17, "rs3": 10}, weights, 60))
    rr = weighted_split({"rs1": 20, "rs2": 20, "rs3": 20}, weights, 60)
    assert [s.ok for s in rr] == [False, True, False]  # rs2's 20 is right by chance
    assert not all(s.ok for s in weighted_split({"rs1": 36, "rs2": 24}, weights, 60))
    with pytest.raises(ValueError):
        weighted_split({}, {"rs1": 0}, 10)


def test_ratio_within():
    assert ratio_within(30, 38, 0.5, 2.0)
    assert not ratio_within(0, 38, 0.5, 2.0)
    assert not ratio_within(5, 0, 0.5, 2.0)


# -- nftables and OpenFlow -------------------------------------------------------------------------
RULESET = """table inet lvs_testbed_director { # handle 1
\tset services { # handle 1
\t\ttype inet_proto . ipv4_addr . inet_service
\t\telements = { tcp . 10.0.1.100 . 80 }
\t}

\tchain prerouting { # handle 2
\t\ttype filter hook prerouting priority raw; policy accept;
\t\tmeta l4proto . ip daddr . th dport @services drop # handle 3
\t}
}
table inet splitbrain { # handle 2
\tchain input { # handle 1
\t\ttype filter hook input priority filter; policy accept;
\t\tip protocol tcp counter packets 112 bytes 5000 drop # handle 2
\t\tip protocol vrrp drop # handle 3
\t}
}
table ip other { # handle 3
\tchain output { # handle 1
\t\ttype filter hook output priority filter; policy accept;
\t\tmeta l4proto 112 counter packets 0 bytes 0 reject # handle 4
\t\tip protocol vrrp accept # handle 5
\t}
}
"""


def test_vrrp_blocking_rules_finds_drops_and_rejects_of_protocol_112_only():
    found = vrrp_blocking_rules(RULESET)
    assert [(r.family, r.table, r.chain, r.handle) for r in found] == [
        ("inet", "splitbrain", "input", 3),
        ("ip", "other", "output", 4),
    ]
    assert found[0].text == "ip protocol vrrp drop"
    assert vrrp_blocking_rules(
        "table inet x { # handle 1\n\tchain c { # handle 1\n"
        "\t\tip protocol { tcp, vrrp } drop # handle 2\n\t}\n}\n"
    )


def test_lb_connection_flows_counts_the_directors_per_connection_flows():
    dump = "\n".join(
        [
            f" cookie={cookie(LB_OWNER, 3):#x}, duration=5.1s, table=0, n_packets=6, n_bytes=420, "
            "idle_timeout=900, priority=100,tcp,dl_dst=02:00:00:00:00:64,nw_src=10.0.1.11,"
            "nw_dst=10.0.0.100,tp_src=40000,tp_dst=80 "
            "actions=set_field:aa:bb:cc:dd:ee:01->eth_dst,output:3",
            f" cookie={cookie(LB_OWNER, 4):#x}, duration=4.0s, table=0, n_packets=5, "
            "priority=100,tcp actions=output:2",
            f" cookie={cookie(L2_OWNER):#x}, duration=9s, table=0, n_packets=9, "
            "priority=10,in_port=1 actions=output:2",
            f" cookie={cookie(LB_OWNER):#x}, duration=9s, table=0, priority=1 actions=drop",
            " cookie=0x0, duration=10s, table=0, n_packets=40, priority=0 actions=CONTROLLER:65535",
        ]
    )
    assert lb_connection_flows(dump) == 2
    assert lb_connection_flows("") == 0


# -- lab 5's judgements ----------------------------------------------------------------------------
def status(*instances: tuple[str, list[tuple[str, str]]]) -> dict:
    """A daemon's status; its instances' n-th transitions happened at wall time 100 + n."""
    return {
        "instances": [
            {
                "name": f"VI_{i}",
                "state": state,
                "transitions": [
                    {"previous": a, "state": b, "monotonic_s": float(n), "wall_s": 100.0 + n}
                    for n, (a, b) in enumerate(moves)
                ],
            }
            for i, (state, moves) in enumerate(instances)
        ]
    }


def test_lab5_master_needs_every_instance_master():
    assert lab5.is_master(status(("MASTER", []), ("MASTER", [])))
    assert not lab5.is_master(status(("MASTER", []), ("BACKUP", [])))
    assert not lab5.is_master(None) and not lab5.is_master({"instances": []})


def test_lab5_failed_over_and_back_needs_both_transitions():
    fresh = status(("BACKUP", [("INIT", "BACKUP")]))
    there = status(("MASTER", [("INIT", "BACKUP"), ("BACKUP", "MASTER")]))
    back = status(("BACKUP", [("INIT", "BACKUP"), ("BACKUP", "MASTER"), ("MASTER", "BACKUP")]))
    assert not lab5.failed_over_and_back(fresh)
    assert not lab5.failed_over_and_back(there)
    assert lab5.failed_over_and_back(back)
    assert lab5.states(None) == "not running"
    assert lab5.states(back) == "VI_0 BACKUP"


def test_lab5_counts_only_transitions_since_the_lab_was_started_or_reset(tmp_path):
    back = status(("BACKUP", [("INIT", "BACKUP"), ("BACKUP", "MASTER"), ("MASTER", "BACKUP")]))
    assert lab5.failed_over_and_back(back, since_wall_s=100.5)
    assert not lab5.failed_over_and_back(back, since_wall_s=101.5)  # reset after the takeover
    assert lab5.transitions_seen(back, since_wall_s=101.5) == {("MASTER", "BACKUP")}
    assert lab5.reset_mark(tmp_path) is None
    (tmp_path / lab5.RESET_FILE).write_text(json.dumps({"wall_s": 101.5}))
    assert lab5.reset_mark(tmp_path) == 101.5


# -- lab 4's check on synthetic results ------------------------------------------------------------
def point(params: dict, capacity_pps: float | None, valid: bool = True, status: str = "ok") -> dict:
    return {
        "status": status,
        "valid": valid and status == "ok",
        "params": params,
        "summary": {} if capacity_pps is None else {"capacity_pps": capacity_pps},
    }


def write_run(root: Path, experiment: str, run_id: str, points: list[dict]) -> Path:
    run_dir = root / experiment / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(
        json.dumps({"experiment": experiment, "run_id": run_id, "points": points})
    )
    return run_dir


def quota_points(capacities: dict[float, float], kind: str = "nat") -> list[dict]:
    return [
        point({"kind": kind, "quota_cores": q, "io_mode": "ring", "duration_s": 1.0}, c)
        for q, c in capacities.items()
    ]


GOOD_QUOTAS = {0.05: 1010.0, 0.1: 1990.0, 0.2: 4050.0}
BATCHES = [
    point({"batch": 1, "wait_us": 0, "kind": "nat"}, 3000.0),
    point({"batch": 64, "wait_us": 0, "kind": "nat"}, 5200.0),
]


@pytest.fixture
def lab4_dirs(tmp_path):
    results, answers = tmp_path / "results", tmp_path / "labs"
    (answers / lab4.LAB.name).mkdir(parents=True)
    return results, answers, LabContext(results_root=results, answers_dir=answers)


def write_answers(answers_dir: Path, text: str) -> None:
    (answers_dir / lab4.LAB.name / "answers.md").write_text(text)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name.split(" (")[0]: r for r in results}


def test_lab4_passes_with_both_sweeps_a_good_fit_and_the_cpu_named(lab4_dirs):
    results, answers, ctx = lab4_dirs
    write_run(results, "cpu-quota", "20261127T100000Z-aaaaaaaa", quota_points(GOOD_QUOTAS))
    write_run(results, "coalescing", "20261127T101000Z-bbbbbbbb", BATCHES)
    write_answers(answers, lab4.REFERENCE_ANSWERS)
    outcome = get_lab(4).run_check(ctx)
    assert all_ok(outcome), format_results(outcome)
    assert len(outcome) == 4
    assert re.search(
        r"slope 20,\d{3} requests/s per core, .*R² (0\.99\d|1\.000)",
        by_name(outcome)["capacity linear in the quota"].detail,
    )


def test_lab4_fails_without_runs_or_answers_and_says_what_to_run(lab4_dirs):
    _results, answers, ctx = lab4_dirs
    outcome = by_name(get_lab(4).run_check(ctx))
    assert not any(r.ok for r in outcome.values())
    assert outcome["cpu-quota sweep measured"].hint == f"`{lab4.sweep_command('cpu-quota')}`"
    assert not outcome["capacity linear in the quota"].ran  # the sweep it needs failed
    assert "cp " in outcome["the answers name the limiting factor"].hint


def test_lab4_wants_every_quota_point_valid(lab4_dirs):
    results, answers, ctx = lab4_dirs
    points = quota_points({0.05: 1000.0, 0.1: 2000.0})
    points.append(point({"kind": "nat", "quota_cores": 0.2}, 3900.0, valid=False))
    write_run(results, "cpu-quota", "20261127T100000Z-aaaaaaaa", points)
    write_run(results, "coalescing", "20261127T101000Z-bbbbbbbb", BATCHES)
    write_answers(answers, lab4.REFERENCE_ANSWERS)
    outcome = by_name(get_lab(4).run_check(ctx))
    assert not outcome["cpu-quota sweep measured"].ok
    assert "only invalid points at nat quota 0.2" in outcome["cpu-quota sweep measured"].detail
    assert "nothing else busy" in outcome["cpu-quota sweep measured"].hint


def test_lab4_refuses_a_noisy_fit(lab4_dirs):
    results, _answers, ctx = lab4_dirs
    write_run(
        results,
        "cpu-quota",
        "20261127T100000Z-aaaaaaaa",
        quota_points({0.05: 3000.0, 0.1: 1000.0, 0.2: 2600.0}),
    )
    outcome = by_name(get_lab(4).run_check(ctx))
    assert outcome["cpu-quota sweep measured"].ok
    assert not outcome["capacity linear in the quota"].ok
    assert outcome["capacity linear in the quota"].ran


def test_lab4_takes_the_newest_run_that_has_the_points(lab4_dirs):
    results, _answers, ctx = lab4_dirs
    write_run(results, "cpu-quota", "20261127T100000Z-aaaaaaaa", quota_points(GOOD_QUOTAS))
    write_run(
        results, "cpu-quota", "20261127T110000Z-cccccccc", quota_points({0.1: 900.0}, kind="dr")
    )
    outcome = by_name(get_lab(4).run_check(ctx))
    assert outcome["cpu-quota sweep measured"].ok
    assert outcome["cpu-quota sweep measured"].detail.startswith("20261127T100000Z-aaaaaaaa")


def test_lab4_typical_mistake_a_sweep_with_other_values_is_named_by_the_first_hint(lab4_dirs):
    """The student ran `experiment run cpu-quota` without the handout's -p options: one point
    at the default quota. The first hint says to run the handout's sweep, not that points
    were invalid."""
    results, answers, ctx = lab4_dirs
    write_run(results, "cpu-quota", "20261127T100000Z-aaaaaaaa", quota_points({0.25: 5000.0}))
    write_run(results, "coalescing", "20261127T101000Z-bbbbbbbb", BATCHES)
    write_answers(answers, lab4.REFERENCE_ANSWERS)
    outcome = get_lab(4).run_check(ctx)
    first = first_failure(outcome)
    assert first.name == "cpu-quota sweep measured"
    assert "no point at nat quota 0.05, 0.1, 0.2" in first.detail
    assert "handout's sweep" in first.hint and lab4.sweep_command("cpu-quota") in first.hint
    assert "invalid" not in first.hint
    assert [r.name for r in outcome if not r.ran] == [lab4.FIT_CHECK]


def test_lab4_figures_give_the_capacities_and_the_fit(lab4_dirs):
    results, _answers, ctx = lab4_dirs
    write_run(results, "cpu-quota", "20261127T100000Z-aaaaaaaa", quota_points(GOOD_QUOTAS))
    figures = get_lab(4).run_figures(ctx)
    [(title, text)] = figures.items()
    assert title == "cpu-quota run 20261127T100000Z-aaaaaaaa"
    assert "quota 0.05: 1,010 requests/s" in text and "R²" in text


def test_lab4_coalescing_needs_batch_1_and_64(lab4_dirs):
    results, _answers, ctx = lab4_dirs
    write_run(results, "coalescing", "20261127T101000Z-bbbbbbbb", BATCHES[1:])
    outcome = by_name(get_lab(4).run_check(ctx))
    assert not outcome["coalescing sweep measured"].ok
    assert "no point at batch 1" in outcome["coalescing sweep measured"].detail


@pytest.mark.parametrize(
    ("answers", "ok"),
    [
        (
            "## Limiting factor\nThe director's CPU time per packet.\n## Evidence\nThe NIC was "
            "idle.\n",
            True,
        ),
        ("# Answers\n## Limiting Factor\n<!-- one line -->\nthe CPU quota\n", True),
        ("Limited by per-packet processing in the director.", True),  # no heading: the whole file
        (
            "## Limiting factor\nThe NIC and its interrupts.\n## Evidence\nThe CPU quota line.\n",
            False,
        ),
        ("## Limiting factor\n<!-- Question 1 -->\n\n## Evidence\nCPU\n", False),
    ],
)
def test_lab4_answers_parse_leniently(answers, ok):
    assert lab4.evaluate_answers(answers).ok is ok


def test_lab4_the_untouched_template_is_not_an_answer():
    template = get_lab(4).answers_template.read_text()
    ev = lab4.evaluate_answers(template)
    assert not ev.ok and "empty" in ev.detail
    assert "## Limiting factor" in template


def test_lab4_a_wrong_factor_is_named_back():
    ev = lab4.evaluate_answers("## Limiting factor\nthe bus (DMA) between the two NICs\n")
    assert not ev.ok and "the bus" in ev.detail and "the NIC" in ev.detail


# -- the command line ------------------------------------------------------------------------------
def test_lab_help_lists_the_commands():
    result = runner.invoke(app, ["lab", "--help"])
    assert result.exit_code == 0
    for cmd in ("list", "start", "check", "reset"):
        assert cmd in result.output


def test_lab_list_shows_every_lab_and_its_handout():
    result = runner.invoke(app, ["lab", "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for lab in LABS.values():
        assert lab.title in result.output
        assert f"{lab.name}/handout.md" in result.output
    assert "teacher.md" not in result.output


def test_lab_list_shows_time_prerequisites_and_outcomes():
    result = runner.invoke(app, ["lab", "list"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for lab in LABS.values():
        assert f"{lab.minutes} min" in result.output
        assert lab.prerequisites in result.output
        assert lab.outcomes[0] in result.output
    assert "--save" in result.output


def test_lab_list_teacher_shows_the_teacher_notes():
    result = runner.invoke(app, ["lab", "list", "--teacher"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert all(f"{lab.name}/teacher.md" in result.output for lab in LABS.values())


@pytest.mark.parametrize("command", ["start", "check", "reset"])
@pytest.mark.parametrize("number", ["0", "7"])
def test_an_unknown_lab_number_is_a_usage_error(command, number):
    result = runner.invoke(app, ["lab", command, number])
    assert result.exit_code == 2
    assert "no lab" in result.output


@pytest.mark.parametrize("command", ["start", "check", "reset"])
def test_a_lab_number_must_be_a_number(command):
    assert runner.invoke(app, ["lab", command, "one"]).exit_code == 2
    assert runner.invoke(app, ["lab", command]).exit_code == 2


def test_lab_check_of_a_layout_lab_that_is_not_running_fails(tmp_path):
    result = runner.invoke(app, ["lab", "check", "1"], env={"LVS_TESTBED_RUNDIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "lab 1 is not running" in result.output or "needs root" in result.output


def test_lab_start_and_reset_of_lab4_need_no_layout():
    start = runner.invoke(app, ["lab", "start", "4"], env={"COLUMNS": "250"})
    assert start.exit_code == 0 and "04-bottleneck/handout.md" in start.output
    reset = runner.invoke(app, ["lab", "reset", "4"])
    assert reset.exit_code == 0 and "no layout" in reset.output


def test_lab_check_4_exit_status_follows_the_checks(lab4_dirs):
    results, answers, _ctx = lab4_dirs
    args = ["lab", "check", "4", "--results", str(results), "--answers-dir", str(answers)]
    failing = runner.invoke(app, args)
    assert failing.exit_code == 1 and "FAIL" in failing.output
    write_run(results, "cpu-quota", "20261127T100000Z-aaaaaaaa", quota_points(GOOD_QUOTAS))
    write_run(results, "coalescing", "20261127T101000Z-bbbbbbbb", BATCHES)
    write_answers(answers, lab4.REFERENCE_ANSWERS)
    passing = runner.invoke(app, args)
    assert passing.exit_code == 0, passing.output
    assert "4 of 4 checks pass: all checks pass" in passing.output


def test_lab_check_4_save_writes_a_report_with_check_answers_and_figures(lab4_dirs, tmp_path):
    results, answers, _ctx = lab4_dirs
    write_run(results, "cpu-quota", "20261127T100000Z-aaaaaaaa", quota_points(GOOD_QUOTAS))
    write_run(results, "coalescing", "20261127T101000Z-bbbbbbbb", BATCHES)
    write_answers(answers, lab4.REFERENCE_ANSWERS)
    collect = tmp_path / "collect"
    args = ["lab", "check", "4", "--results", str(results), "--answers-dir", str(answers)]
    result = runner.invoke(
        app, [*args, "--save", "--handin-dir", str(collect), "--student", "ada lovelace"]
    )
    assert result.exit_code == 0, result.output
    [report] = collect.glob("lab04-ada_lovelace-*Z.md")
    assert "hand-in written:" in result.output
    text = report.read_text()
    assert text.startswith("# Hand-in: lab 4, Hunting the bottleneck")
    assert "- student: ada_lovelace" in text and "- check: all checks pass" in text
    assert "4 of 4 checks pass: all checks pass" in text
    assert lab4.REFERENCE_ANSWERS.strip() in text  # the answers as written
    assert "### cpu-quota run 20261127T100000Z-aaaaaaaa" in text  # the run's figures
    assert "quota 0.1: 1,990 requests/s" in text


def test_a_hand_in_without_answers_says_so_and_names_never_collide(tmp_path, monkeypatch):
    from datetime import datetime, timezone

    lab = get_lab(1)
    when = datetime(2026, 12, 6, 10, 15, 0, tzinfo=timezone.utc)
    text = handin.report_text(
        lab, [CheckResult("a", True, "fine")], None, tmp_path / "answers.md", {}, "bo", when
    )
    assert "(no answers file:" in text and "(none recorded)" in text
    assert "- time: 2026-12-06 10:15:00 UTC" in text
    assert handin.report_name(lab, "bo", when) == "lab01-bo-20261206T101500Z.md"
    assert handin.student_name("a/b; rm -rf") == "a_b_rm_-rf"
    monkeypatch.delenv(handin.HANDIN_ENV, raising=False)
    assert handin.handin_dir() == Path("handin")
    monkeypatch.setenv(handin.HANDIN_ENV, "/srv/collect")
    assert handin.handin_dir() == Path("/srv/collect")
    assert handin.handin_dir(tmp_path) == tmp_path


def test_lab_check_save_into_a_folder_that_cannot_be_written_fails_clearly(lab4_dirs, tmp_path):
    results, answers, _ctx = lab4_dirs
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = runner.invoke(
        app,
        [
            "lab",
            "check",
            "4",
            "--results",
            str(results),
            "--answers-dir",
            str(answers),
            "--save",
            "--handin-dir",
            str(blocker / "sub"),
        ],
    )
    assert result.exit_code == 1
    assert "could not write the hand-in" in result.output and "--handin-dir" in result.output


# -- the lab's CLI: check, check --save, and labcheck, its old name --------------------------------
def lab_cli(lab: Lab, tmp_path: Path):
    """A `LabCLI` without a terminal loop: its commands called on a stand-in testbed."""
    pytest.importorskip("mininet")  # the lab CLI is Mininet's CLI
    from testbed.labs.console import LabCLI

    cli = LabCLI.__new__(LabCLI)
    cli.lab = lab
    cli.testbed = SimpleNamespace(run=SimpleNamespace(dir=tmp_path), plan=make_plan("dr"), net={})
    return cli


def test_check_in_the_lab_cli_runs_the_labs_check_in_process(capsys, tmp_path):
    seen = []

    def check(ctx):
        seen.append(ctx)
        return [CheckResult("thing", True, "fine")]

    lab = Lab(1, "x", "Title", "", "dr", None, lambda ctx: None, lambda ctx: None, check)
    cli = lab_cli(lab, tmp_path)
    cli.do_check("")
    out = capsys.readouterr().out
    assert "lab 1: Title" in out and "ok    thing: fine" in out
    assert seen[0].plan is cli.testbed.plan and seen[0].hosts.run_dir == tmp_path
    cli.do_labcheck("")
    out = capsys.readouterr().out
    assert "`labcheck` is now `check`" in out and "ok    thing: fine" in out
    cli.do_check("--sav")
    assert "usage: check [--save]" in capsys.readouterr().out and len(seen) == 2


def test_check_save_in_the_lab_cli_writes_the_hand_in(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(handin.HANDIN_ENV, str(tmp_path / "collect"))
    lab = Lab(
        1,
        "x",
        "Title",
        "",
        "dr",
        None,
        lambda ctx: None,
        lambda ctx: None,
        lambda ctx: [CheckResult("thing", False, "broken", "fix it")],
        figures=lambda ctx: {"counters": "InPkts 15"},
    )
    lab_cli(lab, tmp_path).do_check("--save")
    out = capsys.readouterr().out
    [report] = (tmp_path / "collect").glob("lab01-*.md")
    assert f"hand-in written: {report}" in out
    text = report.read_text()
    assert "FAIL  thing: broken" in text and "hint: fix it" in text and "InPkts 15" in text


# -- the UDP probe the checks run in client hosts --------------------------------------------------
def free_udp_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_udp_probe_reports_which_source_ports_were_echoed():
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(2)

    def echo_two() -> None:
        for _ in range(2):
            data, peer = server.recvfrom(2048)
            server.sendto(data, peer)

    thread = threading.Thread(target=echo_two)
    thread.start()
    try:
        ports = free_udp_ports(2)
        assert probe("127.0.0.1", server.getsockname()[1], ports, timeout_s=2) == dict.fromkeys(
            ports, True
        )
    finally:
        thread.join()
        server.close()
    [silent] = free_udp_ports(1)
    ports = free_udp_ports(1)
    assert probe("127.0.0.1", silent, ports, timeout_s=0.2) == {ports[0]: False}
