"""The nftables bypass ruleset (kernel.py): one element per TCP/UDP service, none for
firewall-mark services, and the table's shape; `apply` feeds nft one atomic script."""

import re
import subprocess

import pytest

from testbed.director import ipvsadm, kernel
from testbed.director.model import Director


def director(rules: str) -> Director:
    d = Director(seed=1)
    res = ipvsadm.run(["-R"], d, rules)
    assert res.rc == 0, res.err
    return d


RULES = (
    "-A -t 10.0.0.100:80 -s rr\n"
    "-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g\n"
    "-A -u 10.0.0.100:7 -s rr\n"
    "-A -t 10.0.1.100:443 -s wlc\n"
    "-A -f 1 -s rr\n"
    "-a -f 1 -r 10.0.0.12 -g\n"
)


def elements(ruleset: str) -> list[str]:
    found = re.findall(r"elements = \{ (.*) \}", ruleset)
    return found[0].split(", ") if found else []


def test_one_element_per_tcp_and_udp_service_none_for_fwmark():
    """protocol . VIP . port for each TCP/UDP service, in a stable order; fwmark services
    have no address and port to match, so they add nothing."""
    text = kernel.ruleset(director(RULES))
    assert elements(text) == [
        "tcp . 10.0.0.100 . 80",
        "tcp . 10.0.1.100 . 443",
        "udp . 10.0.0.100 . 7",
    ]


def test_no_services_no_elements_line():
    """An empty set is declared without an elements line (nft refuses `elements = { }`)."""
    text = kernel.ruleset(director("-A -f 5\n"))
    assert "elements" not in text
    assert "set services" in text


def test_ruleset_shape():
    """One inet table holding the typed set and a prerouting chain that drops what is in it,
    hooked before conntrack (priority -300), accepting everything else."""
    text = kernel.ruleset(director(RULES))
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == f"table inet {kernel.TABLE} {{"
    assert "type inet_proto . ipv4_addr . inet_service" in lines
    assert "type filter hook prerouting priority -300; policy accept;" in lines
    assert "meta l4proto . ip daddr . th dport @services drop" in lines
    assert text.count("{") == text.count("}")
    depth = 0
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0 and lines[-1] == "}"


def test_services_follow_ipvsadm_changes():
    d = director(RULES)
    ipvsadm.run(["-D", "-t", "10.0.0.100:80"], d)
    ipvsadm.run(["-A", "-u", "10.0.1.100:53"], d)
    assert elements(kernel.ruleset(d)) == [
        "tcp . 10.0.1.100 . 443",
        "udp . 10.0.0.100 . 7",
        "udp . 10.0.1.100 . 53",
    ]


def test_apply_replaces_the_table_in_one_script(monkeypatch):
    """apply() runs `nft -f -` once with: create (so delete cannot fail), delete, the new
    table; a refusal is an error carrying nft's words."""
    calls = []

    def fake_run(argv, **kw):
        calls.append((argv, kw.get("input")))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(kernel.subprocess, "run", fake_run)
    d = director(RULES)
    kernel.apply(d)
    [(argv, script)] = calls
    assert argv == ["nft", "-f", "-"]
    assert script == (
        f"table inet {kernel.TABLE}\ndelete table inet {kernel.TABLE}\n{kernel.ruleset(d)}\n"
    )

    def refusing(argv, **kw):
        return subprocess.CompletedProcess(argv, 1, "", "Error: syntax error\n")

    monkeypatch.setattr(kernel.subprocess, "run", refusing)
    with pytest.raises(RuntimeError, match="syntax error"):
        kernel.apply(d)


def test_remove_deletes_only_our_table(monkeypatch):
    calls = []
    monkeypatch.setattr(
        kernel.subprocess,
        "run",
        lambda argv, **kw: calls.append(argv) or subprocess.CompletedProcess(argv, 0, "", ""),
    )
    kernel.remove()
    assert calls == [["nft", "delete", "table", "inet", kernel.TABLE]]
