"""The director's control channel: a unix socket (mode 0600) speaking one JSON line each way.

The daemon serves it; ``lvs-testbed ipvsadm`` and ``lvs-testbed director stats`` are clients.
Each daemon also writes an index file beside its socket naming its host and network
namespace, so a client run inside a Mininet host (``d1 ipvsadm -L -n``) finds the director
of its own namespace without being told, and a client outside finds one by host name.

Other daemons (the VRRP speaker, ``testbed.vrrp.daemon``) use the same channel under their
own ``kind``: ``<name>.<kind>.sock`` and ``<name>.<kind>.json``, found with
:func:`find_daemon`. The defaults are the director's.

No request can stop a daemon: each connection has a total deadline (a client sending one
byte a second cannot hold the daemon's loop), each daemon checks a request against its
schema (`check_request`: each operation's fields and their types) before acting on it, and
whatever goes wrong (bad JSON, nesting too deep to parse, a wrong type, a handler that
raises) becomes an error reply, never an exception in the daemon.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from testbed.runtime.registry import list_runs, run_root

MAX_REQUEST_BYTES = 16 << 20
MAX_CONNECTIONS_PER_SERVE = 8  # per wake-up of the daemon's loop; the rest wait for the next
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
    """Send one request and return the reply; ``what`` names the daemon in errors.
    ``timeout_s`` bounds the whole exchange (connect, send, the daemon's work, the reply)."""
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
            sock.sendall(json.dumps(message).encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            data = _read_all(sock, deadline)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlError(f"the {what} at {path} is not answering ({exc.strerror})") from exc
        except TimeoutError as exc:
            raise ControlError(
                f"the {what} at {path} did not answer within {timeout_s:g} s"
            ) from exc
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ControlError(f"the {what} sent a reply that is not JSON: {data[:200]!r}") from exc


def _read_all(sock: socket.socket, deadline: float) -> bytes:
    chunks = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        sock.settimeout(left)
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise ControlError("control message too large")


# -- request schemas ------------------------------------------------------------------------
FieldSpec = tuple[str, bool]
"""(kind, required); kind is one of `KINDS`."""
Schemas = Mapping[str, Mapping[str, FieldSpec]]
"""Operation name -> its fields (besides "op") -> spec. An operation not in it is unknown."""
KINDS = {
    "str": "a string",
    "str?": "a string or null",
    "int": "an integer",
    "bool": "true or false",
    "bool?": "true, false or null",
    "list[str]": "a list of strings",
    "dict[str,int]": "an object of integers",
}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits(value: object, kind: str) -> bool:
    if kind.endswith("?") and value is None:
        return True
    base = kind.rstrip("?")
    if base == "str":
        return isinstance(value, str)
    if base == "int":
        return _is_int(value)
    if base == "bool":
        return isinstance(value, bool)
    if base == "list[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if base == "dict[str,int]":
        return isinstance(value, dict) and all(_is_int(v) for v in value.values())
    raise ValueError(f"unknown field kind {kind!r}")


def check_request(message: object, schemas: Schemas) -> str | None:
    """Why ``message`` is not a valid request, or None if it is."""
    if not isinstance(message, dict):
        return "a request is one JSON object"
    op = message.get("op")
    if not isinstance(op, str) or op not in schemas:
        return f"unknown control operation {op!r} (known: {', '.join(sorted(schemas))})"
    fields = schemas[op]
    for name in message:
        if name != "op" and name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            return f"{op}: unknown field {name!r} (fields: {known})"
    for name, (kind, required) in fields.items():
        if name not in message:
            if required:
                return f"{op}: missing field {name!r} ({KINDS[kind]})"
            continue
        if not _fits(message[name], kind):
            return f"{op}: field {name!r} must be {KINDS[kind]}, got {_describe(message[name])}"
    return None


def _describe(value: object) -> str:
    if isinstance(value, list | dict):
        items = value.values() if isinstance(value, dict) else value
        kinds = sorted({type(v).__name__ for v in items})
        return f"a {type(value).__name__} of {', '.join(kinds) or 'nothing'}"
    return type(value).__name__


def error_reply(message: str, rc: int = 2) -> dict:
    return {"rc": rc, "out": "", "err": message.rstrip("\n") + "\n"}


class ControlServer:
    """The daemon's side: accept a connection, read one request, answer, close.

    ``client_timeout_s`` bounds, in total, reading a request from accept to its last byte,
    and again sending the reply (what a stuck or slow client can cost the daemon's loop).
    The handler checks the request against its schema (`check_request`); whatever it raises
    is answered as an error.
    """

    def __init__(self, path: Path, client_timeout_s: float = 2.0) -> None:
        self.path = path
        self.client_timeout_s = client_timeout_s
        self.errors = 0  # requests answered with an error by the server (not the handler)
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

    def serve_one(self, handle: Callable[[dict], dict]) -> None:
        """Serve the pending connections (a few at most) with ``handle(request) -> reply``."""
        for _ in range(MAX_CONNECTIONS_PER_SERVE):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            with conn:
                deadline = time.monotonic() + self.client_timeout_s
                reply = self._answer(conn, deadline, handle)
                try:
                    data = json.dumps(reply).encode()
                except (TypeError, ValueError) as exc:
                    data = json.dumps(error_reply(f"the reply could not be encoded: {exc}", 1))
                    data = data.encode()
                # The reply gets its own budget: the handler's work (a prefill) is not the
                # client's to pay for, a client that does not read is.
                conn.settimeout(self.client_timeout_s)
                try:
                    conn.sendall(data)
                except OSError:
                    pass  # the client went away or stopped reading: its loss

    def _answer(self, conn: socket.socket, deadline: float, handle) -> dict:
        try:
            message = json.loads(_read_all(conn, deadline))
        except (OSError, ControlError, ValueError, RecursionError) as exc:
            # RecursionError: JSON nested too deep to parse (a RuntimeError, not a ValueError).
            self.errors += 1
            return error_reply(f"bad control request: {type(exc).__name__}: {exc}"[:500])
        if not isinstance(message, dict):
            self.errors += 1
            return error_reply("bad control request: a request is one JSON object")
        try:
            return handle(message)
        except Exception as exc:  # noqa: BLE001 - no request may stop the daemon
            traceback.print_exc(file=sys.stderr)
            return error_reply(f"the request failed: {type(exc).__name__}: {exc}", rc=1)

    def close(self) -> None:
        self.sock.close()
        if self.path.exists():
            self.path.unlink()
