"""Per-link packet captures of a running layout, in bounded pcap files Wireshark opens.

For: `testbed.net.network.Testbed` (its ``capture_root``), behind ``up --capture``,
``lab start --capture`` and ``experiment run --capture`` (a point's process finds its
directory in ``$LVS_TESTBED_CAPTURE_DIR``, which the runner sets). One tcpdump per link, run
in the namespace of the link's host end, so ``c1-eth0.pcap`` is the link between c1 and its
switch (a link between two switches is captured on the first switch's port). Each tcpdump
writes every packet as it comes (``-U``: a file stays readable even after a kill), keeps at
most SNAPLEN_BYTES of each, and writes a ring of FILES_PER_LINK files of FILE_MB MB: a busy
link keeps its newest packets and no capture grows without bound. When the capture stops,
a link's files are renamed in time order to ``<link>.pcap`` (one file) or ``<link>.1.pcap``,
``<link>.2.pcap`` (oldest first).

Not for: choosing packets (everything on every link is captured) or reading captures
(Wireshark, ``tshark -r``, ``tcpdump -r``). Capturing costs CPU: on a small machine it lowers
what a layout carries, so an experiment run with it measures a slower system.

Imports no Mininet: nodes and links are passed in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CAPTURE_DIR_ENV = "LVS_TESTBED_CAPTURE_DIR"
"""Where a process's layouts write their captures (one sub-directory per run), if set."""
FILE_MB = 10
FILES_PER_LINK = 2
SNAPLEN_BYTES = 512
"""Headers and the start of each payload (an HTTP reply of the real servers fits)."""
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
POLL_S = 0.05
READY_LINE = "listening on"


class CaptureError(RuntimeError):
    """A capture could not start; the message names the link and tcpdump's words."""


@dataclass(frozen=True)
class LinkEnd:
    """Where one link is captured: the node to run tcpdump in and its interface there."""

    node: Any
    intf: str


def capture_ends(links: list[Any], hosts: list[Any]) -> list[LinkEnd]:
    """One end per link: its host end if it has one, else its first end (switch to switch)."""
    ends = []
    for link in links:
        first, second = link.intf1, link.intf2
        chosen = second if second.node in hosts and first.node not in hosts else first
        ends.append(LinkEnd(chosen.node, chosen.name))
    return sorted(ends, key=lambda e: e.intf)


def tcpdump_argv(intf: str, out_dir: Path) -> list[str]:
    """tcpdump on ``intf`` into a ring of bounded files ``<out_dir>/<intf>.pcapN``.

    ``--immediate-mode``: libpcap otherwise hands packets over a ring block at a time (or
    after a second), and a capture stopped by SIGINT loses that last block, the very
    packets of the commands just run. ``-Z root``: Debian's tcpdump otherwise drops to its
    own user before opening each ring file, and cannot write into a root-owned directory."""
    return [
        "tcpdump",
        "-i",
        intf,
        "-n",
        "--immediate-mode",
        "-U",
        "-s",
        str(SNAPLEN_BYTES),
        "-C",
        str(FILE_MB),
        "-W",
        str(FILES_PER_LINK),
        "-Z",
        "root",
        "-w",
        str(out_dir / f"{intf}.pcap"),
    ]


def final_names(stem: str, files: list[Path]) -> dict[Path, Path]:
    """What a link's ring files are renamed to, oldest (by modification time) first."""
    ordered = sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))
    if len(ordered) == 1:
        return {ordered[0]: ordered[0].with_name(f"{stem}.pcap")}
    return {p: p.with_name(f"{stem}.{i}.pcap") for i, p in enumerate(ordered, start=1)}


class LinkCaptures:
    """tcpdump on every link of a started Mininet network, into ``out_dir``."""

    def __init__(self, out_dir: Path, run: Any = None) -> None:
        self.out_dir = out_dir
        self.run = run  # a testbed.runtime.registry.Run: `clean` stops what a kill left
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, links: list[Any], hosts: list[Any]) -> LinkCaptures:
        """Start one tcpdump per link and wait until each is listening."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for end in capture_ends(links, hosts):
            log = open(self._log(end.intf), "wb")  # noqa: SIM115 - the child owns it
            try:
                proc = end.node.popen(
                    tcpdump_argv(end.intf, self.out_dir),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            finally:
                log.close()
            self.procs[end.intf] = proc
            if self.run is not None:
                self.run.record_process(proc.pid, f"tcpdump {end.intf}")
        for intf in self.procs:
            self._wait_listening(intf)
        return self

    def _log(self, intf: str) -> Path:
        return self.out_dir / f".{intf}.tcpdump.log"

    def _wait_listening(self, intf: str) -> None:
        proc, log = self.procs[intf], self._log(intf)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while READY_LINE not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                said = log.read_text(errors="replace").strip()[-300:]
                raise CaptureError(
                    f"tcpdump on {intf} did not start capturing within "
                    f"{READY_TIMEOUT_S:g} s: {said or 'no output'}"
                )
            time.sleep(POLL_S)

    def stop(self) -> list[Path]:
        """Stop every tcpdump (SIGINT: it writes what it holds), name the files; the pcaps."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        out = []
        for intf in self.procs:
            ring = sorted(self.out_dir.glob(f"{intf}.pcap[0-9]*"))
            for old, new in final_names(intf, ring).items():
                os.replace(old, new)
                out.append(new)
            self._log(intf).unlink(missing_ok=True)
        self.procs.clear()
        return sorted(out)
