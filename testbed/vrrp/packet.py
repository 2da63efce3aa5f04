"""VRRP advertisement codec: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798) over IPv4.

What it is for: turning an :class:`Advert` into the bytes keepalived 2.2.7 puts on the wire,
and turning received bytes back into an :class:`Advert` or a named :class:`DropReason`.
It is pure: no sockets, no clock, no logging. Decoding never raises on any bytes.

What it is not: the state machine (``state.py``) or the daemon (sockets, VIPs, GARP).
IPv6 is out of scope (the lab is IPv4 only), and so is IPsec AH authentication, which
keepalived can still do for VRRPv2: an AH-protected advert travels as IP protocol 51, so it
is dropped here as ``NOT_VRRP``, and a protocol-112 advert claiming Auth Type 2 is dropped
as ``AUTH_UNSUPPORTED``. ``config.py`` refuses ``auth_type AH`` outright.

RFC 3768 section 5.1, VRRPv2::

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |   Auth Type   |   Adver Int   |          Checksum             |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                         IP Address (1)                        |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                            .                                  |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                         IP Address (n)                        |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                     Authentication Data (1)                   |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                     Authentication Data (2)                   |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Adver Int is in whole seconds. The checksum covers the VRRP message only. Auth Type 1 (a
plain 8-byte password in the Authentication Data) comes from RFC 2338; RFC 3768 reserved it,
but keepalived still speaks it, so we do too.

RFC 5798 section 5.1, VRRPv3 over IPv4::

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                    IPv4 Fields or IPv6 Fields                 |
   ...                                                             ...
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |(rsvd) |     Max Adver Int     |          Checksum             |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                       IPvX Address(es)                        |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Max Adver Int is 12 bits of centiseconds; the reserved nibble "MUST be set to zero on
transmission and ignored on reception". RFC 5798 5.2.8: the checksum is computed over "the
entire VRRP message starting with the version field and a 'pseudo-header'"; for IPv4
keepalived (and tcpdump/wireshark) use the IPv4 pseudo-header (source, destination, zero,
protocol 112, VRRP length), with the destination actually in the IP header, so a unicast
advert's checksum depends on the peer it is sent to.

Sending, for the daemon: with a raw ``IPPROTO_VRRP`` socket *without* ``IP_HDRINCL`` send
:func:`encode` (the kernel adds the IP header; set ``IP_MULTICAST_TTL``/``IP_TTL`` to 255 and
bind the primary address, or the kernel may pick a VIP as source and break the v3 checksum).
With ``IP_HDRINCL`` (what keepalived does) or ``AF_PACKET``, send :func:`encode_ipv4`.
Receiving: a raw IPv4 socket always delivers the IP header, so feed :func:`decode` (or
:func:`parse_ipv4` then :func:`validate`) the whole datagram.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address

VRRP_PROTOCOL = 112
VRRP_MCAST_GROUP = IPv4Address("224.0.0.18")
VRRP_TTL = 255
ADVERTISEMENT = 1  # the only VRRP packet type
IP_TOS_INTERNETWORK_CONTROL = 0xC0  # keepalived's TOS for adverts

_HEADER = struct.Struct("!BBBBBBH")  # v2 view; v3 reads bytes 4-5 as one 16-bit word
_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
_IPV4_MIN_HEADER_LEN = 20
_VRRP_HEADER_LEN = 8
_AUTH_DATA_LEN = 8
_V3_INTERVAL_MASK = 0x0FFF
V2_MAX_INTERVAL_S = 255
V3_MAX_INTERVAL_CS = 0x0FFF
MAX_ADDRESSES = 255


class AuthType(IntEnum):
    """VRRPv2 Auth Type field (RFC 2338 5.3.6; reserved by RFC 3768 but kept by keepalived)."""

    NONE = 0
    PASS = 1  # simple text password, 8 bytes, zero padded
    AH = 2  # IPsec AH: recognised so it can be refused by name, never encoded


_KNOWN_AUTH = frozenset(int(a) for a in AuthType)


class DropReason(IntEnum):
    """Why a received packet was not accepted as an advert for the configured instance."""

    TOO_SHORT = 1  # fewer bytes than the IP header or the 8-byte VRRP header
    NOT_IPV4 = 2  # IP version is not 4 or the header length field is invalid
    NOT_VRRP = 3  # IP protocol is not 112
    IP_LENGTH = 4  # IP total length exceeds the bytes received (truncated)
    BAD_VERSION = 5  # VRRP version unknown, or not the locally configured one
    BAD_TYPE = 6  # VRRP type is not 1 (advertisement)
    BAD_LENGTH = 7  # Count IP Addrs disagrees with the message length
    BAD_CHECKSUM = 8
    BAD_TTL = 9  # "MUST verify that the IP TTL is 255"
    OTHER_VRID = 10  # a well-formed advert for a VRID this instance does not run
    AUTH_UNSUPPORTED = 11  # Auth Type 2 (AH) or an unknown Auth Type
    AUTH_MISMATCH = 12  # Auth Type or password differs from the configured one
    INTERVAL_MISMATCH = 13  # v2 only: Adver Int differs from the configured one
    ADDRESS_MISMATCH = 14  # addresses differ from the configured VIPs
    NOT_A_PEER = 15  # unicast: source is not one of the configured peers
    IP_CHECKSUM = 16  # IPv4 header checksum (the kernel checks it, AF_PACKET does not)

    @property
    def is_malformed(self) -> bool:
        """True for damaged or foreign packets, as opposed to misconfigured peers.

        The daemon should count three buckets: malformed, ``OTHER_VRID`` (someone else's
        virtual router on the segment, normal), and the rest (a peer whose configuration
        disagrees with ours, which keepalived logs as a configuration problem).
        """
        return self in _MALFORMED


_MALFORMED = frozenset(
    {
        DropReason.TOO_SHORT,
        DropReason.NOT_IPV4,
        DropReason.NOT_VRRP,
        DropReason.IP_LENGTH,
        DropReason.BAD_TYPE,
        DropReason.BAD_LENGTH,
        DropReason.BAD_CHECKSUM,
        DropReason.IP_CHECKSUM,
    }
)


@dataclass(frozen=True)
class Advert:
    """One VRRP advertisement.

    ``interval_cs`` is the advertisement interval in centiseconds for both versions, so the
    state machine needs one unit; on the v2 wire it must be a whole number of seconds.
    ``src``, ``dst`` and ``ttl`` come from the IP header when decoded; they are not part of
    the VRRP message and are ignored by :func:`encode`.
    """

    version: int
    vrid: int
    priority: int
    addresses: tuple[IPv4Address, ...]
    interval_cs: int = 100
    auth_type: int = AuthType.NONE  # an AuthType, or the raw number if unknown
    auth_data: bytes = b""
    src: IPv4Address | None = field(default=None, compare=False)
    dst: IPv4Address | None = field(default=None, compare=False)
    ttl: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Normalised so that parse(encode(a)) == a: a password is kept as its 8 wire
        # bytes, and without authentication the data "is ignored" (RFC 2338 5.3.10).
        if self.auth_type == AuthType.PASS:
            object.__setattr__(self, "auth_data", pad_password(self.auth_data))
        elif self.auth_type == AuthType.NONE:
            object.__setattr__(self, "auth_data", b"")

    @property
    def interval_s(self) -> float:
        return self.interval_cs / 100


@dataclass(frozen=True)
class Expected:
    """What the local instance is configured for; :func:`validate` checks an advert against it.

    ``addresses=None`` skips the address-list check (RFC: "MAY verify"); keepalived does
    check it and drops on any difference, so the daemon should pass the VIPs. ``check_ttl``
    is switched off for unicast peers, as keepalived does; ``peers`` (keepalived's
    ``check_unicast_src``) restricts accepted sources.
    """

    vrid: int
    version: int = 2
    interval_cs: int = 100
    auth_type: AuthType = AuthType.NONE
    auth_pass: bytes = b""
    addresses: tuple[IPv4Address, ...] | None = None
    check_ttl: bool = True
    peers: frozenset[IPv4Address] | None = None


def inet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum of 16-bit words, complemented."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(src: IPv4Address, dst: IPv4Address, length: int) -> bytes:
    return src.packed + dst.packed + struct.pack("!BBH", 0, VRRP_PROTOCOL, length)


def pad_password(password: bytes) -> bytes:
    """keepalived uses only the first eight characters, zero padded."""
    return password[:_AUTH_DATA_LEN].ljust(_AUTH_DATA_LEN, b"\x00")


def encode(
    advert: Advert,
    src: IPv4Address | None = None,
    dst: IPv4Address = VRRP_MCAST_GROUP,
) -> bytes:
    """Build the VRRP message (no IP header), checksum included.

    ``src`` and ``dst`` are needed for v3 only, where they enter the pseudo-header; they
    must be the addresses that will be in the IP header. Raises ``ValueError`` for adverts
    that cannot be put on the wire (bad ranges, AH, a fractional v2 interval).
    """
    _check_encodable(advert)
    count = len(advert.addresses)
    addresses = b"".join(a.packed for a in advert.addresses)
    version_type = (advert.version << 4) | ADVERTISEMENT
    if advert.version == 2:
        auth_data = advert.auth_data if advert.auth_type == AuthType.PASS else bytes(_AUTH_DATA_LEN)
        head = struct.pack(
            "!BBBBBB",
            version_type,
            advert.vrid,
            advert.priority,
            count,
            advert.auth_type,
            advert.interval_cs // 100,
        )
        body = addresses + auth_data
        checksum = inet_checksum(head + b"\x00\x00" + body)
        return head + struct.pack("!H", checksum) + body
    if src is None:
        raise ValueError("VRRPv3 needs the source address for its pseudo-header checksum")
    head = struct.pack(
        "!BBBBH", version_type, advert.vrid, advert.priority, count, advert.interval_cs
    )
    length = _VRRP_HEADER_LEN + len(addresses)
    checksum = inet_checksum(_pseudo_header(src, dst, length) + head + b"\x00\x00" + addresses)
    return head + struct.pack("!H", checksum) + addresses


def _check_encodable(advert: Advert) -> None:
    if advert.version not in (2, 3):
        raise ValueError(f"VRRP version must be 2 or 3, not {advert.version}")
    if not 1 <= advert.vrid <= 255:
        raise ValueError(f"VRID must be 1..255, not {advert.vrid}")
    if not 0 <= advert.priority <= 255:
        raise ValueError(f"priority must be 0..255, not {advert.priority}")
    if len(advert.addresses) > MAX_ADDRESSES:
        raise ValueError(f"at most {MAX_ADDRESSES} addresses fit the count field")
    if advert.version == 2:
        if advert.auth_type == AuthType.AH:
            raise ValueError("IPsec AH authentication is not supported")
        if advert.interval_cs % 100 or not 1 <= advert.interval_cs // 100 <= V2_MAX_INTERVAL_S:
            raise ValueError(
                f"VRRPv2 Adver Int is whole seconds 1..{V2_MAX_INTERVAL_S}, "
                f"not {advert.interval_cs} cs"
            )
    elif not 1 <= advert.interval_cs <= V3_MAX_INTERVAL_CS:
        raise ValueError(f"VRRPv3 Max Adver Int is 1..{V3_MAX_INTERVAL_CS} cs")


def encode_ipv4(
    advert: Advert,
    src: IPv4Address,
    dst: IPv4Address = VRRP_MCAST_GROUP,
    ident: int = 0,
) -> bytes:
    """Build the whole IPv4 datagram: TTL 255, protocol 112, TOS 0xc0, header checksum.

    For ``IP_HDRINCL`` raw sockets and ``AF_PACKET``; ``ident`` is the IP identification
    (keepalived counts it up per advert; with ``IP_HDRINCL`` the kernel fills in 0).
    """
    payload = encode(advert, src, dst)
    header = bytearray(
        _IPV4_HEADER.pack(
            0x45,
            IP_TOS_INTERNETWORK_CONTROL,
            _IPV4_MIN_HEADER_LEN + len(payload),
            ident & 0xFFFF,
            0,
            VRRP_TTL,
            VRRP_PROTOCOL,
            0,
            src.packed,
            dst.packed,
        )
    )
    struct.pack_into("!H", header, 10, inet_checksum(bytes(header)))
    return bytes(header) + payload


def parse_ipv4(packet: bytes) -> Advert | DropReason:
    """Structural checks on a whole IPv4 datagram, independent of local configuration.

    Bytes after the IP total length are ignored (Ethernet padding when read from
    ``AF_PACKET``); fewer bytes than the total length is a truncated packet.
    """
    data = bytes(packet)
    if len(data) < _IPV4_MIN_HEADER_LEN:
        return DropReason.TOO_SHORT
    ver_ihl, _tos, total_len, _id, _frag, ttl, proto, _csum, src, dst = _IPV4_HEADER.unpack_from(
        data
    )
    header_len = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or header_len < _IPV4_MIN_HEADER_LEN:
        return DropReason.NOT_IPV4
    if proto != VRRP_PROTOCOL:
        return DropReason.NOT_VRRP
    if total_len < header_len:
        return DropReason.NOT_IPV4
    if total_len > len(data):
        return DropReason.IP_LENGTH
    if inet_checksum(data[:header_len]) != 0:
        return DropReason.IP_CHECKSUM
    return parse_vrrp(data[header_len:total_len], IPv4Address(src), IPv4Address(dst), ttl)


def parse_vrrp(
    payload: bytes, src: IPv4Address, dst: IPv4Address, ttl: int | None = None
) -> Advert | DropReason:
    """Structural checks on a VRRP message whose IP header fields are known.

    RFC 3768/5798 7.1: "MUST verify that the received packet contains the complete VRRP
    packet" and "MUST verify the VRRP checksum". keepalived also insists that the length
    is exactly what Count IP Addrs implies, so trailing bytes are ``BAD_LENGTH``.
    """
    data = bytes(payload)
    if len(data) < _VRRP_HEADER_LEN:
        return DropReason.TOO_SHORT
    version_type, vrid, priority, count, byte4, byte5, _csum = _HEADER.unpack_from(data)
    version = version_type >> 4
    if version not in (2, 3):
        return DropReason.BAD_VERSION
    if version_type & 0x0F != ADVERTISEMENT:
        return DropReason.BAD_TYPE
    trailer = _AUTH_DATA_LEN if version == 2 else 0
    if len(data) != _VRRP_HEADER_LEN + 4 * count + trailer:
        return DropReason.BAD_LENGTH
    summed = data if version == 2 else _pseudo_header(src, dst, len(data)) + data
    if inet_checksum(summed) != 0:
        return DropReason.BAD_CHECKSUM
    end = _VRRP_HEADER_LEN + 4 * count
    addresses = tuple(IPv4Address(data[i : i + 4]) for i in range(_VRRP_HEADER_LEN, end, 4))
    if version == 2:
        return Advert(
            version=2,
            vrid=vrid,
            priority=priority,
            addresses=addresses,
            interval_cs=byte5 * 100,
            auth_type=AuthType(byte4) if byte4 in _KNOWN_AUTH else byte4,
            auth_data=data[end:],
            src=src,
            dst=dst,
            ttl=ttl,
        )
    return Advert(
        version=3,
        vrid=vrid,
        priority=priority,
        addresses=addresses,
        interval_cs=((byte4 << 8) | byte5) & _V3_INTERVAL_MASK,
        src=src,
        dst=dst,
        ttl=ttl,
    )


def validate(parsed: Advert | DropReason, expected: Expected) -> Advert | DropReason:
    """Checks that depend on the local instance's configuration (RFC 3768/5798 7.1).

    Order: TTL, version, VRID, then authentication, interval, addresses and source. The
    VRID comes before the authentication and interval checks (keepalived does them the
    other way round) so that another router's advert on a shared segment is always
    ``OTHER_VRID`` and never mistaken for a misconfigured peer of ours.

    Interval (v2): RFC 3768 "MUST verify that the Adver Interval in the packet is the same
    as the locally configured for this virtual router ... the receiver MUST discard the
    packet". keepalived 2.2.7 does discard it (``VRRP_PACKET_DROP``, logging "advertisement
    interval mismatch"), so we drop it too. VRRPv3 has no such check: backups adopt the
    master's interval instead.
    """
    if isinstance(parsed, DropReason):
        return parsed
    advert = parsed
    if expected.check_ttl and advert.ttl is not None and advert.ttl != VRRP_TTL:
        return DropReason.BAD_TTL
    if advert.version != expected.version:
        return DropReason.BAD_VERSION
    if advert.vrid != expected.vrid:
        return DropReason.OTHER_VRID
    if advert.version == 2:
        if advert.auth_type not in (AuthType.NONE, AuthType.PASS):
            return DropReason.AUTH_UNSUPPORTED
        if advert.auth_type != expected.auth_type:
            return DropReason.AUTH_MISMATCH
        if advert.auth_type == AuthType.PASS and advert.auth_data != pad_password(
            expected.auth_pass
        ):
            return DropReason.AUTH_MISMATCH
        if advert.interval_cs != expected.interval_cs:
            return DropReason.INTERVAL_MISMATCH
    if expected.addresses is not None and sorted(advert.addresses) != sorted(expected.addresses):
        return DropReason.ADDRESS_MISMATCH
    if expected.peers is not None and advert.src not in expected.peers:
        return DropReason.NOT_A_PEER
    return advert


def decode(packet: bytes, expected: Expected) -> Advert | DropReason:
    """:func:`parse_ipv4` then :func:`validate`: one received datagram, one verdict.

    A daemon running several VRIDs on one socket should instead call :func:`parse_ipv4`,
    pick the instance by ``advert.vrid`` (none: count it as ``OTHER_VRID``) and
    :func:`validate` against that instance's :class:`Expected`.
    """
    return validate(parse_ipv4(packet), expected)
