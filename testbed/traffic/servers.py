"""The services a real server runs: HTTP on port 80 and UDP echo on port 7.

Both answer with the real server's name so clients (and the demo, labs and tests) see which
real server served them. Run inside a Mininet host::

    python -m testbed.traffic.servers --name rs1 --bind 10.0.0.11 --bind 10.0.0.100

UDP sockets are bound to each address separately (the RIP, and in DR the VIP on lo): a socket
bound to 0.0.0.0 would answer a request to the VIP from the RIP, and the client would drop it.
HTTP binds 0.0.0.0; TCP answers from the address the connection was made to.
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ECHO_BUF_BYTES = 65535


def make_handler(name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "lvs-testbed"
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            local = self.connection.getsockname()[0]
            body = f"{name} {local}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Real-Server", name)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass  # one line per request would cost more than the request

    return Handler


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def serve_udp_echo(addrs: list[str], port: int, stop: threading.Event) -> None:
    sel = selectors.DefaultSelector()
    socks = []
    for addr in addrs:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((addr, port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    while not stop.is_set():
        for key, _ in sel.select(timeout=0.2):
            sock = key.fileobj
            # Drain what is queued: one wake-up per burst, not per datagram.
            for _ in range(256):
                try:
                    data, peer = sock.recvfrom(ECHO_BUF_BYTES)
                except BlockingIOError:
                    break
                try:
                    sock.sendto(data, peer)
                except OSError:
                    pass  # a full socket buffer drops the echo, as a busy server would
    for s in socks:
        s.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.traffic.servers")
    parser.add_argument(
        "--name", required=True, help="the real server's name, sent in every answer"
    )
    parser.add_argument(
        "--bind", action="append", required=True, help="address for UDP echo (repeat)"
    )
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--echo-port", type=int, default=7)
    args = parser.parse_args(argv)

    stop = threading.Event()
    httpd = HttpServer(("", args.http_port), make_handler(args.name))
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()

    def on_signal(_sig, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        serve_udp_echo(args.bind, args.echo_port, stop)
    finally:
        httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
