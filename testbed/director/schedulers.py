"""The IPVS scheduling algorithms: which real server gets a new connection.

For: rr, wrr, lc, wlc, sed, nq, sh, dh, mh and lblc with the names, meanings and tie-breaking
of the kernel's ip_vs_<name>.c. They see only a service-shaped object and its real servers,
not packets, so the userspace director and an OpenFlow controller can share them.

Not for: persistence (model.py: a persistent service asks its scheduler only when the client
has no template), connection state, or the connection table.

Interface. `SCHEDULERS[name]()` makes one scheduler for one service (the kernel keeps one
sched_data per service). Call `update(service)` once attached and after every change to the
service's real servers or weights, then `schedule(service, caddr, cport, vaddr, vport)` per
new connection; it returns a real server or None. Addresses are host-order u32 ints.

What a service must offer: `dests`, a sequence of real servers in IPVS list order (the kernel
adds a new real server at the head of the list, so the newest comes first and wins ties), and
`flags`, an int holding the SCHED_FLAG_* bits (ipvsadm -b). Each real server offers `addr`,
`port`, `weight`, `last_weight` (latest non-zero weight; only mh reads it), `activeconns`,
`inactconns`, `overloaded` (its upper connection threshold was reached) and `available`
(False once deleted). A real server with weight 0 is quiesced: no scheduler picks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import gcd
from typing import ClassVar, Protocol

SCHED_FLAG_1 = 0x0008
"""IP_VS_SVC_F_SCHED1: `sh-fallback` for sh, `mh-fallback` for mh, else `flag-1`."""
SCHED_FLAG_2 = 0x0010
"""IP_VS_SVC_F_SCHED2: `sh-port` for sh, `mh-port` for mh, else `flag-2`."""
SCHED_FLAG_3 = 0x0020
"""IP_VS_SVC_F_SCHED3: `flag-3`."""
SCHED_FLAGS_MASK = SCHED_FLAG_1 | SCHED_FLAG_2 | SCHED_FLAG_3

_GENERIC_FLAG_NAMES = {"flag-1": SCHED_FLAG_1, "flag-2": SCHED_FLAG_2, "flag-3": SCHED_FLAG_3}
_SCHED_FLAG_NAMES = {
    "sh": {"sh-fallback": SCHED_FLAG_1, "sh-port": SCHED_FLAG_2},
    "mh": {"mh-fallback": SCHED_FLAG_1, "mh-port": SCHED_FLAG_2},
}

_U32 = 0xFFFFFFFF
_GOLDEN_RATIO_PRIME_32 = 2654435761  # the multiplier of sh/dh/lblc's hash keys
_GOLDEN_RATIO_32 = 0x61C88647  # include/linux/hash.h, used by hash_32()


class DestLike(Protocol):
    addr: int
    port: int
    weight: int
    last_weight: int
    activeconns: int
    inactconns: int
    overloaded: bool
    available: bool


class ServiceLike(Protocol):
    dests: Sequence[DestLike]
    flags: int


def sched_flag_names(scheduler: str) -> dict[str, int]:
    """The -b flag names ipvsadm accepts for `scheduler`, with their bits."""
    return _SCHED_FLAG_NAMES.get(scheduler, _GENERIC_FLAG_NAMES)


def describe_sched_flags(scheduler: str, flags: int) -> list[str]:
    """The names of the scheduler flags set in `flags`, in ipvsadm's order."""
    return [name for name, bit in sched_flag_names(scheduler).items() if flags & bit]


def conn_overhead(dest: DestLike) -> int:
    """ip_vs_dest_conn_overhead(): an active connection costs 256 inactive ones."""
    return (dest.activeconns << 8) + dest.inactconns


def _usable(dest: DestLike) -> bool:
    return dest.weight > 0 and not dest.overloaded


class Scheduler:
    """Base of the schedulers; stateless ones need no `update`."""

    name: ClassVar[str]

    def update(self, service: ServiceLike) -> None:
        """Recompute per-service state after the real servers or their weights changed."""

    def schedule(
        self, service: ServiceLike, caddr: int, cport: int, vaddr: int, vport: int
    ) -> DestLike | None:
        raise NotImplementedError


class RoundRobin(Scheduler):
    """ip_vs_rr.c: the next real server in list order, skipping quiesced/overloaded ones."""

    name = "rr"

    def __init__(self) -> None:
        self._last: DestLike | None = None
        self._pos = -1  # -1 is the list head: the next pick is the first entry

    def update(self, service: ServiceLike) -> None:
        # The kernel keeps a pointer into the list; when the pointed-to server is deleted it
        # moves back to the previous entry, so the deleted server's successor comes next.
        if self._last is None:
            self._pos = min(self._pos, len(service.dests) - 1)
            return
        try:
            self._pos = list(service.dests).index(self._last)
        except ValueError:
            self._pos -= 1
            self._last = None

    def schedule(
        self, service: ServiceLike, caddr: int, cport: int, vaddr: int, vport: int
    ) -> DestLike | None:
        dests = service.dests
        n = len(dests)
        pos = self._pos
        for _ in range(n):
            pos += 1
            if pos >= n:
                pos = 0
            dest = dests[pos]
            if dest.weight > 0 and not dest.overloaded:
                self._pos = pos
                self._last = dest
                return dest
        return None


class WeightedRoundRobin(Scheduler):
    """ip_vs_wrr.c: walk the list repeatedly with a current weight `cw` that starts at the
    maximum weight and steps down by the gcd of the weights; a server is picked while its
    weight is >= cw. Over a cycle each server gets weight/gcd connections."""

    name = "wrr"

    def __init__(self) -> None:
        self._cl = -1  # position of the last pick; -1 is the list head
        self._cw = 0  # current weight
        self._mw = 0  # maximum weight, lowered to max - (gcd - 1)
        self._di = 1  # gcd of the positive weights: the step

    def update(self, service: ServiceLike) -> None:
        weights = [d.weight for d in service.dests if d.weight > 0]
        self._cl = -1
        self._di = gcd(*weights) if weights else 1
        self._mw = max((d.weight for d in service.dests), default=0) - (self._di - 1)
        if self._cw > self._mw or not self._cw:
            self._cw = self._mw
        elif self._di > 1:
            self._cw = (self._cw // self._di) * self._di + 1

    def schedule(
        self, service: ServiceLike, caddr: int, cport: int, vaddr: int, vport: int
    ) -> DestLike | None:
        dests = service.dests
        if self._mw <= 0 or not any(_usable(d) for d in dests):
            return None
        # Terminates: cw cycles mw, mw-di, ... and always reaches 1, where any usable
        # server qualifies (mw = max - di + 1 is 1 modulo di).
        n = len(dests)
        i, cw = self._cl, self._cw
        while True:
            i += 1
            if i >= n:
                i = -1
                cw -= self._di
                if cw <= 0:
                    cw = self._mw
                continue
            dest = dests[i]
            if not dest.overloaded and dest.weight >= cw:
                self._cl, self._cw = i, cw
                return dest


class LeastConnection(Scheduler):
    """ip_vs_lc.c: the smallest activeconns*256 + inactconns; weight only says 0 or not."""

    name = "lc"

    def schedule(
        self, service: ServiceLike, caddr: int, cport: int, vaddr: int, vport: int
    ) -> DestLike | None:
        least = None
        loh = 0
        for dest in service.dests:
            if dest.overloaded or dest.weight == 0:
                continue
            doh = (dest.activeconns << 8) + dest.inactconns
            if least is None or doh < loh:
                least, loh = dest, doh
        return least


def _least_weighted(dests: Sequence[DestLike], overhead) -> DestLike | None:
    """The first usable server with the smallest overhead/weight, compared as the kernel does
    (h1*w2 > h2*w1, so no division; the first of equals wins)."""
    least = None
    loh = 0
    for dest in dests:
        if dest.overloaded:
            continue
        if least is None:
            if dest.weight > 0:
                least, loh = dest, overhead(dest)
            continue
        doh = overhead(dest)
        if loh * dest.weight > doh * least.weight:
            least, loh = dest, doh
    return least


class WeightedLeastConnection(Scheduler):
    """ip_vs_wlc.c: the smallest (activeconns*256 + inactconns) / weight."""

    name = "wlc"

    def schedule(
        self, service: ServiceLike, caddr: int, cport: int, vaddr: int, vport: int
    ) -> DestLike | None:
        return _least_weighted(service.dests, conn_overhead)


def _sed_overhead(dest: DestLike) -> int:
    return dest.activeconns + 1


class ShortestExpectedDelay(Scheduler):
    """ip_vs_sed.c: the smallest (activeconns + 1) / weight; inactive conns do not count."""

    name = "sed"

    def schedule(
        self, service: ServiceLike, caddr: int, cport: int, vaddr: int, vport: int
    ) -> DestLike | None:
        return _least_weighted(service.dests, _sed_overhead)


class NeverQueue(Scheduler):
    """ip_vs_nq.c: an idle server (no active conns) if there is one, else as sed."""

    name = "nq"

    def schedule(
        self, service: ServiceLike, caddr: int, cport: int, vaddr: int, vport: int
    ) -> DestLike | None:
        least = None
        loh = 0
        for dest in service.dests:
            if dest.overloaded or not dest.weight:
                continue
            doh = dest.activeconns + 1
            if dest.activeconns == 0:
                return dest
            if least is None or loh * dest.weight > doh * least.weight:
                least, loh = dest, doh
        return least


class SourceHashing(Scheduler):
    """ip_vs_sh.c: a 256-bucket table filled by walking the list, giving each server as many
    consecutive buckets as its weight; the client address (plus port with sh-port) picks the
    bucket. sh-fallback walks on from that bucket when its server is unusable."""

    name = "sh"
    TAB_BITS = 8
    TAB_SIZE = 1 << TAB_BITS

    def __init__(self) -> None:
        self._buckets: list[DestLike | None] = [None] * self.TAB_SIZE

    def update(self, service: ServiceLike) -> None:
        dests = service.dests
        if not dests:
            self._buckets = [None] * self.TAB_SIZE
            return
        buckets = []
        i = count = 0
        for _ in range(self.TAB_SIZE):
            dest = dests[i]
            buckets.append(dest)
            count += 1
            if count >= dest.weight:  # a weight-0 server still takes one bucket
                i = (i + 1) % len(dests)
                count = 0
        self._buckets = buckets

    def _hash(self, addr: int, port: int, offset: int) -> int:
        # (offset + hash_32(port + addr, 8)) & mask
        h = (((port + addr) & _U32) * _GOLDEN_RATIO_32 & _U32) >> (32 - self.TAB_BITS)
        return (offset + h) & (self.TAB_SIZE - 1)

    def schedule(
        self, service: ServiceLike, caddr: int, cport: int, vaddr: int, vport: int
    ) -> DestLike | None:
        port = cport if service.flags & SCHED_FLAG_2 else 0
        ihash = self._hash(caddr, port, 0)
        dest = self._buckets[ihash]
        if dest is None or _usable(dest):
            return dest
        if not service.flags & SCHED_FLAG_1:
            return None
        for offset in range(self.TAB_SIZE):
            dest = self._buckets[self._hash(caddr, port, (offset + ihash) % self.TAB_SIZE)]
            if dest is None:
                return None
            if _usable(dest):
                return dest
        return None


class DestinationHashing(Scheduler):
    """ip_vs_dh.c: like sh but keyed on the packet's destination address, one bucket per
    server in turn (weights only say usable or not)."""

    name = "dh"
    TAB_SIZE = 256

    def __init__(self) -> None:
        self._buckets: list[DestLike | None] = [None] * self.TAB_SIZE

    def update(self, service: ServiceLike) -> None:
        dests = service.dests
        self._buckets = [dests[i % len(dests)] if dests else None for i in range(self.TAB_SIZE)]

    def schedule(
        self, service: ServiceLike, caddr: int, cport: int, vaddr: int, vport: int
    ) -> DestLike | None:
        dest = self._buckets[(vaddr * _GOLDEN_RATIO_PRIME_32) & (self.TAB_SIZE - 1)]
        if dest is None or not dest.available or not _usable(dest):
            return None
        return dest


_U64 = 0xFFFFFFFFFFFFFFFF


def _rotl64(x: int, bits: int) -> int:
    return ((x << bits) | (x >> (64 - bits))) & _U64


def _sipround(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    """SIPHASH_PERMUTATION of include/linux/siphash.h."""
    v0 = (v0 + v1) & _U64
    v1 = _rotl64(v1, 13) ^ v0
    v0 = _rotl64(v0, 32)
    v2 = (v2 + v3) & _U64
    v3 = _rotl64(v3, 16) ^ v2
    v0 = (v0 + v3) & _U64
    v3 = _rotl64(v3, 21) ^ v0
    v2 = (v2 + v1) & _U64
    v1 = _rotl64(v1, 17) ^ v2
    v2 = _rotl64(v2, 32)
    return v0, v1, v2, v3


def hsiphash_u32(value: int, key: int) -> int:
    """The kernel's ``hsiphash(&v, 4, key)`` on a 64-bit machine, where hsiphash is
    SipHash-1-3 (lib/siphash.c) with both 64-bit key words set to ``key``, as
    ip_vs_mh.c's generate_hash_secret() sets them: one compression round over the 4-byte
    tail, three finalisation rounds, the four words folded to 32 bits."""
    v0 = 0x736F6D6570736575 ^ key
    v1 = 0x646F72616E646F6D ^ key
    v2 = 0x6C7967656E657261 ^ key
    v3 = 0x7465646279746573 ^ key
    b = (4 << 56) | (value & _U32)  # len << 56, then the little-endian tail
    v3 ^= b
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return (v0 ^ v1 ^ v2 ^ v3) & _U32


class MaglevHashing(Scheduler):
    """ip_vs_mh.c, Maglev hashing (Eisenbud et al., NSDI 2016, section 3.4): each server gets
    a permutation of a prime-sized lookup table (start = hash1 mod M, step = hash2 mod (M-1)
    + 1) and the servers take turns, in proportion to weight/gcd, claiming their next free
    slot until the table is full. Removing a server moves only about its share of keys.

    As in the kernel the table is built from `last_weight`, so quiescing a server (weight 0)
    keeps its slots; lookups that land there find no server (or, with mh-fallback, walk on).
    """

    name = "mh"
    TAB_SIZE = 4093  # primes[CONFIG_IP_VS_MH_TAB_INDEX(12) - 8]
    TAB_BITS = 6  # CONFIG_IP_VS_MH_TAB_INDEX / 2: bound on weight/gcd after the shift
    _KEY1 = 2654435761
    _KEY2 = 2654446892

    def __init__(self) -> None:
        self._lookup: list[DestLike | None] = [None] * self.TAB_SIZE

    def _hashkey(self, addr: int, port: int, key: int, offset: int) -> int:
        return hsiphash_u32((offset + port + addr) & _U32, key)

    def update(self, service: ServiceLike) -> None:
        size = self.TAB_SIZE
        dests = list(service.dests)
        weights = [d.last_weight for d in dests if d.last_weight > 0]
        if not weights or len(dests) > size:
            self._lookup = [None] * size
            return
        g = gcd(*weights)
        shift = max((max(weights) // g).bit_length() - self.TAB_BITS, 0)
        setups = []  # [perm (next candidate slot), skip, turns] per server in list order
        for d in dests:
            offset = self._hashkey(d.addr, d.port, self._KEY1, 0) % size
            skip = self._hashkey(d.addr, d.port, self._KEY2, 0) % (size - 1) + 1
            turns = ((d.last_weight // g) >> shift) or (1 if d.last_weight else 0)
            setups.append([offset, skip, turns])
        lookup: list[DestLike | None] = [None] * size
        taken = bytearray(size)
        filled = 0
        while filled < size:
            for dest, setup in zip(dests, setups, strict=True):
                for _ in range(setup[2]):
                    c = setup[0]
                    while taken[c]:
                        c += setup[1]
                        if c >= size:
                            c -= size
                    setup[0] = c
                    taken[c] = 1
                    lookup[c] = dest
                    filled += 1
                    if filled == size:
                        break
                if filled == size:
                    break
        self._lookup = lookup

    def schedule(
        self, service: ServiceLike, caddr: int, cport: int, vaddr: int, vport: int
    ) -> DestLike | None:
        port = cport if service.flags & SCHED_FLAG_2 else 0
        size = self.TAB_SIZE
        ihash = self._hashkey(caddr, port, self._KEY1, 0) % size
        dest = self._lookup[ihash]
        if dest is None or _usable(dest):
            return dest
        if not service.flags & SCHED_FLAG_1:
            return None
        for offset in range(size):
            roffset = (offset + ihash) % size
            dest = self._lookup[self._hashkey(caddr, port, self._KEY1, roffset) % size]
            if dest is None:
                return None
            if _usable(dest):
                return dest
        return None


class LocalityBasedLeastConnection(Scheduler):
    """ip_vs_lblc.c, for cache clusters: remember which server got each destination address
    and keep sending that address there, unless the server is gone, quiesced, or has more
    active conns than its weight while another has fewer than half its weight; then pick by
    weighted least-connection and remember the new choice.

    The kernel forgets entries unused for 24 hours (lblc_expiration); entries here are
    forgotten only when replaced, which is the same for runs shorter than a day.
    """

    name = "lblc"

    def __init__(self) -> None:
        self._cache: dict[int, DestLike] = {}

    @staticmethod
    def _is_overloaded(dest: DestLike, service: ServiceLike) -> bool:
        if dest.activeconns > dest.weight:
            return any(d.activeconns * 2 < d.weight for d in service.dests)
        return False

    def schedule(
        self, service: ServiceLike, caddr: int, cport: int, vaddr: int, vport: int
    ) -> DestLike | None:
        dest = self._cache.get(vaddr)
        if (
            dest is not None
            and dest.available
            and dest.weight > 0
            and not self._is_overloaded(dest, service)
        ):
            return dest
        dest = _least_weighted(service.dests, conn_overhead)
        if dest is not None:
            self._cache[vaddr] = dest
        return dest


SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.name: cls
    for cls in (
        RoundRobin,
        WeightedRoundRobin,
        LeastConnection,
        WeightedLeastConnection,
        LocalityBasedLeastConnection,
        DestinationHashing,
        SourceHashing,
        ShortestExpectedDelay,
        NeverQueue,
        MaglevHashing,
    )
}
"""Scheduler name (as given to ipvsadm -s) -> class; instantiate one per service."""
