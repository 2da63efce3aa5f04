"""The director's control channel: a unix socket (mode 0600) speaking one JSON line each way.

The daemon serves it; ``lvs-testbed ipvsadm`` and ``lvs-testbed director stats`` are clients.
Each daemon also writes an index file beside its socket naming its host and network
namespace, so a client run inside a Mininet host (``d1 ipvsadm -L -n``) finds the director
of its own namespace without being told, and a client outside finds one by host name.

Other daemons (the VRRP speaker, ``testbed.vrrp.daemon``) use the same channel under their
own ``kind``: ``<name>.<kind>.sock`` and ``<name>.<kind>.json``, found with
:func:`find_daemon`. The defaults are the director's.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from testbed.runtime.registry import list_runs, run_root

MAX_REQUEST_BYTES = 16 << 20
DIRECTOR_KIND = "director"
SOCKET_SUFFIX = f".{DIRECTOR_KIND}.sock"
INDEX_SUFFIX = f".{DIRECTOR_KIND}.json"


class ControlError(RuntimeError):
    """No director (or other daemon) could be reached; the message says which and what to do."""


@dataclass(frozen=True)
class DaemonKind:
    """How :func:`find_daemon` names a kind of daemon in its files and its messages."""

    kind: str  # file suffixes: <name>.<kind>.sock, <name>.<kind>.json
    what: str  # "director", "VRRP daemon"
    start_hint: str  # how to start one, for "none is running"
    here_hint: str  # how to reach one elsewhere, for "none in this namespace"
    env_socket: str | None = None  # a variable naming the socket to use when no name is given


DIRECTOR = DaemonKind(
    DIRECTOR_KIND,
    "director",
    "bring a layout up with `lvs-testbed up dr` or start one with `lvs-testbed director run`",
    "Run the command on a director host (e.g. `d1 ipvsadm -L -n` in the Mininet CLI) or pass "
    "--director NAME",
    "LVS_TESTBED_DIRECTOR_SOCKET",
)


def own_netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def socket_path(run_dir: Path, name: str, kind: str = DIRECTOR_KIND) -> Path:
    return run_dir / f"{name}.{kind}.sock"


def write_index(run_dir: Path, name: str, pid: int, kind: str = DIRECTOR_KIND) -> Path:
    path = run_dir / f"{name}.{kind}.json"
    path.write_text(
        json.dumps(
            {
                "name": name,
                "pid": pid,
                "netns": own_netns_inode(),
                "socket": str(socket_path(run_dir, name, kind)),
            }
        )
    )
    return path


def _indexes(run_dirs: list[Path], kind: str = DIRECTOR_KIND) -> list[dict]:
    found = []
    for run_dir in run_dirs:
        for path in sorted(run_dir.glob(f"*.{kind}.json")):
            try:
                entry = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if Path(entry.get("socket", "")).exists():
                found.append(entry)
    return found


def find_director(name: str | None = None) -> Path:
    """The control socket of director ``name``, or of the one in our own namespace."""
    return find_daemon(DIRECTOR, name)


def find_daemon(kind: DaemonKind, name: str | None = None) -> Path:
    """The control socket of the ``kind`` daemon ``name``, or of the one in our namespace."""
    env_sock = os.environ.get(kind.env_socket) if kind.env_socket else None
    if env_sock and name is None:
        return Path(env_sock)
    dirs = []
    env_run = os.environ.get("LVS_TESTBED_RUN_DIR")
    if env_run and Path(env_run).is_dir():
        dirs.append(Path(env_run))
    dirs += [d for d in list_runs() if d not in dirs]
    entries = _indexes(dirs, kind.kind)
    if name is not None:
        matches = [e for e in entries if e["name"] == name]
        if not matches:
            known = ", ".join(sorted({e["name"] for e in entries})) or "none"
            raise ControlError(f"no {kind.what} named {name!r} is running (running: {known})")
        return Path(matches[0]["socket"])
    ino = own_netns_inode()
    matches = [e for e in entries if e["netns"] == ino]
    if matches:
        return Path(matches[0]["socket"])
    if not entries:
        raise ControlError(
            f"no {kind.what} is running (none recorded under {run_root()}): {kind.start_hint}"
        )
    names = ", ".join(sorted(e["name"] for e in entries))
    raise ControlError(
        f"no {kind.what} in this network namespace; running: {names}. {kind.here_hint}"
    )


def request(path: Path, message: dict, timeout_s: float = 10.0, what: str = "director") -> dict:
    """Send one request and return the reply; ``what`` names the daemon in errors."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlError(f"the {what} at {path} is not answering ({exc.strerror})") from exc
        sock.sendall(json.dumps(message).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        data = _read_all(sock)
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ControlError(f"the {what} sent a reply that is not JSON: {data[:200]!r}") from exc


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
    """The daemon's side: accept a connection, read one request, answer, close.

    ``client_timeout_s`` bounds how long a stuck client can hold the daemon's loop.
    """

    def __init__(self, path: Path, client_timeout_s: float = 2.0) -> None:
        self.path = path
        self.client_timeout_s = client_timeout_s
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
                conn.settimeout(self.client_timeout_s)  # a stuck client must not stall the loop
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
