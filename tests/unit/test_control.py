"""The control channel (control.py) over real AF_UNIX sockets in a temporary directory: one
JSON request and reply, the socket's mode, malformed and hostile requests (deep nesting, wrong
types, a slow client, a handler that raises: each answered, none stops the server), and how a
client finds its director through the index files in the run directories."""

import json
import os
import select
import socket
import stat
import threading
import time

import pytest

from testbed.runtime.control import (
    INDEX_SUFFIX,
    ControlError,
    ControlServer,
    check_request,
    find_director,
    own_netns_inode,
    request,
    socket_path,
    write_index,
)


def echo_handler(message: dict) -> dict:
    return {"rc": 0, "out": json.dumps(message, sort_keys=True), "err": ""}


def daemon_like_handler(message: dict) -> dict:
    """What the daemon's handle_request reads first."""
    return {"rc": 0, "out": str(message.get("op")), "err": ""}


def serve_until(server: ControlServer, done: threading.Event, handler=echo_handler) -> None:
    while not done.is_set():
        ready, _, _ = select.select([server], [], [], 0.05)
        if ready:
            server.serve_one(handler)


def ask(server: ControlServer, send, handler=echo_handler):
    """Run ``send()`` in a client thread while serving; return what it returned."""
    result = {}

    def client():
        try:
            result["reply"] = send()
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            result["error"] = exc

    done = threading.Event()
    thread = threading.Thread(target=client)
    thread.start()
    serving = threading.Thread(target=serve_until, args=(server, done, handler))
    serving.start()
    thread.join(10)
    done.set()
    serving.join(10)
    assert not thread.is_alive()
    if "error" in result:
        raise result["error"]
    return result["reply"]


def raw_exchange(path, data: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return json.loads(b"".join(chunks))


@pytest.fixture
def server(tmp_path):
    srv = ControlServer(socket_path(tmp_path, "d1"))
    yield srv
    srv.close()


def test_request_gets_the_handlers_reply(server):
    """request() sends one JSON object and returns the handler's reply."""
    message = {"op": "ipvsadm", "argv": ["-L", "-n"], "stdin": None}
    reply = ask(server, lambda: request(server.path, message))
    assert reply == {"rc": 0, "out": json.dumps(message, sort_keys=True), "err": ""}


def test_large_request_and_reply_pass_whole(server):
    """A restore script far larger than a socket buffer arrives and returns whole."""
    message = {"op": "ipvsadm", "argv": ["-R"], "stdin": "-A -t 10.0.0.100:80\n" * 50000}
    reply = ask(server, lambda: request(server.path, message))
    assert json.loads(reply["out"]) == message


def test_socket_is_mode_0600(server):
    st = os.stat(server.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600


def test_socket_replaces_a_stale_file_and_close_removes_it(tmp_path):
    path = socket_path(tmp_path, "d2")
    path.write_text("left by a killed daemon")
    srv = ControlServer(path)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    srv.close()
    assert not path.exists()


@pytest.mark.parametrize(
    "data", [b"not json", b"", b'{"op": ', b"[1, 2]", b'"stats"', b"42", b"null"]
)
def test_malformed_request_gets_rc_2_and_the_server_goes_on(server, data):
    """Anything but one JSON object is answered with rc 2; the server keeps serving."""
    reply = ask(server, lambda: raw_exchange(server.path, data), daemon_like_handler)
    assert reply["rc"] == 2
    assert reply["err"].startswith("bad control request")
    again = ask(server, lambda: request(server.path, {"op": "stats"}), daemon_like_handler)
    assert again == {"rc": 0, "out": "stats", "err": ""}


def test_request_to_no_server_says_so(tmp_path):
    with pytest.raises(ControlError, match="not answering"):
        request(tmp_path / "nobody.director.sock", {"op": "stats"})


def test_non_json_reply_is_a_control_error(tmp_path):
    path = tmp_path / "odd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)

        def answer():
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"<html>")

        thread = threading.Thread(target=answer)
        thread.start()
        with pytest.raises(ControlError, match="not JSON"):
            request(path, {"op": "stats"})
        thread.join(5)


# --- finding a director --------------------------------------------------------------------


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """An empty run root (LVS_TESTBED_RUNDIR) and no director chosen by the environment."""
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("LVS_TESTBED_RUNDIR", str(root))
    monkeypatch.delenv("LVS_TESTBED_RUN_DIR", raising=False)
    monkeypatch.delenv("LVS_TESTBED_DIRECTOR_SOCKET", raising=False)
    return root


def make_run(root, run_id: str):
    run_dir = root / run_id
    run_dir.mkdir()
    (run_dir / "resources.jsonl").write_text("")
    return run_dir


def start(run_dir, name: str, *, netns: int | None = None):
    """A director's traces: its socket file and its index (as write_index writes it),
    optionally claiming another network namespace."""
    socket_path(run_dir, name).write_text("")
    index = write_index(run_dir, name, pid=4242)
    if netns is not None:
        entry = json.loads(index.read_text())
        entry["netns"] = netns
        index.write_text(json.dumps(entry))
    return socket_path(run_dir, name)


def test_find_director_by_name_across_runs(runs):
    one, two = make_run(runs, "dr-1"), make_run(runs, "nat-2")
    start(one, "d1", netns=1)
    wanted = start(two, "d2", netns=2)
    assert find_director("d2") == wanted


def test_find_director_of_our_own_network_namespace(runs):
    """Without a name, the director whose index records our namespace's inode."""
    run_dir = make_run(runs, "dr-1")
    start(run_dir, "d2", netns=own_netns_inode() + 1)
    ours = start(run_dir, "d1")
    assert json.loads((run_dir / f"d1{INDEX_SUFFIX}").read_text())["netns"] == own_netns_inode()
    assert find_director() == ours


def test_find_director_looks_in_lvs_testbed_run_dir_first(runs, tmp_path, monkeypatch):
    """LVS_TESTBED_RUN_DIR (the daemon's own directory) is searched even outside the root."""
    private = tmp_path / "private"
    private.mkdir()
    monkeypatch.setenv("LVS_TESTBED_RUN_DIR", str(private))
    ours = start(private, "d9")
    assert find_director() == ours
    assert find_director("d9") == ours


def test_director_socket_variable_wins_when_no_name_is_given(runs, monkeypatch):
    monkeypatch.setenv("LVS_TESTBED_DIRECTOR_SOCKET", "/somewhere/d.sock")
    assert str(find_director()) == "/somewhere/d.sock"
    start(make_run(runs, "dr-1"), "d1")
    assert find_director("d1") == socket_path(runs / "dr-1", "d1")


def test_index_without_its_socket_is_a_director_that_is_gone(runs):
    run_dir = make_run(runs, "dr-1")
    start(run_dir, "d1")
    socket_path(run_dir, "d1").unlink()
    (run_dir / f"broken{INDEX_SUFFIX}").write_text("{not json")
    with pytest.raises(ControlError, match="no director is running"):
        find_director()


def test_no_director_running_names_the_fix(runs):
    with pytest.raises(ControlError) as err:
        find_director()
    message = str(err.value)
    assert str(runs) in message
    assert "lvs-testbed up dr" in message and "lvs-testbed director run" in message


def test_others_running_elsewhere_are_named_with_the_fix(runs):
    run_dir = make_run(runs, "nat-1")
    start(run_dir, "d2", netns=own_netns_inode() + 2)
    start(run_dir, "d1", netns=own_netns_inode() + 1)
    with pytest.raises(ControlError) as err:
        find_director()
    message = str(err.value)
    assert "running: d1, d2" in message
    assert "--director NAME" in message and "d1 ipvsadm -L -n" in message


def test_unknown_name_lists_the_running_ones(runs):
    with pytest.raises(ControlError, match=r"no director named 'd7' is running \(running: none\)"):
        find_director("d7")
    start(make_run(runs, "dr-1"), "d1")
    with pytest.raises(ControlError, match=r"no director named 'd7' is running \(running: d1\)"):
        find_director("d7")


# --- malformed and hostile requests ---------------------------------------------------------


def test_json_nested_too_deep_to_parse_is_answered_not_raised(server):
    """json.loads raises RecursionError (not a ValueError) on deep nesting."""
    deep = b"[" * 200_000 + b"]" * 200_000
    reply = ask(server, lambda: raw_exchange(server.path, deep), daemon_like_handler)
    assert reply["rc"] == 2 and "RecursionError" in reply["err"]
    again = ask(server, lambda: request(server.path, {"op": "stats"}), daemon_like_handler)
    assert again["rc"] == 0


def test_a_handler_that_raises_gets_rc_1_and_the_server_goes_on(server):
    def broken(message: dict) -> dict:
        raise ZeroDivisionError("a bug")

    reply = ask(server, lambda: request(server.path, {"op": "stats"}), broken)
    assert reply["rc"] == 1 and "ZeroDivisionError: a bug" in reply["err"]
    again = ask(server, lambda: request(server.path, {"op": "stats"}), daemon_like_handler)
    assert again["rc"] == 0


def test_a_reply_that_is_not_json_is_answered_as_an_error(server):
    reply = ask(server, lambda: request(server.path, {"op": "x"}), lambda m: {"rc": 0, "x": {1j}})
    assert reply["rc"] == 1 and "could not be encoded" in reply["err"]


def test_a_slow_client_costs_the_daemon_at_most_its_deadline(tmp_path):
    """One byte at a time, each within the old per-read timeout: the total deadline ends it."""
    srv = ControlServer(socket_path(tmp_path, "d1"), client_timeout_s=0.3)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(srv.path))
            stop = threading.Event()

            def dribble():
                for byte in b'{"op": "stats"' + b" " * 100:
                    if stop.wait(0.1):
                        return
                    try:
                        sock.send(bytes([byte]))
                    except OSError:
                        return

            thread = threading.Thread(target=dribble)
            thread.start()
            select.select([srv], [], [], 2)
            t0 = time.monotonic()
            srv.serve_one(daemon_like_handler)
            spent = time.monotonic() - t0
            stop.set()
            thread.join(5)
            assert spent < 1.0
            sock.settimeout(2)
            reply = json.loads(sock.recv(65536))
            assert reply["rc"] == 2 and "TimeoutError" in reply["err"]
    finally:
        srv.close()


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        ({"op": "ipvsadm", "argv": [1]}, "must be a list of strings, got a list of int"),
        ({"op": "ipvsadm", "argv": "-L"}, "must be a list of strings, got str"),
        ({"op": "ipvsadm"}, "missing field 'argv'"),
        ({"op": "prefill", "count": 1e400}, "must be an integer, got float"),
        ({"op": "prefill", "count": True}, "must be an integer, got bool"),
        ({"op": "prefill", "count": 5, "extra": 1}, "unknown field 'extra'"),
        ({"op": ["stats"]}, "unknown control operation ['stats']"),
        ({"op": "halt"}, "unknown control operation 'halt' (known: ipvsadm, prefill, stats)"),
        ({"op": "ipvsadm", "argv": [], "stdin": {"a": 1}}, "'stdin' must be a string or null"),
    ],
)
def test_check_request_names_what_is_wrong(message, complaint):
    schemas = {
        "ipvsadm": {"argv": ("list[str]", True), "stdin": ("str?", False)},
        "prefill": {"count": ("int", True)},
        "stats": {},
    }
    problem = check_request(message, schemas)
    assert problem is not None and complaint in problem


def test_check_request_accepts_a_good_request():
    schemas = {"ipvsadm": {"argv": ("list[str]", True), "stdin": ("str?", False)}}
    assert check_request({"op": "ipvsadm", "argv": ["-L"], "stdin": None}, schemas) is None
