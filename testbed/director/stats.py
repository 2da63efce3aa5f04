"""Traffic counters and the rate estimator of IPVS (ip_vs_est.c).

For: the five counters IPVS keeps per real server, per virtual service and in total
(conns, inpkts, outpkts, inbytes, outbytes) and the rates `ipvsadm -L --rate` shows, estimated
every 2 s with the kernel's EWMA, shifts and scaling. The clock is injected: `tick(now)`.

Not for: deciding what to count (the forwarding loop increments a real server's counters
directly, as plain int attributes) or printing them (ipvsadm.py).

As in the kernel, where each CPU counts on its own and the counters are summed when read,
only the real server's counters are touched per packet; a service's and the total counters
are sums made on read (see `Stats.set_sum`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

ESTIMATOR_PERIOD_S = 2.0
"""ip_vs_est.c's timer runs every 2 s."""


class Counters:
    """The five IPVS counters (struct ip_vs_kstats without the rates)."""

    __slots__ = ("conns", "inpkts", "outpkts", "inbytes", "outbytes")

    def __init__(self) -> None:
        self.conns = 0
        self.inpkts = 0
        self.outpkts = 0
        self.inbytes = 0
        self.outbytes = 0

    def add(self, other: Counters) -> None:
        self.conns += other.conns
        self.inpkts += other.inpkts
        self.outpkts += other.outpkts
        self.inbytes += other.inbytes
        self.outbytes += other.outbytes

    def clear(self) -> None:
        self.conns = self.inpkts = self.outpkts = self.inbytes = self.outbytes = 0

    def set_sum(self, base: Counters, parts: Iterable[Counters]) -> None:
        """Make these counters `base` plus every counter in `parts`."""
        conns, inpkts, outpkts = base.conns, base.inpkts, base.outpkts
        inbytes, outbytes = base.inbytes, base.outbytes
        for p in parts:
            conns += p.conns
            inpkts += p.inpkts
            outpkts += p.outpkts
            inbytes += p.inbytes
            outbytes += p.outbytes
        self.conns, self.inpkts, self.outpkts = conns, inpkts, outpkts
        self.inbytes, self.outbytes = inbytes, outbytes

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.conns, self.inpkts, self.outpkts, self.inbytes, self.outbytes)


class Stats(Counters):
    """Counters plus their rate estimate (struct ip_vs_stats with its ip_vs_estimator).

    The averages are kept scaled as the kernel keeps them: cps and pps by 2^10, bps by 2^5,
    so that the integer arithmetic, and so the figures ipvsadm shows, are the kernel's.
    """

    __slots__ = (
        "_last_conns",
        "_last_inpkts",
        "_last_outpkts",
        "_last_inbytes",
        "_last_outbytes",
        "_cps",
        "_inpps",
        "_outpps",
        "_inbps",
        "_outbps",
    )

    def __init__(self) -> None:
        super().__init__()
        self._reset_estimator()

    def _reset_estimator(self) -> None:
        # ip_vs_zero_estimator: the current counters become the reference, averages restart.
        self._last_conns = self.conns
        self._last_inpkts = self.inpkts
        self._last_outpkts = self.outpkts
        self._last_inbytes = self.inbytes
        self._last_outbytes = self.outbytes
        self._cps = self._inpps = self._outpps = self._inbps = self._outbps = 0

    def zero(self) -> None:
        """What `ipvsadm -Z` does to one object: counters and rates back to 0."""
        self.clear()
        self._reset_estimator()

    def estimate(self) -> None:
        """One 2-second step of estimation_timer(): avg += (rate - avg) / 4.

        A count over 2 s shifted left by 9 is the per-second rate scaled by 2^10;
        bytes shifted left by 4 are the per-second rate scaled by 2^5. Python's >> on a
        negative int floors, like the kernel's arithmetic shift of a signed long.
        """
        rate = (self.conns - self._last_conns) << 9
        self._last_conns = self.conns
        self._cps += (rate - self._cps) >> 2

        rate = (self.inpkts - self._last_inpkts) << 9
        self._last_inpkts = self.inpkts
        self._inpps += (rate - self._inpps) >> 2

        rate = (self.outpkts - self._last_outpkts) << 9
        self._last_outpkts = self.outpkts
        self._outpps += (rate - self._outpps) >> 2

        rate = (self.inbytes - self._last_inbytes) << 4
        self._last_inbytes = self.inbytes
        self._inbps += (rate - self._inbps) >> 2

        rate = (self.outbytes - self._last_outbytes) << 4
        self._last_outbytes = self.outbytes
        self._outbps += (rate - self._outbps) >> 2

    # Decoded as ip_vs_read_estimator() does: round to nearest, drop the scaling.
    @property
    def cps(self) -> int:
        return (self._cps + 0x1FF) >> 10

    @property
    def inpps(self) -> int:
        return (self._inpps + 0x1FF) >> 10

    @property
    def outpps(self) -> int:
        return (self._outpps + 0x1FF) >> 10

    @property
    def inbps(self) -> int:
        return (self._inbps + 0xF) >> 5

    @property
    def outbps(self) -> int:
        return (self._outbps + 0xF) >> 5

    def rates(self) -> tuple[int, int, int, int, int]:
        return (self.cps, self.inpps, self.outpps, self.inbps, self.outbps)


class RateEstimator:
    """Runs `Stats.estimate` on every object once per 2 s of the injected clock.

    Call `tick(now, collect)` at least every 2 s; `collect` is called only when a step is due
    and returns the Stats to update (it is the place to refresh summed counters first).
    Steps missed because tick was called late are not replayed: like a late kernel timer,
    the next step sees the whole count since the last one.
    """

    __slots__ = ("period_s", "next_s")

    def __init__(self, start_s: float, period_s: float = ESTIMATOR_PERIOD_S) -> None:
        self.period_s = period_s
        self.next_s = start_s + period_s

    def tick(self, now: float, collect: Callable[[], Iterable[Stats]]) -> bool:
        """Run one estimation step if one is due; say whether it ran."""
        if now < self.next_s:
            return False
        for stats in collect():
            stats.estimate()
        self.next_s += self.period_s
        if self.next_s <= now:
            self.next_s = now + self.period_s
        return True
