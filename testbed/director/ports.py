"""Packet I/O for the director: one AF_PACKET socket per NIC, in two modes.

- ``frame`` mode: one ``recvmsg`` per frame and one ``send`` per frame. Every frame costs its
  own system calls, like a NIC that interrupts for every frame.
- ``ring`` mode: PACKET_MMAP rings (TPACKET_V2). Received frames are read straight from a
  ring shared with the kernel and forwarded ones written into a transmit ring that one
  ``send`` flushes, so a batch of frames costs one wake-up and one system call. Its batch
  size and wait time are the interrupt-coalescing knob (the e100's "CPU Cycle Saver").

Both ignore the frames they send themselves (PACKET_IGNORE_OUTGOING), take only IPv4 and ARP
(a BPF filter, so other traffic never reaches Python), report frames whose checksum the
kernel left for offload (TP_STATUS_CSUMNOTREADY), and put a VLAN tag the kernel moved out of
the frame back in, so the forwarder sees the frame as it was on the wire.

Ports hand each frame to ``handler(frame, port, csum_partial, now)`` as a writable buffer that
is only valid during the call.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import socket
import struct

SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_VERSION = 10
PACKET_RX_RING = 5
PACKET_TX_RING = 13
PACKET_IGNORE_OUTGOING = 23
PACKET_STATISTICS = 6
TPACKET_V2 = 1
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_SEND_REQUEST = 1
TP_STATUS_AVAILABLE = 0
TP_STATUS_CSUMNOTREADY = 1 << 3
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6

TPACKET2_HDR = struct.Struct("IIIHHIIHH4x")  # status len snaplen mac net sec nsec tci tpid
TPACKET_ALIGNMENT = 16
TX_DATA_OFFSET = (TPACKET2_HDR.size + TPACKET_ALIGNMENT - 1) & ~(TPACKET_ALIGNMENT - 1)
AUXDATA = struct.Struct("IIIHHHH")  # status len snaplen mac net vlan_tci vlan_tpid
U32 = struct.Struct("I")
RX_META = struct.Struct("4xIIH")  # len snaplen mac, after the status word

FRAME_SLOT_BYTES = 2048  # one slot holds a 1518-byte frame and the ring header
MAX_FRAME_BYTES = FRAME_SLOT_BYTES - 64


class PortError(OSError):
    """A port could not be opened; the message names the interface and the fix."""


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


# Frames for another host's MAC (flooded by a switch that has not learnt it yet, or after a
# link change) are not ours: a NIC would not even have received them. Then only IPv4, ARP
# and VLAN-tagged frames reach Python.
#   ldb pkttype; jeq PACKET_OTHERHOST -> drop; ldh [12]; jeq IPv4|ARP|802.1Q|802.1ad -> accept
_SKF_AD_PKTTYPE = 0xFFFFF000 + 4
_PACKET_OTHERHOST = 3
_BPF_IPV4_ARP = [
    (0x30, 0, 0, _SKF_AD_PKTTYPE),
    (0x15, 5, 0, _PACKET_OTHERHOST),
    (0x28, 0, 0, 12),
    (0x15, 4, 0, 0x0800),
    (0x15, 3, 0, 0x0806),
    (0x15, 2, 0, 0x8100),
    (0x15, 1, 0, 0x88A8),
    (0x06, 0, 0, 0),
    (0x06, 0, 0, 0x40000),
]


def _attach_filter(sock: socket.socket) -> None:
    prog = (_SockFilter * len(_BPF_IPV4_ARP))(*[_SockFilter(*ins) for ins in _BPF_IPV4_ARP])
    fprog = _SockFprog(len(_BPF_IPV4_ARP), ctypes.cast(prog, ctypes.POINTER(_SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))


def _with_vlan(frame, tci: int, tpid: int) -> bytearray:
    out = bytearray(len(frame) + 4)
    out[0:12] = frame[0:12]
    struct.pack_into("!HH", out, 12, tpid or 0x8100, tci)
    out[16:] = frame[12:]
    return out


def interface_mac(name: str) -> bytes:
    with open(f"/sys/class/net/{name}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def _open(name: str) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except PermissionError as exc:
        raise PortError(
            exc.errno, "AF_PACKET sockets need root (CAP_NET_RAW): run with sudo"
        ) from exc
    try:
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        _attach_filter(sock)
        sock.bind((name, ETH_P_ALL))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            raise PortError(exc.errno, f"no interface {name!r} in this network namespace") from exc
        raise
    return sock


class Port:
    """What the forwarder needs of a NIC: name, MAC, an IPv4 address (for ARP and tunnels)."""

    def __init__(self, name: str, ip: int, mac: bytes | None = None) -> None:
        self.name = name
        self.ip = ip
        self.mac = mac if mac is not None else interface_mac(name)
        self.tx_frames = 0
        self.tx_dropped = 0
        self._kernel_drops = 0

    def fileno(self) -> int:
        raise NotImplementedError

    def clear_error(self) -> int:
        """Read and clear a pending socket error (e.g. ENETDOWN while the link is down), which
        would otherwise make every poll return at once; returns the errno (0 if none)."""
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def kernel_drops(self) -> int:
        """Frames the kernel dropped because this socket's buffer or ring was full, since
        the port opened: the analogue of a NIC's receive overruns. (The kernel's counter
        resets when read, so it is accumulated here.)"""
        _packets, drops = struct.unpack(
            "II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        )
        self._kernel_drops += drops
        return self._kernel_drops

    def drain(self, handler, max_frames: int, now: float) -> int:
        raise NotImplementedError

    def send(self, frame) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Hand queued transmissions to the kernel (ring mode); a no-op per frame."""

    def close(self) -> None:
        raise NotImplementedError


class FramePort(Port):
    """One system call per frame received and per frame sent."""

    def __init__(self, name: str, ip: int, rcvbuf_bytes: int = 8 << 20) -> None:
        super().__init__(name, ip)
        self.sock = _open(name)
        self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
        self.sock.setblocking(False)
        self._buf = bytearray(65536)
        self._view = memoryview(self._buf)
        self._anc_size = socket.CMSG_SPACE(AUXDATA.size)

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self, handler, max_frames: int, now: float) -> int:
        recv = self.sock.recvmsg_into
        view, anc_size = self._view, self._anc_size
        n = 0
        while n < max_frames:
            try:
                size, ancdata, _flags, _addr = recv([view], anc_size)
            except (BlockingIOError, InterruptedError):
                break
            n += 1
            partial = False
            frame = view[:size]
            for level, kind, data in ancdata:
                if level == SOL_PACKET and kind == PACKET_AUXDATA:
                    status, _len, _snap, _mac, _net, tci, tpid = AUXDATA.unpack_from(data)
                    partial = bool(status & TP_STATUS_CSUMNOTREADY)
                    if status & TP_STATUS_VLAN_VALID:
                        frame = _with_vlan(
                            frame, tci, tpid if status & TP_STATUS_VLAN_TPID_VALID else 0
                        )
            handler(frame, self, partial, now)
        return n

    def send(self, frame) -> None:
        try:
            self.sock.send(frame)
            self.tx_frames += 1
        except (BlockingIOError, OSError):
            self.tx_dropped += 1  # a full queue drops, as a NIC's would

    def close(self) -> None:
        self.sock.close()


class RingPort(Port):
    """PACKET_MMAP receive and transmit rings: a batch per wake-up, one send per batch."""

    def __init__(self, name: str, ip: int, rx_frames: int = 4096, tx_frames: int = 1024) -> None:
        super().__init__(name, ip)
        for count in (rx_frames, tx_frames):
            if count & (count - 1) or count < 8:
                raise ValueError("ring sizes must be powers of two, at least 8")
        self.sock = _open(name)
        self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        block = FRAME_SLOT_BYTES * 32  # 64 KiB blocks, a multiple of the page size
        for opt, count in ((PACKET_RX_RING, rx_frames), (PACKET_TX_RING, tx_frames)):
            req = struct.pack(
                "IIII", block, count * FRAME_SLOT_BYTES // block, FRAME_SLOT_BYTES, count
            )
            self.sock.setsockopt(SOL_PACKET, opt, req)
        self.rx_count, self.tx_count = rx_frames, tx_frames
        total = (rx_frames + tx_frames) * FRAME_SLOT_BYTES
        self.mm = mmap.mmap(
            self.sock.fileno(), total, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        )
        self.view = memoryview(self.mm)
        self.tx_base = rx_frames * FRAME_SLOT_BYTES
        self.rx_i = 0
        self.tx_i = 0
        self.pending = 0
        self.resyncs = 0
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def ready_frames(self, at_least: int) -> bool:
        """Whether ``at_least`` frames are waiting (one status word read)."""
        off = ((self.rx_i + at_least - 1) & (self.rx_count - 1)) * FRAME_SLOT_BYTES
        return bool(U32.unpack_from(self.mm, off)[0] & TP_STATUS_USER)

    def resync(self) -> bool:
        """Skip a hole in the ring. Several CPUs fill slots concurrently, and now and then a
        slot is left to the kernel while later ones hold frames (seen here under overload);
        reading strictly in order would then wait forever. Called when poll reports frames
        that `drain` cannot find; moves to the next ready slot. Returns True if it moved."""
        mm, count = self.mm, self.rx_count
        for step in range(1, count):
            i = (self.rx_i + step) & (count - 1)
            if U32.unpack_from(mm, i * FRAME_SLOT_BYTES)[0] & TP_STATUS_USER:
                self.rx_i = i
                self.resyncs += 1
                return True
        return False

    def drain(self, handler, max_frames: int, now: float) -> int:
        mm, view = self.mm, self.view
        mask = self.rx_count - 1
        i = self.rx_i
        n = 0
        u32_unpack, u32_pack, meta = U32.unpack_from, U32.pack_into, RX_META.unpack_from
        while n < max_frames:
            off = i * FRAME_SLOT_BYTES
            status = u32_unpack(mm, off)[0]
            if not status & TP_STATUS_USER:
                break
            _len, snaplen, mac = meta(mm, off)
            frame = view[off + mac : off + mac + snaplen]
            if status & TP_STATUS_VLAN_VALID:
                tci, tpid = struct.unpack_from("HH", mm, off + 24)
                frame = _with_vlan(frame, tci, tpid if status & TP_STATUS_VLAN_TPID_VALID else 0)
            handler(frame, self, bool(status & TP_STATUS_CSUMNOTREADY), now)
            frame = None
            u32_pack(mm, off, TP_STATUS_KERNEL)  # give the slot back
            i = (i + 1) & mask
            n += 1
        self.rx_i = i
        return n

    def send(self, frame) -> None:
        size = len(frame)
        off = self.tx_base + self.tx_i * FRAME_SLOT_BYTES
        mm = self.mm
        if U32.unpack_from(mm, off)[0] != TP_STATUS_AVAILABLE:
            self.flush()  # the ring is full of unsent frames: push them, then drop this one
            self.tx_dropped += 1
            return
        if size > MAX_FRAME_BYTES:
            self.tx_dropped += 1
            return
        data = off + TX_DATA_OFFSET
        mm[data : data + size] = frame
        U32.pack_into(mm, off + 4, size)  # tp_len before the status the kernel polls
        U32.pack_into(mm, off, TP_STATUS_SEND_REQUEST)
        self.tx_i = (self.tx_i + 1) & (self.tx_count - 1)
        self.pending += 1

    def flush(self) -> None:
        if not self.pending:
            return
        try:
            self.sock.send(b"", socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            pass  # the kernel is still sending; the next flush picks them up
        except OSError:
            pass
        self.tx_frames += self.pending
        self.pending = 0

    def close(self) -> None:
        self.view.release()
        self.mm.close()
        self.sock.close()


def open_port(name: str, ip: int, mode: str) -> Port:
    if mode == "frame":
        return FramePort(name, ip)
    if mode == "ring":
        return RingPort(name, ip)
    raise ValueError(f"unknown I/O mode {mode!r}: frame or ring")
