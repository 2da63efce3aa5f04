"""The same ipvsadm command scripts against kernel IPVS (the real ipvsadm, in a namespace of
its own) and against the Python director (`testbed.director.ipvsadm.run`): every command's
exit code, standard output and standard error must be the same, byte for byte, unless the
difference is listed in KNOWN with its reason (and in docs/ipvs-differences.md). A listed
difference that no longer shows is an error too, so the list stays true.
"""

from __future__ import annotations

import shlex

import pytest

from testbed.director import ipvsadm as py_ipvsadm
from testbed.director.model import Director
from tests.kernel.support import record, requires_ip_vs
from tests.kernel.twin import Netns

pytestmark = requires_ip_vs()

V = "10.0.1.100"
R1, R2, R3 = "192.168.0.11", "192.168.0.12", "192.168.0.13"

# A command is "ARGS" or ("ARGS", stdin text for -R).
SMOKE_CASES: dict[str, list] = {
    "services and listings": [
        f"-A -t {V}:80 -s rr",
        f"-a -t {V}:80 -r {R1}:80 -m -w 3",
        f"-a -t {V}:80 -r {R2}:8080 -m",
        f"-a -t {V}:80 -r {R3} -g -w 0",
        f"-A -u {V}:7 -s wlc",
        f"-a -u {V}:7 -r {R1}:7 -m -w 2",
        "-L -n",
        "-L -n --stats",
        "-L -n --stats --exact",
        "-L -n --rate",
        "-L -n --thresholds",
        "-L -n --persistent-conn",
        f"-L -n -t {V}:80",
        "-S -n",
        "-L -n -c",
        "-L --timeout",
        "-L --daemon",
    ],
    "errors": [
        f"-A -t {V}:80 -s rr",
        f"-A -t {V}:80 -s rr",
        f"-a -t {V}:81 -r {R1}",
        f"-a -t {V}:80 -r {R1}:80 -m",
        f"-a -t {V}:80 -r {R1}:80 -m",
        f"-d -t {V}:80 -r {R2}:80",
        f"-D -t {V}:81",
        f"-E -t {V}:81 -s rr",
        f"-A -t {V}:82 -s nosuch",
        f"-A -t {V}",
        f"-a -t {V}:80 -r {R2} -w 70000",
        f"-a -t {V}:80 -r {R2} -w x",
        f"-A -t {V}:83 -r {R1}",
        f"-L -n -t {V}:99",
        "--set 10 20",
        "-Q",
        "-A -t 999.1.1.1:80",
        f"-a -t {V}:80 -r {R2} -m -g",
        f"-A -t {V}:84 -p 0",
        "-A -f 0",
        f"-A -t {V}:85 -s rr -b sh-port",
        f"-A -t {V}:86 -s sh -b nosuch",
        "-L -n --stats --rate",
        f"-a -t {V}:80 -r 172.16.0.9 -m",
        f"-a -t {V}:80 -r 224.0.0.5 -m",
        f"-a -t {V}:80 -r 0.0.0.0 -m",
        f"-a -t {V}:80 -r 0.1.2.3 -m",
        f"-a -t {V}:80 -r 255.255.255.255 -m",
        f"-A -t {V}:87 -p 100000000",
        f"-A -t {V}:88 -M 255.255.255.0",
        f"-e -t {V}:80 -r {R3}:80 -w 1",
        "-L -n -c --stats",
        "-S -n --stats",
        "",
        "-L -n",
    ],
}

CASES: dict[str, list] = {
    **SMOKE_CASES,
    "schedulers, persistence, flags": [
        *(
            f"-A -t {V}:{1000 + i} -s {s}"
            for i, s in enumerate(["rr", "wrr", "lc", "wlc", "sed", "nq"])
        ),
        *(f"-A -u {V}:{2000 + i} -s {s}" for i, s in enumerate(["sh", "dh", "mh", "lblc"])),
        f"-A -t {V}:3000 -s sh -b sh-fallback,sh-port",
        f"-A -t {V}:3001 -s mh -b mh-port",
        f"-A -t {V}:3002 -s wlc -p",
        f"-A -t {V}:3003 -s rr -p 60 -M 255.255.255.0",
        f"-A -u {V}:0 -s rr -p 120",
        "-A -f 5 -s wrr -p 30",
        "-a -f 5 -r 192.168.0.11 -w 4",
        "-a -f 5 -r 192.168.0.12 -i -w 2",
        "-L -n",
        "-S -n",
        f"-L -n -u {V}:0",
        "-L -n -f 5",
        f"-E -t {V}:3002 -s rr",
        f"-E -t {V}:3003 -s rr",
        "-L -n",
        "-S -n",
    ],
    "edit, zero, delete, clear": [
        f"-A -t {V}:80 -s wrr",
        *(f"-a -t {V}:80 -r {r}:80 -m -w {w}" for r, w in ((R3, 1), (R1, 3), (R2, 2))),
        "-L -n --nosort",
        f"-e -t {V}:80 -r {R1}:80 -m -w 0",
        f"-e -t {V}:80 -r {R2}:80 -m -w 5 -x 100 -y 50",
        "-L -n",
        "-L -n --thresholds",
        "-S -n",
        "-Z",
        f"-Z -t {V}:80",
        "-L -n --stats",
        f"-d -t {V}:80 -r {R2}:80",
        "-L -n",
        f"-E -t {V}:80 -s lc",
        "-L -n",
        f"-D -t {V}:80",
        "-L -n",
        f"-A -t {V}:80 -s rr",
        "-C",
        "-L -n",
    ],
    "a subnet's broadcast address": [
        f"-A -t {V}:80 -s rr",
        f"-a -t {V}:80 -r 192.168.0.255 -m",
    ],
    "timeouts": [
        "-L --timeout",
        "--set 100 50 20",
        "-L --timeout",
        "--set 0 0 0",
        "-L --timeout",
        "--set 3000000 1 1",
        "-L --timeout",
        "--set 1 x 1",
    ],
    "restore and save": [
        (
            "-R",
            f"-A -t {V}:80 -s rr\n-a -t {V}:80 -r {R1}:80 -m -w 1\n"
            f"-A -u {V}:7 -s sh -b sh-port\n-a -u {V}:7 -r {R2}:7 -m -w 2\n",
        ),
        "-S -n",
        ("-R", f"-A -t {V}:90 -s rr\n-A -t {V}:90 -s rr\n"),
        "-L -n",
        "-C",
        ("-R", "-L -n\n"),
        ("-R", f"-A -t {V}:91 -s rr\n-a -t {V}:91 -r {R3}:91 -i -w 1 --tun-type ipip\n"),
        "-S",
    ],
    "names and versions": [
        f"-A -t {V}:http -s rr",
        f"-a -t {V}:http -r {R1}:www -m",
        "-L -n",
        "-L",
        "-S",
        "-v",
        "--version",
        "-A -t localhost:81",
        "-A -6 -t [::1]:80",
        "--start-daemon master --mcast-interface lo",
        "-L --daemon",
        "--stop-daemon master",
        f"--sctp-service {V}:80",
    ],
}

NAMES = (
    "ipvsadm without -n prints service names (http, kerberos) and resolves host names; the "
    "Python director always prints numbers, as with -n"
)
SYNC = (
    "the Python director's connection sync is started by its daemon (--sync-iface), not by "
    "ipvsadm --start-daemon/--stop-daemon, so -L --daemon shows nothing"
)
# (case, command) -> why kernel IPVS and the Python director differ there.
KNOWN: dict[tuple[str, str], str] = {
    ("errors", ""): NAMES,
    ("a subnet's broadcast address", f"-a -t {V}:80 -r 192.168.0.255 -m"): (
        "the kernel refuses a subnet's broadcast address as a real server (inet_addr_type "
        "reads the routing table); the Python director's model has no routes and refuses "
        "only 0.0.0.0, 255.255.255.255 and multicast"
    ),
    ("edit, zero, delete, clear", "-S -n"): (
        "the Python director's -S also writes -x/-y thresholds, so -S | -R keeps them; "
        "ipvsadm -S drops them"
    ),
    ("names and versions", "-L"): NAMES,
    ("names and versions", "-S"): NAMES,
    ("names and versions", "-A -t localhost:81"): NAMES,
    ("names and versions", "-A -6 -t [::1]:80"): (
        "IPv6: ipvsadm takes -6 (its message here is about the order of options); the "
        "Python director is IPv4 only and says so"
    ),
    ("names and versions", "--start-daemon master --mcast-interface lo"): SYNC,
    ("names and versions", "-L --daemon"): SYNC,
    ("names and versions", "--stop-daemon master"): SYNC,
    ("restore and save", "-L -n"): (
        "-R with a bad line: ipvsadm applies the lines before it, the Python director "
        "checks every line first and applies none"
    ),
}


def _run_case(commands: list) -> list[tuple[str, tuple, tuple]]:
    """Each command on both sides: (args, kernel (rc, out, err), Python (rc, out, err))."""
    ns = Netns()
    director = Director()
    rows = []
    try:
        ns.add_director_addresses()
        for command in commands:
            args, stdin = (command, None) if isinstance(command, str) else command
            argv = shlex.split(args)
            k = ns.ipvsadm(argv, stdin)
            p = py_ipvsadm.run(argv, director, stdin, now=0.0)
            rows.append((args, (k.rc, k.out, k.err), (p.rc, p.out, p.err)))
    finally:
        ns.close()
    return rows


def _check(name: str, commands: list) -> None:
    unexpected, gone = [], []
    for args, k, p in _run_case(commands):
        known = KNOWN.get((name, args))
        same = k == p
        record(
            "ipvsadm commands", f"{name}: `ipvsadm {args}`", "agree" if same else f"differ: {known}"
        )
        if not same and known is None:
            unexpected.append(
                f"`ipvsadm {args}`\n  kernel: rc {k[0]} out {k[1]!r} err {k[2]!r}\n"
                f"  python: rc {p[0]} out {p[1]!r} err {p[2]!r}"
            )
        if same and known is not None:
            gone.append(f"`ipvsadm {args}` now agrees: remove it from KNOWN ({known})")
    assert not unexpected and not gone, "\n".join(unexpected + gone)


@pytest.mark.parametrize("name", sorted(SMOKE_CASES))
def test_smoke_commands_agree(name: str) -> None:
    _check(name, SMOKE_CASES[name])


@pytest.mark.parametrize("name", sorted(set(CASES) - set(SMOKE_CASES)))
def test_commands_agree(name: str) -> None:
    _check(name, CASES[name])
