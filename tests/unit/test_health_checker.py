"""The health checker's decisions, as keepalived's check/ipwrapper.c makes them, driven by
MISC_CHECK scripts whose exit status the test sets (a fake script host) and a fake clock:
the first failure, alpha, misc_dynamic weights, sorry servers (plain and inhibited), quorum
with hysteresis and its scripts, notify_up/down, omega, groups, warmup, lvs_flush and
lvs_timeouts. What reaches the director is read back through its own ipvsadm."""

from __future__ import annotations

import select
import time

import pytest

from testbed.check.checker import BOOTSTRAP_DELAY_S, HealthChecker
from testbed.director import ipvsadm
from testbed.keepalived_conf import parse_config
from tests.unit.check_fakes import FakeDirector, FakeScripts

VIP = "10.0.1.100:80"


def real_servers(n: int, options: str = "") -> str:
    return "".join(
        f"real_server 192.168.0.1{i} 80 {{\n weight 1\n {options}\n"
        f" notify_up /up{i}\n notify_down /down{i}\n"
        f" MISC_CHECK {{ misc_path /check{i} }}\n}}\n"
        for i in range(1, n + 1)
    )


def make(body: str, n: int = 3, options: str = "", before: str = "", **kwargs):
    text = f"{before}\nvirtual_server 10.0.1.100 80 {{\ndelay_loop 5\nlb_algo rr\n{body}\n"
    text += real_servers(n, options) + "}\n"
    config = parse_config(text).config
    director, scripts = FakeDirector(), FakeScripts()
    checker = HealthChecker(
        config, director, script_host=scripts, random_fraction=kwargs.pop("rng", lambda: 0.0)
    )
    return checker, director, scripts


def settle(checker: HealthChecker, now: float) -> None:
    end = time.monotonic() + 10
    checker.poll(now)
    while checker.in_flight:
        assert time.monotonic() < end, "checks did not finish"
        select.select([checker], [], [], 0.2)
        checker.poll(now)


def run(checker: HealthChecker, until: float, step: float = 1.0) -> None:
    now = 0.0
    while now <= until:
        settle(checker, now)
        now += step


@pytest.fixture
def pool():
    checker, director, scripts = make("")
    checker.start(0.0)
    yield checker, director, scripts
    checker.stop()


def test_one_failure_is_enough_at_start_then_retries_apply(pool):
    checker, director, scripts = pool
    scripts.rc["/check1"] = 1
    settle(checker, BOOTSTRAP_DELAY_S)  # the first run fails: down at once (check_data.c)
    assert "192.168.0.11:80" not in director.weights()
    scripts.rc["/check1"] = 0
    settle(checker, 6.0)
    assert director.weights()["192.168.0.11:80"] == 1
    scripts.rc["/check1"] = 1  # MISC_CHECK's retry defaults to 0: down at the next failure
    settle(checker, 11.0)
    assert "192.168.0.11:80" not in director.weights()


def test_notify_up_and_down_run_on_changes(pool):
    checker, director, scripts = pool
    settle(checker, 1.0)
    assert scripts.take() == []  # alive from the start: nothing to say
    scripts.rc["/check2"] = 1
    settle(checker, 6.0)
    assert scripts.take() == ["/down2"]
    scripts.rc["/check2"] = 0
    settle(checker, 11.0)
    assert scripts.take() == ["/up2"]


def test_alpha_starts_every_server_down_until_its_check_passes():
    checker, director, scripts = make("alpha", n=2)
    scripts.rc["/check2"] = 1
    checker.start(0.0)
    assert director.weights() == {}
    settle(checker, 1.0)
    assert director.weights() == {"192.168.0.11:80": 1}
    assert scripts.take() == ["/up1", "/down2"]  # alpha: the first result is announced
    checker.stop()


def test_inhibit_on_failure_keeps_a_failed_server_with_weight_zero():
    checker, director, scripts = make("alpha\ninhibit_on_failure", n=2)
    checker.start(0.0)
    assert director.weights() == {"192.168.0.11:80": 0, "192.168.0.12:80": 0}
    settle(checker, 1.0)
    assert director.weights() == {"192.168.0.11:80": 1, "192.168.0.12:80": 1}
    checker.stop()


def test_misc_dynamic_sets_the_weight_from_the_exit_status():
    text = (
        "virtual_server 10.0.1.100 80 {\n delay_loop 5\n real_server 192.168.0.11 80 {\n"
        "  weight 5\n  MISC_CHECK { misc_path /dyn\n misc_dynamic }\n }\n}\n"
    )
    director, scripts = FakeDirector(), FakeScripts()
    checker = HealthChecker(
        parse_config(text).config, director, script_host=scripts, random_fraction=lambda: 0.0
    )
    checker.start(0.0)
    for now, rc, weight in ((1, 12, 10), (6, 22, 20), (11, 0, 5), (16, 255, 253), (21, 1, None)):
        scripts.rc["/dyn"] = rc
        settle(checker, float(now))
        assert director.weights().get("192.168.0.11:80") == weight, (now, rc)
    scripts.rc["/dyn"] = 2  # weight 0, and up
    settle(checker, 26.0)
    assert director.weights()["192.168.0.11:80"] == 0
    scripts.rc["/dyn"] = 1
    settle(checker, 31.0)
    scripts.rc["/dyn"] = 2  # the same status as before the failure sets its weight again
    settle(checker, 36.0)
    assert director.weights()["192.168.0.11:80"] == 0
    assert checker.status()[0]["real_servers"][0]["alive"]
    checker.stop()


def test_sorry_server_comes_in_when_all_are_down_and_leaves_when_one_returns():
    checker, director, scripts = make("sorry_server 192.168.0.99 80", n=2)
    checker.start(0.0)
    settle(checker, 1.0)
    director.take()
    scripts.rc["/check1"] = scripts.rc["/check2"] = 1
    settle(checker, 6.0)
    assert director.weights() == {"192.168.0.99:80": 1}
    assert checker.status()[0]["sorry_server"]["active"]
    scripts.rc["/check2"] = 0
    settle(checker, 11.0)
    assert director.weights() == {"192.168.0.12:80": 1}
    assert ["-d", "-t", VIP, "-r", "192.168.0.99:80"] in director.take()
    checker.stop()


def test_sorry_server_inhibit_keeps_it_at_weight_zero_while_not_needed():
    checker, director, scripts = make("sorry_server 192.168.0.99 80\nsorry_server_inhibit", n=1)
    checker.start(0.0)
    assert director.weights() == {"192.168.0.11:80": 1, "192.168.0.99:80": 0}
    scripts.rc["/check1"] = 1
    settle(checker, 1.0)
    assert director.weights() == {"192.168.0.99:80": 1}
    scripts.rc["/check1"] = 0
    settle(checker, 6.0)
    assert director.weights() == {"192.168.0.11:80": 1, "192.168.0.99:80": 0}
    checker.stop()


def test_quorum_down_and_up_run_their_scripts():
    checker, director, scripts = make("quorum 2\nquorum_up /qup\nquorum_down /qdown", n=3)
    checker.start(0.0)
    settle(checker, 1.0)
    scripts.take()
    scripts.rc["/check1"] = 1
    settle(checker, 6.0)
    assert scripts.take() == ["/down1"]  # 2 alive: still quorum
    scripts.rc["/check2"] = 1
    settle(checker, 11.0)
    assert scripts.take() == ["/down2", "/qdown"]
    assert not checker.status()[0]["quorum"]["up"]
    assert director.weights() == {"192.168.0.13:80": 1}  # no sorry server: the rest stay
    scripts.rc["/check1"] = 0
    settle(checker, 16.0)
    assert scripts.take() == ["/up1", "/qup"]


def test_hysteresis_damps_quorum_flaps():
    """quorum 3, hysteresis 1: lost below 2, gained again only at 4 (keepalived.conf(5))."""
    checker, director, scripts = make("quorum 3\nhysteresis 1\nquorum_down /qdown", n=4)
    checker.start(0.0)
    settle(checker, 1.0)
    scripts.rc["/check1"] = scripts.rc["/check2"] = 1
    settle(checker, 6.0)
    assert checker.status()[0]["quorum"]["up"]  # 2 alive >= 3 - 1
    scripts.rc["/check3"] = 1
    settle(checker, 11.0)
    assert not checker.status()[0]["quorum"]["up"]
    scripts.rc["/check1"] = scripts.rc["/check2"] = 0
    settle(checker, 16.0)
    assert not checker.status()[0]["quorum"]["up"]  # 3 alive < 3 + 1
    scripts.rc["/check3"] = 0
    settle(checker, 21.0)
    assert checker.status()[0]["quorum"]["up"]
    checker.stop()


def test_alpha_with_a_sorry_server_starts_with_quorum_down():
    checker, director, scripts = make(
        "alpha\nsorry_server 192.168.0.99 80\nquorum_down /qdown", n=2
    )
    checker.start(0.0)
    assert director.weights() == {"192.168.0.99:80": 1}
    assert scripts.take() == ["/qdown"]  # keepalived: "Starting with quorum down"
    settle(checker, 1.0)
    assert director.weights() == {"192.168.0.11:80": 1, "192.168.0.12:80": 1}
    checker.stop()


def test_omega_runs_the_down_scripts_at_stop():
    checker, director, scripts = make("omega\nquorum_down /qdown", n=2)
    checker.start(0.0)
    settle(checker, 1.0)
    scripts.take()
    checker.stop()
    assert sorted(scripts.take()) == ["/down1", "/down2", "/qdown"]
    assert director.take()[-1] == ["-D", "-t", VIP]
    quiet, _, quiet_scripts = make("quorum_down /qdown", n=1)
    quiet.start(0.0)
    quiet.stop()
    assert quiet_scripts.take() == []  # without omega nothing runs at stop


def test_a_group_applies_its_real_servers_to_every_member():
    text = (
        "virtual_server_group G {\n 10.0.1.100 80\n 10.0.1.101-102 8080\n fwmark 6\n}\n"
        "virtual_server group G {\n delay_loop 5\n" + real_servers(2) + "}\n"
    )
    director, scripts = FakeDirector(), FakeScripts()
    checker = HealthChecker(
        parse_config(text).config, director, script_host=scripts, random_fraction=lambda: 0.0
    )
    checker.start(0.0)
    listing = ipvsadm.run(["-L", "-n"], director.director).out
    for service in ("TCP  10.0.1.100:80", "TCP  10.0.1.101:8080", "TCP  10.0.1.102:8080", "FWM  6"):
        assert service in listing
    assert listing.count("192.168.0.11") == 4
    scripts.rc["/check1"] = 1
    settle(checker, 1.0)
    listing = ipvsadm.run(["-L", "-n"], director.director).out
    assert "192.168.0.11" not in listing and listing.count("192.168.0.12") == 4
    checker.stop()
    assert ipvsadm.run(["-L", "-n"], director.director).out.count("->") <= 1  # all removed


def test_warmup_spreads_the_first_checks():
    checker, _, _ = make("warmup 4", n=1, rng=lambda: 0.5)
    checker.start(0.0)
    assert checker.poll(0.0) == pytest.approx(BOOTSTRAP_DELAY_S + 2.0)
    checker.stop()
    default, _, _ = make("", n=1, rng=lambda: 1.0)  # warmup defaults to the delay_loop
    default.start(0.0)
    assert default.poll(0.0) == pytest.approx(BOOTSTRAP_DELAY_S + 5.0)
    default.stop()


def test_lvs_flush_and_timeouts_come_first():
    checker, director, _ = make(
        "", n=1, before="global_defs {\n lvs_flush\n lvs_timeouts tcp 600 udp 30\n}"
    )
    checker.start(0.0)
    assert director.take()[:3] == [
        ["-C"],
        ["--set", "600", "0", "30"],
        ["-A", "-t", VIP, "-s", "rr"],
    ]
    checker.stop()


def test_a_misc_check_whose_script_cannot_run_is_dropped_with_a_warning():
    text = "virtual_server 10.0.1.100 80 {\n" + real_servers(1) + "}\n"
    scripts = FakeScripts()
    scripts.disabled.add("/check1")
    checker = HealthChecker(
        parse_config(text).config, FakeDirector(), script_host=scripts, random_fraction=lambda: 0.0
    )
    assert checker.status()[0]["real_servers"][0]["checks"] == []
    assert any("MISC_CHECK of [192.168.0.11]:80 disabled" in w for w in checker.warnings)
    checker.stop()
