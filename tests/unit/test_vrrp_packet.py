"""VRRP codec: bytes built by hand with struct.pack, os-ken as a second oracle, and fuzzing."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.lib.packet import ipv4 as osk_ipv4
from os_ken.lib.packet import vrrp as osk

from testbed.vrrp.packet import (
    VRRP_MCAST_GROUP,
    Advert,
    AuthType,
    DropReason,
    Expected,
    decode,
    encode,
    encode_ipv4,
    parse_ipv4,
    validate,
)

SRC = IPv4Address("10.0.1.2")
PEER = IPv4Address("10.0.1.3")
VIP = IPv4Address("10.0.1.100")
VIP2 = IPv4Address("10.0.1.101")


def ones_complement(data: bytes) -> int:
    """Written out independently of the module under test."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def with_checksum(message: bytes, prefix: bytes = b"") -> bytes:
    """Sets bytes 6-7 of a VRRP message to its (v2) checksum."""
    message = message[:6] + b"\x00\x00" + message[8:]
    csum = ones_complement(prefix + message)
    return message[:6] + struct.pack("!H", csum) + message[8:]


def pseudo(src: IPv4Address, dst: IPv4Address, length: int) -> bytes:
    return (
        socket.inet_aton(str(src))
        + socket.inet_aton(str(dst))
        + struct.pack("!BBH", 0, 112, length)
    )


def ip_header(
    payload_len: int,
    src: IPv4Address,
    dst: IPv4Address,
    ttl: int = 255,
    proto: int = 112,
    ident: int = 0,
) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0xC0,
        20 + payload_len,
        ident,
        0,
        ttl,
        proto,
        0,
        socket.inet_aton(str(src)),
        socket.inet_aton(str(dst)),
    )
    return header[:10] + struct.pack("!H", ones_complement(header)) + header[12:]


def v2_bytes(vrid=51, prio=100, addrs=(VIP,), auth=0, adv_s=1, auth_data=bytes(8)) -> bytes:
    body = struct.pack("!BBBBBBH", 0x21, vrid, prio, len(addrs), auth, adv_s, 0)
    body += b"".join(socket.inet_aton(str(a)) for a in addrs) + auth_data
    return with_checksum(body)


def v3_bytes(
    vrid=51, prio=100, addrs=(VIP,), adv_cs=100, src=SRC, dst=VRRP_MCAST_GROUP, rsvd=0
) -> bytes:
    body = struct.pack("!BBBBHH", 0x31, vrid, prio, len(addrs), (rsvd << 12) | adv_cs, 0)
    body += b"".join(socket.inet_aton(str(a)) for a in addrs)
    return with_checksum(body, pseudo(src, dst, len(body)))


# ----------------------------------------------------------------- encoding


def test_v2_known_vector():
    # 0x2133 + 0x6401 + 0x0001 + 0x0a00 + 0x0164 = 0x9099, complemented: 0x6f66
    expected = bytes.fromhex("2133640100016f660a0001640000000000000000")
    assert encode(Advert(2, 51, 100, (VIP,))) == expected
    assert v2_bytes() == expected


def test_v2_matches_hand_built_bytes():
    advert = Advert(2, 7, 254, (VIP, VIP2), interval_cs=300)
    assert encode(advert) == v2_bytes(vrid=7, prio=254, addrs=(VIP, VIP2), adv_s=3)


def test_v2_simple_password_is_8_zero_padded_bytes():
    advert = Advert(2, 51, 100, (VIP,), auth_type=AuthType.PASS, auth_data=b"secret")
    assert encode(advert) == v2_bytes(auth=1, auth_data=b"secret\x00\x00")
    # keepalived uses only the first eight characters
    long = Advert(2, 51, 100, (VIP,), auth_type=AuthType.PASS, auth_data=b"0123456789")
    assert encode(long).endswith(b"01234567")


def test_v3_checksum_covers_the_ipv4_pseudo_header():
    advert = Advert(3, 51, 100, (VIP,), interval_cs=10)
    assert encode(advert, SRC) == v3_bytes(adv_cs=10)
    # unicast: the pseudo-header carries the peer, so the checksum changes with it
    unicast = encode(advert, SRC, PEER)
    assert unicast == v3_bytes(adv_cs=10, dst=PEER)
    assert unicast != encode(advert, SRC)


def test_v3_needs_the_source_address():
    with pytest.raises(ValueError, match="source"):
        encode(Advert(3, 51, 100, (VIP,)))


def test_full_ipv4_packet_fields():
    advert = Advert(2, 51, 100, (VIP,))
    packet = encode_ipv4(advert, SRC, ident=7)
    payload = encode(advert)
    assert packet == ip_header(len(payload), SRC, VRRP_MCAST_GROUP, ident=7) + payload
    ver_ihl, tos, total, ident, frag, ttl, proto, _, src, dst = struct.unpack(
        "!BBHHHBBH4s4s", packet[:20]
    )
    assert (ver_ihl, tos, total, ident, frag, ttl, proto) == (0x45, 0xC0, 40, 7, 0, 255, 112)
    assert (IPv4Address(src), IPv4Address(dst)) == (SRC, VRRP_MCAST_GROUP)
    assert ones_complement(packet[:20]) == 0
    assert packet[20:] == payload


def test_full_ipv4_packet_to_a_unicast_peer():
    advert = Advert(3, 51, 100, (VIP,))
    packet = encode_ipv4(advert, SRC, PEER)
    assert packet[16:20] == PEER.packed
    assert packet[20:] == v3_bytes(dst=PEER)


@pytest.mark.parametrize(
    "advert",
    [
        Advert(2, 51, 100, (VIP,), interval_cs=150),  # v2 is whole seconds
        Advert(2, 51, 100, (VIP,), auth_type=AuthType.AH),
        Advert(3, 51, 100, (VIP,), interval_cs=4096),  # 12 bits
        Advert(2, 0, 100, (VIP,)),
        Advert(2, 51, 256, (VIP,)),
        Advert(4, 51, 100, (VIP,)),
    ],
)
def test_encode_refuses_what_cannot_go_on_the_wire(advert):
    with pytest.raises(ValueError):
        encode(advert, SRC)


# ------------------------------------------------------------- os-ken oracle


def test_v2_agrees_with_os_ken():
    theirs = osk.vrrpv2.create(osk.VRRP_TYPE_ADVERTISEMENT, 51, 100, 1, [str(VIP), str(VIP2)])
    assert encode(Advert(2, 51, 100, (VIP, VIP2))) == bytes(theirs.serialize(bytearray(), None))


def test_v3_agrees_with_os_ken():
    theirs = osk.vrrpv3.create(osk.VRRP_TYPE_ADVERTISEMENT, 51, 200, 10, [str(VIP)])
    ip = osk_ipv4.ipv4(src=str(SRC), dst=str(VRRP_MCAST_GROUP), proto=112, ttl=255)
    ours = encode(Advert(3, 51, 200, (VIP,), interval_cs=10), SRC)
    assert ours == bytes(theirs.serialize(bytearray(), ip))


def test_decodes_a_frame_built_by_os_ken():
    theirs = osk.vrrpv3.create(osk.VRRP_TYPE_ADVERTISEMENT, 51, 200, 10, [str(VIP)])
    frame = theirs.create_packet(str(SRC))
    frame.serialize()
    advert = decode(bytes(frame.data)[14:], Expected(51, version=3))  # strip Ethernet
    assert advert == Advert(3, 51, 200, (VIP,), interval_cs=10)
    assert (advert.src, advert.dst, advert.ttl) == (SRC, VRRP_MCAST_GROUP, 255)


def test_os_ken_reads_what_we_write():
    parsed, _, _ = osk.vrrp.parser(encode(Advert(2, 9, 150, (VIP,), interval_cs=200)))
    assert (parsed.version, parsed.vrid, parsed.priority, parsed.max_adver_int) == (2, 9, 150, 2)
    assert parsed.ip_addresses == [str(VIP)] and parsed.is_valid()


# ----------------------------------------------------------------- decoding


def ip_packet(
    payload: bytes, ttl: int = 255, src: IPv4Address = SRC, dst=VRRP_MCAST_GROUP
) -> bytes:
    return ip_header(len(payload), src, dst, ttl) + payload


@pytest.mark.parametrize(
    "advert",
    [
        Advert(2, 51, 100, (VIP, VIP2)),
        Advert(2, 1, 0, (), interval_cs=25500),
        Advert(2, 51, 100, (VIP,), auth_type=AuthType.PASS, auth_data=b"pw"),
        Advert(3, 255, 255, (VIP,), interval_cs=4095),
    ],
)
def test_round_trip(advert):
    decoded = parse_ipv4(encode_ipv4(advert, SRC))
    assert decoded == advert
    assert (decoded.src, decoded.dst, decoded.ttl) == (SRC, VRRP_MCAST_GROUP, 255)


def test_decode_hand_built_v2():
    advert = decode(ip_packet(v2_bytes(prio=77, adv_s=2)), Expected(51, interval_cs=200))
    assert advert == Advert(2, 51, 77, (VIP,), interval_cs=200)


def test_v3_reserved_bits_are_ignored():
    advert = decode(ip_packet(v3_bytes(adv_cs=10, rsvd=0xF)), Expected(51, version=3))
    assert advert.interval_cs == 10


def test_ethernet_padding_after_the_ip_datagram_is_ignored():
    packet = ip_packet(v2_bytes()) + bytes(6)
    assert isinstance(decode(packet, Expected(51)), Advert)


def corrupt(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes([value]) + data[offset + 1 :]


GOOD = ip_packet(v2_bytes())


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"", DropReason.TOO_SHORT),
        (GOOD[:19], DropReason.TOO_SHORT),
        (ip_packet(b"\x21\x33\x64"), DropReason.TOO_SHORT),
        (corrupt(GOOD, 0, 0x65), DropReason.NOT_IPV4),  # version 6
        (corrupt(GOOD, 0, 0x44), DropReason.NOT_IPV4),  # IHL 4 words
        (ip_header(24, SRC, VRRP_MCAST_GROUP, proto=51) + v2_bytes(), DropReason.NOT_VRRP),  # AH
        (GOOD[:-1], DropReason.IP_LENGTH),
        (corrupt(GOOD, 8, 254), DropReason.IP_CHECKSUM),  # TTL changed, checksum not
        (ip_packet(with_checksum(corrupt(v2_bytes(), 0, 0x11))), DropReason.BAD_VERSION),
        (ip_packet(with_checksum(corrupt(v2_bytes(), 0, 0x22))), DropReason.BAD_TYPE),
        (ip_packet(with_checksum(corrupt(v2_bytes(), 3, 2))), DropReason.BAD_LENGTH),
        (ip_packet(v2_bytes() + b"\x00\x00\x00\x00"), DropReason.BAD_LENGTH),
        (ip_packet(corrupt(v2_bytes(), 8, 11)), DropReason.BAD_CHECKSUM),
        (ip_packet(v3_bytes(dst=PEER)), DropReason.BAD_CHECKSUM),  # pseudo-header dst differs
        (ip_packet(v2_bytes(), ttl=254), DropReason.BAD_TTL),
        (ip_packet(v2_bytes(vrid=52)), DropReason.OTHER_VRID),
        (ip_packet(v3_bytes()), DropReason.BAD_VERSION),  # we run v2
        (ip_packet(v2_bytes(auth=2)), DropReason.AUTH_UNSUPPORTED),
        (ip_packet(v2_bytes(auth=9)), DropReason.AUTH_UNSUPPORTED),
        (ip_packet(v2_bytes(auth=1, auth_data=b"secret\x00\x00")), DropReason.AUTH_MISMATCH),
        (ip_packet(v2_bytes(adv_s=2)), DropReason.INTERVAL_MISMATCH),
        (ip_packet(v2_bytes(addrs=(VIP2,))), DropReason.ADDRESS_MISMATCH),
        (ip_packet(v2_bytes(addrs=(VIP, VIP2))), DropReason.ADDRESS_MISMATCH),
    ],
)
def test_drop_reasons(packet, reason):
    assert decode(packet, Expected(51, addresses=(VIP,))) is reason


def test_other_vrid_wins_over_configuration_mismatches():
    # another router's VRID with another interval and password is not "our peer misconfigured"
    foreign = ip_packet(v2_bytes(vrid=99, adv_s=5, auth=1, auth_data=b"x".ljust(8, b"\0")))
    assert decode(foreign, Expected(51)) is DropReason.OTHER_VRID
    assert not DropReason.OTHER_VRID.is_malformed


def test_password_checks():
    expected = Expected(51, auth_type=AuthType.PASS, auth_pass=b"secret")
    good = ip_packet(v2_bytes(auth=1, auth_data=b"secret\x00\x00"))
    assert isinstance(decode(good, expected), Advert)
    wrong = ip_packet(v2_bytes(auth=1, auth_data=b"secreT\x00\x00"))
    assert decode(wrong, expected) is DropReason.AUTH_MISMATCH
    assert decode(ip_packet(v2_bytes()), expected) is DropReason.AUTH_MISMATCH


def test_v3_adverts_with_another_interval_are_accepted():
    """RFC 5798 drops the v2 interval check: backups adopt the master's interval."""
    packet = ip_packet(v3_bytes(adv_cs=37))
    assert decode(packet, Expected(51, version=3, interval_cs=100)).interval_cs == 37


def test_unicast_skips_ttl_and_can_check_the_source():
    routed = ip_packet(v2_bytes(), ttl=63)
    assert isinstance(decode(routed, Expected(51, check_ttl=False)), Advert)
    assert (
        decode(routed, Expected(51, check_ttl=False, peers=frozenset({PEER})))
        is DropReason.NOT_A_PEER
    )
    from_peer = ip_packet(v2_bytes(), src=PEER)
    assert isinstance(decode(from_peer, Expected(51, peers=frozenset({PEER}))), Advert)


def test_two_stage_decoding_for_several_vrids_on_one_socket():
    parsed = parse_ipv4(ip_packet(v2_bytes(vrid=52)))
    assert parsed.vrid == 52
    assert isinstance(validate(parsed, Expected(52)), Advert)
    assert validate(DropReason.BAD_CHECKSUM, Expected(52)) is DropReason.BAD_CHECKSUM


def test_malformed_versus_policy_drops():
    assert DropReason.BAD_CHECKSUM.is_malformed and DropReason.TOO_SHORT.is_malformed
    assert not DropReason.INTERVAL_MISMATCH.is_malformed
    assert not DropReason.AUTH_MISMATCH.is_malformed


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_decode_never_raises_on_random_bytes(data):
    result = decode(data, Expected(51))
    assert isinstance(result, Advert | DropReason)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([GOOD, ip_packet(v3_bytes(addrs=(VIP, VIP2)))]),
    st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), max_size=4),
    st.integers(0, 70),
)
def test_decode_never_raises_on_damaged_adverts(packet, edits, cut):
    for offset, value in edits:
        if offset < len(packet):
            packet = corrupt(packet, offset, value)
    for expected in (Expected(51), Expected(51, version=3, addresses=(VIP,))):
        result = decode(packet[: len(packet) - cut] if cut else packet, expected)
        assert isinstance(result, Advert | DropReason)
