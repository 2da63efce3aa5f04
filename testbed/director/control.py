"""The director's control channel: a unix socket (mode 0600) speaking one JSON line each way.

The daemon serves it; ``lvs-testbed ipvsadm`` and ``lvs-testbed director stats`` are clients.
Each daemon also writes an index file beside its socket naming its host and network
namespace, so a client run inside a Mininet host (``d1 ipvsadm -L -n``) finds the director
of its own namespace without being told, and a client outside finds one by host name.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from testbed.net.registry import list_runs, run_root

MAX_REQUEST_BYTES = 16 << 20
SOCKET_SUFFIX = ".director.sock"
INDEX_SUFFIX = ".director.json"


class ControlError(RuntimeError):
    """No director could be reached; the message says which and what to do."""


def own_netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def socket_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}{SOCKET_SUFFIX}"


def write_index(run_dir: Path, name: str, pid: int) -> Path:
    path = run_dir / f"{name}{INDEX_SUFFIX}"
    path.write_text(json.dumps({"name": name, "pid": pid, "netns": own_netns_inode(),
                                "socket": str(socket_path(run_dir, name))}))
    return path


def _indexes(run_dirs: list[Path]) -> list[dict]:
    found = []
    for run_dir in run_dirs:
        for path in sorted(run_dir.glob(f"*{INDEX_SUFFIX}")):
            try:
                entry = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if Path(entry.get("socket", "")).exists():
                found.append(entry)
    return found


def find_director(name: str | None = None) -> Path:
    """The control socket of director ``name``, or of the one in our own namespace."""
    env_sock = os.environ.get("LVS_TESTBED_DIRECTOR_SOCKET")
    if env_sock and name is None:
        return Path(env_sock)
    dirs = []
    env_run = os.environ.get("LVS_TESTBED_RUN_DIR")
    if env_run and Path(env_run).is_dir():
        dirs.append(Path(env_run))
    dirs += [d for d in list_runs() if d not in dirs]
    entries = _indexes(dirs)
    if name is not None:
        matches = [e for e in entries if e["name"] == name]
        if not matches:
            known = ", ".join(sorted({e["name"] for e in entries})) or "none"
            raise ControlError(f"no director named {name!r} is running (running: {known})")
        return Path(matches[0]["socket"])
    ino = own_netns_inode()
    matches = [e for e in entries if e["netns"] == ino]
    if matches:
        return Path(matches[0]["socket"])
    if not entries:
        raise ControlError(
            f"no director is running (none recorded under {run_root()}): bring a layout up with "
            "`lvs-testbed up dr` or start one with `lvs-testbed director run`"
        )
    names = ", ".join(sorted(e["name"] for e in entries))
    raise ControlError(
        f"no director in this network namespace; running: {names}. Run the command on a "
        "director host (e.g. `d1 ipvsadm -L -n` in the Mininet CLI) or pass --director NAME"
    )


def request(path: Path, message: dict, timeout_s: float = 10.0) -> dict:
    """Send one request and return the reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlError(f"the director at {path} is not answering ({exc.strerror})") from exc
        sock.sendall(json.dumps(message).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        data = _read_all(sock)
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ControlError(f"the director sent a reply that is not JSON: {data[:200]!r}") from exc


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    size = 0
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise ControlError("control message too large")


class ControlServer:
    """The daemon's side: accept a connection, read one request, answer, close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists():
            path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window with wider access
        try:
            self.sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        self.sock.listen(16)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def serve_one(self, handle) -> None:
        """Serve every pending connection with ``handle(request) -> reply``."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            with conn:
                conn.settimeout(2.0)  # a stuck client must not stall forwarding for long
                try:
                    data = _read_all(conn)
                    message = json.loads(data)
                    if not isinstance(message, dict):
                        raise ValueError("a request is one JSON object")
                    reply = handle(message)
                except (OSError, ValueError, ControlError) as exc:
                    reply = {"rc": 2, "out": "", "err": f"bad control request: {exc}\n"}
                try:
                    conn.sendall(json.dumps(reply).encode())
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
        if self.path.exists():
            self.path.unlink()
