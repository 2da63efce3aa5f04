"""The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

For: the one's-complement sums that IPv4, TCP, UDP and ICMP carry. Computed in full where the
director builds a header or completes a checksum the kernel left to the NIC; adjusted
incrementally on the NAT fast path, where a full recompute would cost time in proportion to
the payload. Not for: finding headers in a frame or deciding which field to touch (that is
`testbed.director.packet`).

Arithmetic. Because 2**16 == 1 (mod 0xFFFF), a buffer read as one big-endian integer is
congruent modulo 0xFFFF to the sum of its 16-bit words, which is what a one's-complement sum
is. So the sum of a whole buffer is one `int.from_bytes` and one `%`, both in C (an odd
length is padded with a zero byte, as RFC 1071 says). One's complement has two zeros: the sum
of data that is not all zero is never +0 (0x0000) but -0 (0xFFFF), which `fold` keeps.
Measured on CPython 3.11, this is about twice as fast as summing an `array('H')`
(20 bytes: 210 vs 340 ns; 1500 bytes: 2.6 vs 5.5 us).

Incremental update, RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). `delta16`/`delta32` give the
~m + m' part for one changed 16-bit word or 32-bit value (an IPv4 address is two words, and
~m + m' of the whole value is congruent to the sum over both), deltas add, and `adjust`
applies their total to a checksum field. UDP is the exception that `adjust_udp` handles: a
transmitted 0 means "no checksum" and stays 0, and a computed 0 goes out as 0xFFFF (RFC 768).
"""

from __future__ import annotations

__all__ = [
    "BytesLike",
    "adjust",
    "adjust_udp",
    "checksum",
    "delta16",
    "delta32",
    "fold",
    "ones_sum",
    "pseudo_header_sum",
    "update16",
    "update32",
]

BytesLike = bytes | bytearray | memoryview


def fold(total: int) -> int:
    """Reduce a non-negative sum of 16-bit words to a 16-bit one's-complement sum.

    The result is 0 only when `total` is 0, and 0xFFFF (-0) for any other multiple of 0xFFFF,
    which is what end-around-carry addition gives.
    """
    return (total - 1) % 0xFFFF + 1 if total else 0


def ones_sum(data: BytesLike) -> int:
    """The 16-bit one's-complement sum of `data` (not complemented)."""
    total = int.from_bytes(data, "big")
    if len(data) & 1:
        total <<= 8
    return (total - 1) % 0xFFFF + 1 if total else 0


def checksum(data: BytesLike, initial_sum: int = 0) -> int:
    """The Internet checksum of `data`: the complement of its sum plus `initial_sum`.

    `initial_sum` carries what is summed but not sent, such as a TCP/UDP pseudo-header.
    With the checksum field inside `data` zeroed this gives the value to store; with the
    field as received it gives 0 exactly when the checksum verifies.
    """
    total = int.from_bytes(data, "big")
    if len(data) & 1:
        total <<= 8
    total += initial_sum
    # 0xFFFF - fold(total), without the call.
    return -total % 0xFFFF if total else 0xFFFF


def pseudo_header_sum(src_ip: int, dst_ip: int, proto: int, l4_len: int) -> int:
    """The folded sum of the IPv4 pseudo-header that TCP and UDP checksums cover.

    This is also what Linux leaves in the checksum field of a CHECKSUM_PARTIAL packet.
    """
    return fold(src_ip + dst_ip + proto + l4_len)


def delta16(old: int, new: int) -> int:
    """~m + m' for one 16-bit word changed from `old` to `new`."""
    return (old ^ 0xFFFF) + new


def delta32(old: int, new: int) -> int:
    """~m + m' for a 32-bit value (an IPv4 address) changed from `old` to `new`."""
    return (old ^ 0xFFFFFFFF) + new


def adjust(csum: int, delta: int) -> int:
    """Apply a sum of deltas to checksum field `csum` (RFC 1624 eqn. 3)."""
    total = (csum ^ 0xFFFF) + delta
    return -total % 0xFFFF if total else 0xFFFF


def adjust_udp(csum: int, delta: int) -> int:
    """`adjust` for a UDP checksum: 0 means none and stays 0; a result of 0 is sent as 0xFFFF."""
    if not csum:
        return 0
    total = (csum ^ 0xFFFF) + delta
    return (-total % 0xFFFF or 0xFFFF) if total else 0xFFFF


def update16(csum: int, old: int, new: int) -> int:
    """Checksum field `csum` after one covered 16-bit word changed from `old` to `new`."""
    return adjust(csum, (old ^ 0xFFFF) + new)


def update32(csum: int, old: int, new: int) -> int:
    """Checksum field `csum` after a covered 32-bit value changed from `old` to `new`."""
    return adjust(csum, (old ^ 0xFFFFFFFF) + new)
