"""keepalived's health checks, one function each: one attempt against one real server.

Each takes a `Target` (where to connect and from where: keepalived's ``connect_ip``,
``connect_port``, ``bindto``, ``bind_port``, ``bind_if`` and ``fwmark``) and a timeout, and
returns a `CheckResult`; none raises for what the network does. What passes:

* TCP_CHECK: the connection is established (check_tcp.c).
* HTTP_GET / SSL_GET: each ``url`` answers ``GET path`` with a status in ``status_code``
  (default 200-299), and, when given, a body whose MD5 is ``digest`` and that (does not,
  with ``regex_no_match``) match ``regex``. The request is keepalived's: ``HTTP/1.0`` (or
  ``1.1``, with ``Connection: close`` for 1.1 and 1.0C), ``User-Agent: KeepAliveClient``,
  ``Host:`` the virtualhost or ``ADDRESS:PORT``. SSL_GET does not verify the server's
  certificate (neither does keepalived) and sends SNI only with ``enable_sni``.
* UDP_CHECK: a datagram (``payload``, else 16 random bytes) is not refused (no ICMP port
  unreachable within connect_timeout); with ``require_reply`` an answer must come whose
  length and content match (check_udp.c).
* PING_CHECK: an ICMP echo reply comes back (an unprivileged ICMP socket when the kernel
  allows it, else a raw one).
* DNS_CHECK: a query of ``type`` for ``name`` is answered (same id, QR set) with rcode 0.
* SMTP_CHECK: the server greets with 220, answers ``HELO helo_name`` with 250 and ``QUIT``
  with 221 (check_smtp.c).

MISC_CHECK runs a script; it is `misc` here and uses `testbed.runtime.scripts`.

Not for: retries, timings and what a result changes (``checker.py``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import select
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from ipaddress import IPv4Address

from testbed.keepalived_conf.model import (
    DnsCheck,
    HttpGet,
    SmtpCheck,
    SslContext,
    SslGet,
    UdpCheck,
    UrlCheck,
)
from testbed.runtime import scripts

MAX_HTTP_RESPONSE_BYTES = 1 << 20
SMTP_MAX_LINE_BYTES = 512  # SMTP_BUFF_MAX
DNS_BUFFER_BYTES = 768
UDP_RANDOM_PAYLOAD_BYTES = 16
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
DNS_TYPE_CODES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}
SO_MARK = 36  # Linux; socket.SO_MARK is not exported everywhere


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    exit_status: int | None = None  # MISC_CHECK: the script's exit status


@dataclass(frozen=True)
class Target:
    address: str
    port: int
    bindto: IPv4Address | None = None
    bind_port: int | None = None
    bind_if: str | None = None
    fwmark: int | None = None

    @property
    def where(self) -> str:
        return f"[{self.address}]:{self.port}"


def _socket(target: Target, kind: int, proto: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind, proto)
    try:
        if target.bind_if:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, target.bind_if.encode())
        if target.fwmark:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, target.fwmark)
        if target.bindto is not None or target.bind_port:
            sock.bind((str(target.bindto or "0.0.0.0"), target.bind_port or 0))
    except BaseException:
        sock.close()
        raise
    return sock


def _connect(target: Target, timeout_s: float) -> socket.socket:
    sock = _socket(target, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.connect((target.address, target.port))
    except BaseException:
        sock.close()
        raise
    return sock


def _failure(kind: str, target: Target, exc: OSError) -> CheckResult:
    if isinstance(exc, TimeoutError):
        return CheckResult(False, f"{kind} connection to {target.where} timeout")
    return CheckResult(False, f"{kind} connection to {target.where} failed ({exc.strerror or exc})")


# ----------------------------------------------------------------------------- TCP


def tcp_check(target: Target, timeout_s: float) -> CheckResult:
    """keepalived's TCP_CHECK: the connection is established within the timeout."""
    try:
        with _connect(target, timeout_s):
            return CheckResult(True, f"TCP connection to {target.where} success")
    except OSError as exc:
        return _failure("TCP", target, exc)


# ------------------------------------------------------------------------ HTTP, SSL


def ssl_context(config: SslContext | None) -> ssl.SSLContext:
    """keepalived's SSL context: no verification of the server; a client certificate from
    the ``SSL`` block when one is given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if config is not None and config.certificate:
        context.load_cert_chain(config.certificate, config.key, config.password)
    return context


def http_get(
    target: Target,
    check: HttpGet,
    timeout_s: float,
    *,
    virtualhost: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> CheckResult:
    """keepalived's HTTP_GET / SSL_GET (``tls`` set): every url must pass."""
    kind = "SSL" if isinstance(check, SslGet) else "HTTP"
    if not check.urls:
        return tcp_check(target, timeout_s)
    for url in check.urls:
        host = url.virtualhost or check.virtualhost or virtualhost
        try:
            status, body = _http_fetch(target, url.path, host, check, timeout_s, tls)
        except ssl.SSLError as exc:
            return CheckResult(False, f"SSL handshake with {target.where} failed ({exc.reason})")
        except OSError as exc:
            result = _failure(kind, target, exc)
            return CheckResult(False, f"{result.detail} url({url.path})")
        except ValueError as exc:
            return CheckResult(False, f"{kind} response from {target.where} url({url.path}): {exc}")
        problem = url_problem(url, status, body)
        if problem is not None:
            return CheckResult(False, f"{problem} to {target.where} url({url.path})")
    return CheckResult(True, f"{kind} check of {target.where} success")


def url_problem(url: UrlCheck, status: int, body: bytes) -> str | None:
    """Why a response fails ``url`` (keepalived's order: status, digest, regex), or None."""
    if not url.accepts(status):
        return f"HTTP status code error, status_code [{status}]"
    if url.digest is not None:
        digest = hashlib.md5(body, usedforsecurity=False).hexdigest()  # keepalived's digest
        if digest != url.digest.lower():
            return f"MD5 digest error, digest [{digest}]"
    if url.regex is not None:
        found = re.search(url.regex, body.decode("latin-1")) is not None
        if found == url.regex_no_match:
            return "regex " + ("matched" if found else "did not match")
    return None


def http_request(path: str, host: str, protocol: str | None) -> bytes:
    """keepalived's request_template."""
    version = "1.1" if protocol == "1.1" else "1.0"
    close = "Connection: close\r\n" if protocol in ("1.0C", "1.1") else ""
    return (
        f"GET {path} HTTP/{version}\r\nUser-Agent: KeepAliveClient\r\n{close}Host: {host}\r\n\r\n"
    ).encode()


def _http_fetch(
    target: Target,
    path: str,
    virtualhost: str | None,
    check: HttpGet,
    timeout_s: float,
    tls: ssl.SSLContext | None,
) -> tuple[int, bytes]:
    """One GET within ``timeout_s`` overall; (status, body)."""
    deadline = time.monotonic() + timeout_s
    host = virtualhost or f"{target.address}:{target.port}"
    chunks: list[bytes] = []
    size = 0
    sock = _connect(target, timeout_s)
    try:
        if tls is not None:
            server_name = (check.sni_name or virtualhost) if check.enable_sni else None
            sock = tls.wrap_socket(sock, server_hostname=server_name)
        sock.sendall(http_request(path, host, check.http_protocol))
        while size <= MAX_HTTP_RESPONSE_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("response not complete in time")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except ssl.SSLZeroReturnError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        sock.close()
    data = b"".join(chunks)
    head, sep, body = data.partition(b"\r\n\r\n")
    words = head.split(b"\r\n", 1)[0].split()
    if not sep or len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
        raise ValueError("not an HTTP response")
    return int(words[1]), body


# ------------------------------------------------------------------------------ UDP


def udp_check(target: Target, check: UdpCheck, timeout_s: float) -> CheckResult:
    """keepalived's UDP_CHECK (see the module docstring)."""
    payload = check.payload or os.urandom(UDP_RANDOM_PAYLOAD_BYTES)
    try:
        with _socket(target, socket.SOCK_DGRAM) as sock:
            sock.connect((target.address, target.port))  # so ICMP errors reach recv
            sock.send(payload)
            ready, _, _ = select.select([sock], [], [], timeout_s)
            if not ready:
                if check.require_reply:
                    return CheckResult(False, f"UDP check of {target.where}: no reply")
                return CheckResult(True, f"UDP check of {target.where} success (no ICMP error)")
            data = sock.recv(65535)
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            return CheckResult(False, f"UDP connection to {target.where} failed (port unreachable)")
        return _failure("UDP", target, exc)
    if check.require_reply and not check.reply_ok(data):
        return CheckResult(False, f"UDP check to {target.where} reply data mismatch")
    return CheckResult(True, f"UDP connection to {target.where} success")


# ----------------------------------------------------------------------------- PING


def icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    checksum = icmp_checksum(header + payload)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, checksum, ident, seq) + payload


def ping_check(target: Target, timeout_s: float) -> CheckResult:
    """keepalived's PING_CHECK: one echo request, its reply within the timeout."""
    ident, seq = os.getpid() & 0xFFFF, int.from_bytes(os.urandom(2), "big")
    payload = os.urandom(16)
    try:
        sock = _socket(target, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        raw = False
    except PermissionError:
        sock = _socket(target, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        raw = True
    deadline = time.monotonic() + timeout_s
    try:
        with sock:
            sock.sendto(echo_request(ident, seq, payload), (target.address, 0))
            while (remaining := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], remaining)
                if not ready:
                    break
                data, (src, _) = sock.recvfrom(65535)
                if raw:  # a raw socket hands the IP header over too, and every ICMP
                    data = data[(data[0] & 0x0F) * 4 :]
                    if src != target.address:
                        continue
                if len(data) >= 8 and data[0] == ICMP_ECHO_REPLY and data[8:] == payload:
                    return CheckResult(True, f"ICMP echo reply from [{target.address}]")
    except OSError as exc:
        return CheckResult(False, f"ICMP echo to [{target.address}] failed ({exc.strerror})")
    return CheckResult(False, f"no ICMP echo reply from [{target.address}] in {timeout_s:g} s")


# ------------------------------------------------------------------------------ DNS


def dns_query(ident: int, name: str, qtype: str) -> bytes:
    """A query with recursion desired, as keepalived's dns_make_query builds it."""
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    labels = b"".join(
        bytes([len(label)]) + label.encode() for label in name.strip(".").split(".") if label
    )
    return header + labels + b"\0" + struct.pack("!HH", DNS_TYPE_CODES[qtype], 1)


def dns_check(target: Target, check: DnsCheck, timeout_s: float) -> CheckResult:
    ident = int.from_bytes(os.urandom(2), "big")
    deadline = time.monotonic() + timeout_s
    try:
        with _socket(target, socket.SOCK_DGRAM) as sock:
            sock.connect((target.address, target.port))
            sock.send(dns_query(ident, check.name, check.type))
            while (remaining := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], remaining)
                if not ready:
                    break
                data = sock.recv(DNS_BUFFER_BYTES)
                if len(data) < 12:
                    continue  # too small: keepalived waits for another
                rid, flags = struct.unpack_from("!HH", data)
                if rid != ident or not flags & 0x8000:
                    continue
                rcode = flags & 0x000F
                if rcode:
                    return CheckResult(False, f"DNS answer from {target.where}: rcode {rcode}")
                return CheckResult(True, f"DNS check of {target.where} success")
    except OSError as exc:
        return _failure("DNS", target, exc)
    return CheckResult(False, f"DNS check of {target.where}: read timeout")


# ----------------------------------------------------------------------------- SMTP


def _smtp_reply(sock: socket.socket, buffer: bytearray) -> int:
    """The code of the next (possibly multi-line) SMTP reply."""
    while True:
        while b"\r\n" not in buffer and b"\n" not in buffer:
            chunk = sock.recv(SMTP_MAX_LINE_BYTES)
            if not chunk:
                raise ValueError("connection closed")
            buffer += chunk
            if len(buffer) > SMTP_MAX_LINE_BYTES * 8:
                raise ValueError("reply too long")
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        line = line.rstrip(b"\r")
        if len(line) < 3 or not line[:3].isdigit():
            raise ValueError(f"not an SMTP reply: {line[:40]!r}")
        if line[3:4] != b"-":
            return int(line[:3])


def smtp_check(target: Target, check: SmtpCheck, timeout_s: float) -> CheckResult:
    """keepalived's SMTP_CHECK dialogue: 220 greeting, HELO -> 250, QUIT -> 221."""
    buffer = bytearray()
    try:
        with _connect(target, timeout_s) as sock:
            for send, want in ((None, 220), (f"HELO {check.helo_name}", 250), ("QUIT", 221)):
                if send is not None:
                    sock.sendall(send.encode() + b"\r\n")
                code = _smtp_reply(sock, buffer)
                if code != want:
                    step = send.split()[0] if send else "greeting"
                    return CheckResult(
                        False, f"SMTP {step} to {target.where}: got {code}, expected {want}"
                    )
    except OSError as exc:
        return _failure("SMTP", target, exc)
    except ValueError as exc:
        return CheckResult(False, f"SMTP check of {target.where}: {exc}")
    return CheckResult(True, f"SMTP check of {target.where} success")


# ----------------------------------------------------------------------------- MISC


def misc_check(prepared: scripts.PreparedScript, timeout_s: float, dynamic: bool) -> CheckResult:
    """keepalived's MISC_CHECK: exit 0 passes; with ``misc_dynamic`` 2..255 pass too (the
    status sets the weight); anything else, a signal or the timeout fails."""
    status, what = scripts.run(prepared, timeout_s)
    ok = status == 0 or (dynamic and status is not None and 2 <= status <= 255)
    return CheckResult(ok, f"misc check {prepared.command!r} {what}", status)
