"""The services a real server runs: HTTP on port 80, UDP echo on port 7, and, for keepalived's
other health checks, HTTPS on 443, an SMTP greeter on 25 and a DNS responder on udp 53.

HTTP and HTTPS answer with the real server's name, so clients (and the demo, labs and tests)
see which real server served them. ``GET /tick?s=N`` keeps its connection open for N seconds
(at most `MAX_TICK_S`) and sends one timestamped line per second: a long TCP connection to
watch through a failover (lab 5). Run inside a Mininet host::

    python -m testbed.traffic.servers --name rs1 --bind 10.0.0.11 --bind 10.0.0.100

UDP sockets (echo, DNS) are bound to each address separately (the RIP, and in DR the VIP on
lo): a socket bound to 0.0.0.0 would answer a request to the VIP from the RIP, and the client
would drop it. TCP services bind 0.0.0.0; TCP answers from the address the connection was
made to.

What the extra services do, and no more (they exist so SSL_GET, SMTP_CHECK and DNS_CHECK can
really pass and fail):

* HTTPS: the HTTP handler behind TLS, with a self-signed certificate (EC P-256, CN the real
  server's name) made at start with ``openssl req`` into a temporary directory removed at
  exit. Without ``openssl`` HTTPS is skipped with a message; the rest runs.
* SMTP: ``220 NAME ESMTP`` on connect, ``250`` for HELO/EHLO/NOOP/RSET, ``221`` for QUIT,
  ``502`` for anything else; no mail is accepted. Lines are capped at 512 bytes.
* DNS: every well-formed query gets a NOERROR answer with the question echoed; an ``A``
  query is answered with the address it arrived on; other types get no records.

Not for: load generation (``testbed.traffic``'s clients) or anything a real MTA or DNS server
does beyond what keepalived's checks look at.
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import shutil
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ECHO_BUF_BYTES = 65535
DNS_BUF_BYTES = 512
SMTP_LINE_BYTES = 512
SMTP_IDLE_TIMEOUT_S = 30.0
OPENSSL_TIMEOUT_S = 20.0
CERT_DAYS = 30
DNS_TYPE_A = 1
MAX_TICK_S = 300
TICK_INTERVAL_S = 1.0


def tick_seconds(path: str) -> int | None:
    """N of a ``/tick?s=N`` path, clamped to 1..MAX_TICK_S (None: not a tick request)."""
    url = urlsplit(path)
    if url.path != "/tick":
        return None
    try:
        seconds = int(parse_qs(url.query).get("s", ["10"])[0])
    except ValueError:
        seconds = 10
    return min(max(seconds, 1), MAX_TICK_S)


def make_handler(name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "lvs-testbed"
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            local = self.connection.getsockname()[0]
            seconds = tick_seconds(self.path)
            if seconds is not None:
                self._tick(local, seconds)
                return
            body = f"{name} {local}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Real-Server", name)
            self.end_headers()
            self.wfile.write(body)

        def _tick(self, local: str, seconds: int) -> None:
            """One line per second on one connection; HTTP/1.0 without a length: the end
            of the connection ends the body."""
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("X-Real-Server", name)
            self.end_headers()
            for i in range(1, seconds + 1):
                stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 10) % 10}"
                try:
                    self.wfile.write(f"{name} {local} tick {i} of {seconds} at {stamp}\n".encode())
                    self.wfile.flush()
                except OSError:
                    return  # the client left
                if i < seconds:
                    time.sleep(TICK_INTERVAL_S)

        def log_message(self, *args) -> None:
            pass  # one line per request would cost more than the request

    return Handler


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


class HttpsServer(HttpServer):
    """HttpServer whose connections are TLS (the handshake runs in the handler's thread)."""

    def __init__(self, address, handler, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request, client_address) -> None:
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a probe that only connects, or a client that gave up
        super().finish_request(tls, client_address)

    def handle_error(self, request, client_address) -> None:
        pass  # checkers hang up as soon as they have their answer


@contextlib.contextmanager
def self_signed_certificate(common_name: str) -> Iterator[tuple[Path, Path]]:
    """(certificate, key) made with ``openssl req``, removed on exit; FileNotFoundError if
    openssl is not installed, subprocess errors if it fails."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("openssl is not installed")
    with tempfile.TemporaryDirectory(prefix="lvs-testbed-tls-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                str(CERT_DAYS),
                "-subj",
                f"/CN={common_name}",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=OPENSSL_TIMEOUT_S,
        )
        yield cert, key


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


# ------------------------------------------------------------------------------ SMTP


def smtp_reply(line: bytes, name: str) -> tuple[bytes, bool]:
    """The reply to one SMTP command line, and whether the session ends."""
    verb = line.strip().split(b" ", 1)[0].upper()
    if verb in (b"HELO", b"EHLO"):
        return f"250 {name} Hello\r\n".encode(), False
    if verb in (b"NOOP", b"RSET"):
        return b"250 OK\r\n", False
    if verb == b"QUIT":
        return f"221 {name} closing connection\r\n".encode(), True
    return b"502 Command not implemented\r\n", False


def make_smtp_handler(name: str) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        timeout = SMTP_IDLE_TIMEOUT_S

        def handle(self) -> None:
            try:
                self.wfile.write(f"220 {name} ESMTP lvs-testbed\r\n".encode())
                while True:
                    line = self.rfile.readline(SMTP_LINE_BYTES)
                    if not line:
                        return
                    reply, done = smtp_reply(line, name)
                    self.wfile.write(reply)
                    if done:
                        return
            except OSError:
                return

    return Handler


class SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


# ------------------------------------------------------------------------------- DNS


def dns_answer(query: bytes, local_address: str) -> bytes | None:
    """The answer to one query (see the module docstring); None for what is not a query."""
    if len(query) < 12:
        return None
    ident, flags, qdcount = struct.unpack_from("!HHH", query)
    if flags & 0x8000 or qdcount != 1:
        return None
    end = 12
    while end < len(query) and query[end]:
        end += 1 + query[end]
    if end + 5 > len(query):
        return None
    qtype = struct.unpack_from("!H", query, end + 1)[0]
    question = query[12 : end + 5]
    answers = b""
    count = 0
    if qtype == DNS_TYPE_A:
        # name: a pointer to the question; type A, class IN, TTL 60, 4 bytes of address
        answers = struct.pack("!HHHIH", 0xC00C, DNS_TYPE_A, 1, 60, 4) + socket.inet_aton(
            local_address
        )
        count = 1
    header = struct.pack("!HHHHHH", ident, 0x8180 | (flags & 0x0100), 1, count, 0, 0)
    return header + question + answers


# ------------------------------------------------------------------------ UDP services


UdpHandler = Callable[[bytes, str], bytes | None]  # (datagram, local address) -> reply


def echo(data: bytes, _local: str) -> bytes | None:
    return data


def serve_udp(services: list[tuple[str, int, UdpHandler]], stop: threading.Event) -> None:
    """Each (address, port, handler) on its own socket, all in this thread."""
    sel = selectors.DefaultSelector()
    socks = []
    for addr, port, handler in services:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((addr, port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, (addr, handler))
        socks.append(s)
    while not stop.is_set():
        for key, _ in sel.select(timeout=0.2):
            sock = key.fileobj
            addr, handler = key.data
            # Drain what is queued: one wake-up per burst, not per datagram.
            for _ in range(256):
                try:
                    data, peer = sock.recvfrom(ECHO_BUF_BYTES)
                except BlockingIOError:
                    break
                reply = handler(data, addr)
                if reply is None:
                    continue
                try:
                    sock.sendto(reply, peer)
                except OSError:
                    pass  # a full socket buffer drops the reply, as a busy server would
    for s in socks:
        s.close()


def serve_udp_echo(addrs: list[str], port: int, stop: threading.Event) -> None:
    serve_udp([(addr, port, echo) for addr in addrs], stop)


def _start(server: socketserver.BaseServer, name: str) -> None:
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.traffic.servers")
    parser.add_argument(
        "--name", required=True, help="the real server's name, sent in every answer"
    )
    parser.add_argument(
        "--bind", action="append", required=True, help="address for UDP services (repeat)"
    )
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--echo-port", type=int, default=7)
    parser.add_argument("--https-port", type=int, default=443, help="0: no HTTPS")
    parser.add_argument("--smtp-port", type=int, default=25, help="0: no SMTP greeter")
    parser.add_argument("--dns-port", type=int, default=53, help="0: no DNS responder")
    args = parser.parse_args(argv)

    stop = threading.Event()
    servers: list[socketserver.BaseServer] = []
    httpd = HttpServer(("", args.http_port), make_handler(args.name))
    servers.append(httpd)
    _start(httpd, "http")
    if args.smtp_port:
        smtpd = SmtpServer(("", args.smtp_port), make_smtp_handler(args.name))
        servers.append(smtpd)
        _start(smtpd, "smtp")
    udp = [(addr, args.echo_port, echo) for addr in args.bind]
    if args.dns_port:
        udp += [(addr, args.dns_port, dns_answer) for addr in args.bind]

    def on_signal(_sig, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with contextlib.ExitStack() as stack:
        if args.https_port:
            try:
                cert, key = stack.enter_context(self_signed_certificate(args.name))
            except (OSError, subprocess.SubprocessError) as exc:
                print(f"{args.name}: no HTTPS ({exc})", file=sys.stderr)
            else:
                httpsd = HttpsServer(
                    ("", args.https_port), make_handler(args.name), tls_context(cert, key)
                )
                servers.append(httpsd)
                _start(httpsd, "https")
        try:
            serve_udp(udp, stop)
        finally:
            for server in servers:
                server.shutdown()
                server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(argv=None))
