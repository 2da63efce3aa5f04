"""Per-link captures, the pure parts: which end of each link is captured, tcpdump's bounds,
the files' final names, and how an experiment's point learns where its pcaps go. The
captures themselves (tcpdump in namespaces, real packets) are in
tests/integration/test_capture.py."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.harness.framework import get_experiment, plan_sweep
from testbed.harness.runner import create_run, execute
from testbed.net.capture import (
    CAPTURE_DIR_ENV,
    FILE_MB,
    FILES_PER_LINK,
    SNAPLEN_BYTES,
    capture_ends,
    final_names,
    tcpdump_argv,
)


@dataclass(frozen=True)
class Intf:
    name: str
    node: str


@dataclass(frozen=True)
class Link:
    intf1: Intf
    intf2: Intf


def test_each_link_is_captured_once_at_its_host_end():
    hosts = ["c1", "d1"]
    links = [
        Link(Intf("c1-eth0", "c1"), Intf("s1-eth1", "s1")),
        Link(Intf("s2-eth4", "s2"), Intf("d1-eth1", "d1")),  # host on the second end
        Link(Intf("s1-eth9", "s1"), Intf("s2-eth9", "s2")),  # switch to switch: first end
    ]
    ends = capture_ends(links, hosts)
    assert [(e.node, e.intf) for e in ends] == [
        ("c1", "c1-eth0"),
        ("d1", "d1-eth1"),
        ("s1", "s1-eth9"),
    ]


def test_tcpdump_is_bounded_and_writes_as_it_goes(tmp_path):
    argv = tcpdump_argv("c1-eth0", tmp_path)
    assert argv[0] == "tcpdump" and argv[argv.index("-i") + 1] == "c1-eth0"
    assert argv[argv.index("-C") + 1] == str(FILE_MB)  # MB per file
    assert argv[argv.index("-W") + 1] == str(FILES_PER_LINK)  # files in the ring
    assert argv[argv.index("-s") + 1] == str(SNAPLEN_BYTES)
    assert "-U" in argv  # packet-buffered: a file is readable even after a kill
    assert "--immediate-mode" in argv  # else the last packets before a stop are lost
    assert argv[argv.index("-w") + 1] == str(tmp_path / "c1-eth0.pcap")
    assert FILE_MB * FILES_PER_LINK <= 50  # per link, whatever the traffic


def test_ring_files_are_renamed_oldest_first(tmp_path):
    one = tmp_path / "c1-eth0.pcap0"
    one.write_bytes(b"x")
    assert final_names("c1-eth0", [one]) == {one: tmp_path / "c1-eth0.pcap"}
    newer, older = tmp_path / "d1-eth0.pcap0", tmp_path / "d1-eth0.pcap1"
    for path in (newer, older):
        path.write_bytes(b"x")
    now = time.time_ns()
    os.utime(older, ns=(now - 10**9, now - 10**9))  # the ring wrapped: file 1 is the older
    os.utime(newer, ns=(now, now))
    assert final_names("d1-eth0", [newer, older]) == {
        older: tmp_path / "d1-eth0.1.pcap",
        newer: tmp_path / "d1-eth0.2.pcap",
    }


PROBE = """
import os
from dataclasses import dataclass, field

from testbed.harness import Experiment, PointResult, register


@dataclass(frozen=True)
class Params:
    n: int = field(default=1, metadata={"help": "A number."})


def run_point(params, ctx):
    return PointResult(summary={"capture_dir": os.environ.get("CAPTURE_ENV", "")})


EXPERIMENT = register(
    Experiment(
        name="capture-probe",
        description="Reports where its layouts would write captures.",
        params=Params,
        run_point=run_point,
        needs_root=False,
        timeout_s=60,
    )
)
""".replace("CAPTURE_ENV", CAPTURE_DIR_ENV)


def test_a_point_of_a_capturing_run_is_told_its_pcaps_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(CAPTURE_DIR_ENV, raising=False)
    definition = tmp_path / "capture_probe.py"
    definition.write_text(PROBE)
    experiment = get_experiment(str(definition))
    for capture in (True, False):
        run_dir = create_run(plan_sweep(experiment, ["n=1,2"]), tmp_path / "results", capture)
        assert json.loads((run_dir / "params.json").read_text())["capture"] is capture
        execute(run_dir, show_progress=False)
        for point in (run_dir / "points").iterdir():
            summary = json.loads((point / "result.json").read_text())["summary"]
            assert summary["capture_dir"] == (str(point / "pcaps") if capture else "")


def test_testbed_takes_its_capture_directory_from_the_environment(monkeypatch, tmp_path):
    pytest.importorskip("mininet")
    from testbed.net import network

    monkeypatch.setenv(CAPTURE_DIR_ENV, str(tmp_path))
    assert network.Testbed("dr").capture_root == Path(tmp_path)
    monkeypatch.delenv(CAPTURE_DIR_ENV)
    assert network.Testbed("dr").capture_root is None
    assert network.Testbed("dr", capture_root=tmp_path / "x").capture_root == tmp_path / "x"
