"""The Internet checksum and its RFC 1624 update, against a word-by-word RFC 1071 reference."""

import struct

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from testbed.director.checksum import (
    adjust,
    adjust_udp,
    checksum,
    delta16,
    delta32,
    fold,
    ones_sum,
    pseudo_header_sum,
    update16,
    update32,
)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def ref_sum(data: bytes) -> int:
    """RFC 1071's loop: add 16-bit words with end-around carry."""
    data = bytes(data) + b"\0" * (len(data) & 1)
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
    return total


def ref_eqn3(csum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3 spelled out with 16-bit one's-complement additions."""
    total = 0
    for word in (~csum & 0xFFFF, ~old & 0xFFFF, new):
        total += word
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_rfc1071_example():
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert checksum(data) == 0x220D


def test_odd_length_pads_with_a_zero_byte():
    assert ones_sum(b"\x12\x34\x56") == 0x1234 + 0x5600
    assert checksum(b"\xab") == ~0xAB00 & 0xFFFF


def test_the_two_zeros():
    assert ones_sum(b"") == 0 and checksum(b"") == 0xFFFF
    assert ones_sum(bytes(8)) == 0 and checksum(bytes(8)) == 0xFFFF
    # Non-zero data never sums to +0: it is -0, so its checksum is 0.
    assert ones_sum(b"\xff\xff") == 0xFFFF and checksum(b"\xff\xff") == 0
    assert ones_sum(b"\x80\x00\x7f\xff") == 0xFFFF
    assert fold(0) == 0 and fold(0xFFFF) == 0xFFFF and fold(0x1FFFE) == 0xFFFF
    assert fold(0x10000) == 1


@given(st.binary(max_size=300))
def test_full_checksum_matches_reference(data):
    assert ones_sum(data) == ref_sum(data)
    assert checksum(data) == ~ref_sum(data) & 0xFFFF
    assert checksum(memoryview(data)) == checksum(bytearray(data)) == checksum(data)


@given(st.binary(max_size=200), st.integers(0, 0x3FFFF))
def test_initial_sum_is_added(data, initial):
    padded = data + b"\0" * (len(data) & 1)
    assert checksum(data, initial) == ~ref_sum(padded + initial.to_bytes(4, "big")) & 0xFFFF


@given(st.binary(max_size=100))
def test_stored_checksum_verifies(data):
    data = bytes(data) + b"\0" * (len(data) & 1)
    with_csum = data + checksum(data).to_bytes(2, "big")
    assert checksum(with_csum) == 0


@given(u16, u16, u16)
def test_adjust_is_rfc1624_eqn3_for_every_input(csum, old, new):
    assert update16(csum, old, new) == ref_eqn3(csum, old, new)
    assert adjust(csum, delta16(old, new)) == ref_eqn3(csum, old, new)


@given(u16, u32, u32)
def test_32_bit_update_is_two_16_bit_updates(csum, old, new):
    assert update32(csum, old, new) == ref_eqn3(
        ref_eqn3(csum, old >> 16, new >> 16), old & 0xFFFF, new & 0xFFFF
    )


@given(st.data())
def test_incremental_equals_full_recompute(data):
    words = data.draw(st.integers(2, 40))
    buf = bytearray(data.draw(st.binary(min_size=2 * words, max_size=2 * words)))
    csum = checksum(buf)
    at = 2 * data.draw(st.integers(0, words - 1))
    old = buf[at] << 8 | buf[at + 1]
    new = data.draw(u16)
    buf[at : at + 2] = new.to_bytes(2, "big")
    # All-zero data has two right answers (0 and 0xFFFF); RFC 1624 discusses it.
    assume(any(buf))
    assert update16(csum, old, new) == checksum(buf)


@given(st.data())
def test_several_changes_at_once_equal_full_recompute(data):
    buf = bytearray(data.draw(st.binary(min_size=40, max_size=40)))
    csum = checksum(buf)
    at32 = 2 * data.draw(st.integers(0, 8))  # an address in the first 20 bytes
    at16 = 20 + 2 * data.draw(st.integers(0, 9))  # a port after it
    old32 = int.from_bytes(buf[at32 : at32 + 4], "big")
    old16 = int.from_bytes(buf[at16 : at16 + 2], "big")
    new32, new16 = data.draw(u32), data.draw(u16)
    buf[at32 : at32 + 4] = new32.to_bytes(4, "big")
    buf[at16 : at16 + 2] = new16.to_bytes(2, "big")
    assume(any(buf))
    assert adjust(csum, delta32(old32, new32) + delta16(old16, new16)) == checksum(buf)


@given(u16, st.integers(0, 4 * 0xFFFF))
def test_udp_rule(csum, delta):
    result = adjust_udp(csum, delta)
    if csum == 0:
        assert result == 0
    else:
        assert result != 0
        assert result == (adjust(csum, delta) or 0xFFFF)


def test_udp_computed_zero_is_sent_as_ffff():
    # Data whose new sum is 0xFFFF (-0) gives checksum 0, which UDP must send as 0xFFFF.
    csum = checksum(b"\x00\x01\xff\xfd")  # sum 0xFFFE
    assert adjust(csum, delta16(0x0001, 0x0002)) == 0
    assert adjust_udp(csum, delta16(0x0001, 0x0002)) == 0xFFFF


@pytest.mark.parametrize("proto", [6, 17])
@given(src=u32, dst=u32, length=u16)
def test_pseudo_header_sum(proto, src, dst, length):
    packed = struct.pack("!IIBBH", src, dst, 0, proto, length)
    assert pseudo_header_sum(src, dst, proto, length) == ref_sum(packed)
