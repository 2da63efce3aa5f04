"""Link shaping with tc: the commands for a rate, Ethernet framing overhead, queue, delay, loss.

Pure command building plus a side-effect-free probe of which qdiscs the kernel has. The
Mininet interface class that runs these commands lives in `testbed.net.links`.

Rates are HTB classes. On a veth, a frame's length is its Ethernet header and payload; on a
real wire each frame also carries preamble and start delimiter (8 bytes), FCS (4) and the
inter-frame gap (12), and is at least 64 bytes long with its FCS. With ``ethernet_overhead``
the class counts 24 extra bytes per frame and at least 84, so 100 Mbit/s carries at most
148,809 minimum-size frames per second, as real Fast Ethernet does. Delay and loss need netem,
which small VM kernels (like the one these tests run on) lack: `require_netem` says so with the
fix instead of letting tc fail obscurely.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass

ETH_WIRE_OVERHEAD_BYTES = 24  # preamble + SFD 8, FCS 4, inter-frame gap 12
ETH_MIN_WIRE_BYTES = 84  # 64-byte minimum frame (with FCS) + preamble, SFD and gap
NETEM_MISSING = (
    "netem is not available in this kernel: delay/loss need a full kernel "
    "(see docs/layouts.md, 'What needs a full kernel'; the Vagrant VM has one)"
)


class ShapingError(RuntimeError):
    """tc could not shape a link; the message says what and how to fix it."""


@dataclass(frozen=True)
class Shaping:
    """How one interface's egress is shaped. All fields optional: empty means unshaped."""

    bw_mbit: float | None = None
    ethernet_overhead: bool = True
    queue_pkts: int | None = None
    delay_ms: float | None = None
    loss_pct: float | None = None

    @property
    def needs_netem(self) -> bool:
        return bool(self.delay_ms) or bool(self.loss_pct)

    @property
    def empty(self) -> bool:
        return self.bw_mbit is None and not self.needs_netem and self.queue_pkts is None


def max_frames_per_s(bw_mbit: float, frame_bytes: int, ethernet_overhead: bool = True) -> float:
    """The most frames of ``frame_bytes`` (Ethernet header + payload, no FCS) per second."""
    wire = frame_bytes + ETH_WIRE_OVERHEAD_BYTES if ethernet_overhead else frame_bytes
    if ethernet_overhead:
        wire = max(wire, ETH_MIN_WIRE_BYTES)
    return bw_mbit * 1e6 / (wire * 8)


def burst_bytes(bw_mbit: float) -> int:
    """A bucket that holds 1 ms at the rate (at least 15 kB, as Mininet uses): smaller buckets
    cap fast links below their rate because the timer cannot refill them often enough."""
    return max(15_000, int(bw_mbit * 1e6 / 8 * 0.001))


def tc_commands(dev: str, shaping: Shaping) -> list[str]:
    """The tc commands (without the leading ``tc``) that shape ``dev``'s egress."""
    cmds: list[str] = []
    netem = ""
    if shaping.needs_netem:
        netem = "netem"
        if shaping.delay_ms:
            netem += f" delay {shaping.delay_ms:g}ms"
        if shaping.loss_pct:
            netem += f" loss {shaping.loss_pct:g}%"
        if shaping.queue_pkts:
            netem += f" limit {shaping.queue_pkts}"
    if shaping.bw_mbit is not None:
        burst = burst_bytes(shaping.bw_mbit)
        framing = (
            f" overhead {ETH_WIRE_OVERHEAD_BYTES} mpu {ETH_MIN_WIRE_BYTES}"
            if shaping.ethernet_overhead
            else ""
        )
        cmds.append(f"qdisc replace dev {dev} root handle 1: htb default 1")
        cmds.append(
            f"class add dev {dev} parent 1: classid 1:1 htb rate {shaping.bw_mbit:g}mbit "
            f"ceil {shaping.bw_mbit:g}mbit burst {burst} cburst {burst}{framing}"
        )
        if netem:
            cmds.append(f"qdisc add dev {dev} parent 1:1 handle 10: {netem}")
        elif shaping.queue_pkts:
            cmds.append(
                f"qdisc add dev {dev} parent 1:1 handle 10: pfifo limit {shaping.queue_pkts}"
            )
    elif netem:
        cmds.append(f"qdisc replace dev {dev} root handle 10: {netem}")
    elif shaping.queue_pkts:
        cmds.append(f"qdisc replace dev {dev} root handle 10: pfifo limit {shaping.queue_pkts}")
    return cmds


@functools.cache
def qdisc_available(kind: str) -> bool:
    """Can this kernel create a ``kind`` qdisc? Probed on ``lo`` in a throwaway namespace,
    so nothing on the machine changes."""
    args = {
        "netem": "netem delay 1ms",
        "htb": "htb",
        "tbf": "tbf rate 1mbit burst 10k latency 50ms",
    }.get(kind, kind)
    try:
        res = subprocess.run(
            [
                "unshare",
                "--net",
                "tc",
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "handle",
                "1:",
                *args.split(),
            ],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


def require_netem(shaping: Shaping) -> None:
    if shaping.needs_netem and not qdisc_available("netem"):
        raise ShapingError(NETEM_MISSING)
