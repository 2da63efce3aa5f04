"""keepalived's rules for running scripts (testbed.runtime.scripts), against a fake file
system: who runs a script, when it is disabled (missing, not executable, unsafe with
enable_script_security), how its argv is built; and real runs with timeouts."""

from __future__ import annotations

import os
import stat
import time

import pytest

from testbed.runtime.scripts import (
    DEFAULT_SCRIPT_USER,
    PreparedScript,
    ScriptPolicy,
    path_unsafe,
    prepare,
    run,
)

DIR = stat.S_IFDIR | 0o755
FILE = stat.S_IFREG | 0o755


class FakeSystem:
    """Paths with (mode, uid, gid); users and groups by name; PATH lookups; file heads."""

    def __init__(self, users: dict[str, tuple[int, int]] | None = None) -> None:
        self.files: dict[str, tuple[int, int, int]] = {"/": (DIR | stat.S_ISVTX, 0, 0)}
        self.users = {"root": (0, 0), **(users or {})}
        self.groups = {"root": 0, "nogroup": 65534}
        self.heads: dict[str, bytes] = {}
        self.ids = (0, 0)

    def add(self, path: str, mode: int = FILE, uid: int = 0, gid: int = 0) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            self.files.setdefault("/" + "/".join(parts[:i]), (DIR, 0, 0))
        self.files[path] = (mode, uid, gid)
        self.heads.setdefault(path, b"#!/bin/sh")

    def lstat(self, path: str) -> os.stat_result:
        if path not in self.files:
            raise FileNotFoundError(2, "No such file or directory")
        mode, uid, gid = self.files[path]
        return os.stat_result((mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))

    stat = lstat

    def realpath(self, path: str) -> str:
        self.lstat(path)
        return path

    def user(self, name: str) -> tuple[int, int] | None:
        return self.users.get(name)

    def group(self, name: str) -> int | None:
        return self.groups.get(name)

    def which(self, name: str) -> str | None:
        path = f"/usr/bin/{name}"
        return path if path in self.files else None

    def head(self, path: str) -> bytes:
        return self.heads.get(path, b"")

    def own_ids(self) -> tuple[int, int]:
        return self.ids


def test_the_default_user_is_keepalived_script_when_it_exists():
    system = FakeSystem({DEFAULT_SCRIPT_USER: (999, 999)})
    system.add("/usr/local/bin/check")
    outcome = prepare("/usr/local/bin/check arg", None, None, ScriptPolicy(), system)
    assert outcome.script is not None
    assert (outcome.script.uid, outcome.script.gid, outcome.script.user) == (
        999,
        999,
        DEFAULT_SCRIPT_USER,
    )
    assert outcome.warnings == []


def test_without_keepalived_script_root_runs_it_and_keepalived_says_so():
    system = FakeSystem()
    system.add("/usr/local/bin/check")
    outcome = prepare("/usr/local/bin/check", None, None, ScriptPolicy(), system)
    assert outcome.script is not None and outcome.script.uid is None  # as the daemon: root
    assert "does not exist - please create" in outcome.warnings[0]


def test_script_user_and_a_scripts_own_user():
    system = FakeSystem({"nobody": (65534, 65534), "daemon": (1, 1)})
    system.add("/bin/x")
    policy = ScriptPolicy("nobody", "root")
    outcome = prepare("/bin/x", None, None, policy, system)
    assert (outcome.script.uid, outcome.script.gid) == (65534, 0)
    assert prepare("/bin/x", "daemon", None, policy, system).script.uid == 1
    unknown = prepare("/bin/x", "nosuchuser", None, policy, system)
    assert unknown.script is None and "does not exist - disabling" in unknown.warnings[0]


def test_missing_and_not_executable_scripts_are_disabled():
    system = FakeSystem({"nobody": (65534, 65534)})
    system.add("/etc/keepalived/notify.sh", stat.S_IFREG | 0o744)  # only the owner may run it
    assert prepare("/nope.sh", None, None, ScriptPolicy(), system).script is None
    assert (
        prepare("nope", None, None, ScriptPolicy(), system)
        .warnings[-1]
        .startswith("cannot find script nope in path")
    )
    policy = ScriptPolicy("nobody")
    outcome = prepare("/etc/keepalived/notify.sh", None, None, policy, system)
    assert (
        outcome.script is None and "not executable for uid:gid 65534:65534" in outcome.warnings[0]
    )


def test_unsafe_paths_warn_without_security_and_disable_with_it():
    system = FakeSystem()
    system.add("/home/user/check.sh", uid=1000)  # a user's own script, run as root
    lax = prepare("/home/user/check.sh", "root", None, ScriptPolicy(), system)
    assert lax.script is not None and lax.insecure
    assert "owned by uid 1000" in lax.warnings[0]
    strict = prepare("/home/user/check.sh", "root", None, ScriptPolicy(security=True), system)
    assert strict.script is None and "disabling" in strict.warnings[0]


def test_path_security_follows_keepalived():
    system = FakeSystem()
    system.add("/tmp", DIR | 0o777 | stat.S_ISVTX)  # world-writable but sticky: fine
    system.add("/tmp/ok.sh")
    system.add("/srv", DIR | 0o777)  # world-writable, no sticky bit
    system.add("/srv/bad.sh")
    system.add("/opt/g.sh", FILE | 0o020, gid=100)  # group-writable by a non-root group
    system.add("/opt/r.sh", FILE | 0o020, gid=0)  # group-writable by root's group: fine
    assert path_unsafe("/tmp/ok.sh", system) is None
    assert "writable" in path_unsafe("/srv/bad.sh", system)
    assert "writable" in path_unsafe("/opt/g.sh", system)
    assert path_unsafe("/opt/r.sh", system) is None


def test_argv_forms():
    system = FakeSystem()
    system.add("/usr/bin/killall")
    system.add("/bin/notify", FILE)
    system.heads["/bin/notify"] = b"\x7fELF"
    system.add("/bin/plain")  # no #! line
    system.heads["/bin/plain"] = b"echo"
    killall = prepare("killall -0 sshd", None, None, ScriptPolicy(), system).script
    assert killall.argv() == ["/usr/bin/killall", "-0", "sshd"]  # looked up in PATH
    notify = prepare("/bin/notify --x", None, None, ScriptPolicy(), system).script
    assert notify.argv(("INSTANCE", "VI 1")) == ["/bin/notify", "--x", "INSTANCE", "VI 1"]
    assert prepare("/bin/plain a", None, None, ScriptPolicy(), system).script.argv() == [
        "/bin/sh",
        "/bin/plain",
        "a",
    ]
    opener = prepare("</dev/tcp/127.0.0.1/80", None, None, ScriptPolicy(), system).script
    assert opener.argv(("GROUP", "G 1")) == [
        "/bin/sh",
        "-c",
        "</dev/tcp/127.0.0.1/80 GROUP 'G 1'",
    ]
    assert prepare("'unbalanced", None, None, ScriptPolicy(), system).script is None


def sh(command: str) -> PreparedScript:
    return PreparedScript(command, ("/bin/sh", "-c", command), True, None, None, "root")


def test_run_returns_the_exit_status_and_kills_at_the_timeout():
    assert run(sh("exit 3"), 5.0)[0] == 3
    started = time.monotonic()
    status, what = run(sh("sleep 30"), 0.3)
    assert status is None and "timed out" in what
    assert time.monotonic() - started < 5


@pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root")
def test_run_as_another_user():
    import pwd

    nobody = pwd.getpwnam("nobody")
    prepared = PreparedScript(
        "id -u",
        ("/bin/sh", "-c", f"test $(id -u) = {nobody.pw_uid}"),
        False,
        nobody.pw_uid,
        nobody.pw_gid,
        "nobody",
    )
    assert run(prepared, 5.0)[0] == 0
