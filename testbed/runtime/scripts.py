"""Running keepalived's scripts as keepalived does (its core/notify.c): who runs them, whether
they may run at all, and the argv.

For every notify, track (``vrrp_script``), MISC_CHECK and quorum script, once at start:

* **the user**: the script's own ``USER [GROUP]``, else ``global_defs``'s ``script_user``,
  else ``keepalived_script`` when that user exists, else the daemon's own user (root), with
  keepalived's warning that ``keepalived_script`` should be created;
* **found and executable**: a first word without a ``/`` is looked up in ``PATH``; a script
  that is missing, not a regular file or not executable by its user is **disabled** with a
  warning (a disabled track script is dropped from the instances tracking it, a disabled
  MISC_CHECK from its real server), not run and failing at every interval;
* **security** (when it runs as root, or is set-uid/gid root): every directory of its path
  and the file itself must be owned by root and not writable by group (unless the group is
  root) or others (a directory with the sticky bit, like /tmp, is fine). With
  ``enable_script_security`` an unsafe script is disabled; without, it runs and a warning
  says so, and one more warning says scripts run without script security, as keepalived's
  "SECURITY VIOLATION" does;
* **the argv**: an executable file is exec'd with the script's words (``notify`` adds its
  four arguments); a file without ``#!`` or ELF header goes to ``/bin/sh FILE ...``; a line
  starting with ``<`` and a path (a file-open test, ``</dev/tcp/host/port``) goes to
  ``/bin/sh -c``.

Everything the checks read from the system goes through a `ScriptSystem`, so the rules are
unit-tested without root; `LinuxScriptSystem` is the real one.

`spawn`, `run` and `kill_group` start a prepared script as its user in a process group of its
own; `RunningScripts` reaps the notify scripts a daemon leaves running.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

SHELL = "/bin/sh"
DEFAULT_SCRIPT_USER = "keepalived_script"
TERM_GRACE_S = 2.0  # keepalived: SIGTERM, then SIGKILL 2 s later


class ScriptSystem(Protocol):
    """What the checks read from the machine."""

    def lstat(self, path: str) -> os.stat_result: ...

    def stat(self, path: str) -> os.stat_result: ...

    def realpath(self, path: str) -> str: ...

    def user(self, name: str) -> tuple[int, int] | None: ...

    def group(self, name: str) -> int | None: ...

    def which(self, name: str) -> str | None: ...

    def head(self, path: str) -> bytes: ...

    def own_ids(self) -> tuple[int, int]: ...


class LinuxScriptSystem:
    """`ScriptSystem` on this machine."""

    def lstat(self, path: str) -> os.stat_result:
        return os.lstat(path)

    def stat(self, path: str) -> os.stat_result:
        return os.stat(path)

    def realpath(self, path: str) -> str:
        return os.path.realpath(path, strict=True)

    def user(self, name: str) -> tuple[int, int] | None:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        return entry.pw_uid, entry.pw_gid

    def group(self, name: str) -> int | None:
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            return None

    def which(self, name: str) -> str | None:
        return shutil.which(name)

    def head(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read(4)

    def own_ids(self) -> tuple[int, int]:
        return os.geteuid(), os.getegid()


@dataclass(frozen=True)
class ScriptPolicy:
    """``global_defs``'s ``script_user USER [GROUP]`` and ``enable_script_security``."""

    script_user: str | None = None
    script_group: str | None = None
    security: bool = False


@dataclass(frozen=True)
class PreparedScript:
    """A script that may run: its base argv, whether extra arguments go into a shell string,
    and the uid/gid it runs as (None: as the daemon)."""

    command: str
    base: tuple[str, ...]
    shell_string: bool
    uid: int | None
    gid: int | None
    user: str

    def argv(self, extra: Sequence[str] = ()) -> list[str]:
        if self.shell_string:
            return [*self.base[:-1], " ".join([self.base[-1], *(shlex.quote(a) for a in extra)])]
        return [*self.base, *extra]


@dataclass
class Preparation:
    """The outcome for one script: prepared (or None: disabled) and what to tell the user."""

    script: PreparedScript | None
    warnings: list[str]
    insecure: bool = False  # unsafe path (run anyway when security is off)


def _run_as(
    user: str | None, group: str | None, policy: ScriptPolicy, system: ScriptSystem
) -> tuple[tuple[int, int, str] | None, list[str], str | None]:
    """(uid, gid, name) to run as, warnings, or an error that disables the script."""
    warnings: list[str] = []
    name, group_name = user, group
    if name is None and policy.script_user is not None:
        name, group_name = policy.script_user, policy.script_group
    if name is None:
        found = system.user(DEFAULT_SCRIPT_USER)
        if found is not None:
            return (*found, DEFAULT_SCRIPT_USER), warnings, None
        uid, gid = system.own_ids()
        warnings.append(
            f"default user '{DEFAULT_SCRIPT_USER}' for script execution does not exist - "
            "please create (scripts run as root)"
        )
        return (uid, gid, "root" if uid == 0 else str(uid)), warnings, None
    ids = system.user(name)
    if ids is None:
        return None, warnings, f"user '{name}' does not exist"
    uid, gid = ids
    if group_name is not None:
        found_gid = system.group(group_name)
        if found_gid is None:
            return None, warnings, f"group '{group_name}' does not exist"
        gid = found_gid
    return (uid, gid, name), warnings, None


def path_unsafe(path: str, system: ScriptSystem) -> str | None:
    """keepalived's check_security(): why ``path`` could be changed by a non-root user (or is
    not a proper script path), else None."""
    parts = [p for p in path.split("/") if p]
    prefixes = ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
    for i, prefix in enumerate(prefixes):
        last = i == len(prefixes) - 1
        try:
            st = system.lstat(prefix)
        except OSError:
            return f"'{prefix}' cannot be found"
        if not last and not stat.S_ISDIR(st.st_mode):
            return f"'{prefix}' is not a directory"
        if last and not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            return f"'{prefix}' is not a regular file"
        writable = (st.st_gid and st.st_mode & stat.S_IWGRP) or st.st_mode & stat.S_IWOTH
        sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_uid != 0:
            return f"'{prefix}' is owned by uid {st.st_uid}, not root"
        if writable and not sticky_dir:
            return f"'{prefix}' is writable by a non-root user"
    return None


def _executable(st: os.stat_result, uid: int, gid: int) -> bool:
    if uid == 0:
        return bool(st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def prepare(
    command: str,
    user: str | None,
    group: str | None,
    policy: ScriptPolicy,
    system: ScriptSystem,
) -> Preparation:
    """Decide how (and whether) ``command`` runs; see the module docstring."""
    run_as, warnings, error = _run_as(user, group, policy, system)
    if error is not None or run_as is None:
        return Preparation(None, [f"script '{command}': {error} - disabling"])
    uid, gid, name = run_as
    ids = (None, None) if (uid, gid) == system.own_ids() else (uid, gid)
    stripped = command.lstrip()
    if stripped.startswith("<") and stripped[1:].lstrip(" \t").startswith("/"):
        prepared = PreparedScript(command, (SHELL, "-c", command), True, *ids, name)
        return Preparation(prepared, warnings)
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return Preparation(None, [*warnings, f"script '{command}': {exc} - disabling"])
    if not words:
        return Preparation(None, [*warnings, "an empty script - disabling"])
    path = words[0]
    if "/" not in path:
        found = system.which(path)
        if found is None:
            return Preparation(None, [*warnings, f"cannot find script {path} in path - disabling"])
        path = found
    try:
        real = system.realpath(path)
        st = system.stat(real)
    except OSError as exc:
        return Preparation(
            None, [*warnings, f"script {path} cannot be accessed ({exc.strerror}) - disabling"]
        )
    if not stat.S_ISREG(st.st_mode) or not _executable(st, uid, gid):
        return Preparation(
            None,
            [*warnings, f"script '{path}' is not executable for uid:gid {uid}:{gid} - disabling"],
        )
    setid_root = (st.st_uid == 0 and st.st_mode & stat.S_ISUID) or (
        st.st_gid == 0 and st.st_mode & stat.S_ISGID
    )
    insecure = False
    if uid == 0 or gid == 0 or setid_root:
        reason = path_unsafe(os.path.abspath(path), system) or (
            path_unsafe(real, system) if real != os.path.abspath(path) else None
        )
        if reason is not None:
            insecure = True
            if policy.security:
                return Preparation(
                    None,
                    [*warnings, f"unsafe permissions for script '{path}': {reason} - disabling"],
                    insecure=True,
                )
            warnings.append(f"unsafe permissions for script '{path}': {reason}")
    try:
        head = system.head(real)
    except OSError:
        head = b""
    base = (path, *words[1:])
    if not head.startswith((b"#!", b"\x7fELF")):
        base = (SHELL, path, *words[1:])  # what exec would refuse (ENOEXEC), sh runs
    return Preparation(PreparedScript(command, base, False, *ids, name), warnings, insecure)


def spawn(
    prepared: PreparedScript, extra: Sequence[str] = (), *, quiet: bool = True
) -> subprocess.Popen:
    """Start ``prepared`` in a process group of its own (so a timeout kills its children
    too), as its user; its output goes to the daemon's log unless ``quiet``."""
    out = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(
        prepared.argv(extra),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        start_new_session=True,
        user=prepared.uid,
        group=prepared.gid,
        extra_groups=[] if prepared.uid is not None else None,
    )


def kill_group(proc: subprocess.Popen, grace_s: float = TERM_GRACE_S) -> None:
    """SIGTERM the script's process group, SIGKILL what is left after ``grace_s``, reap."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass  # unkillable (D state): left to init once we exit


def run(prepared: PreparedScript, timeout_s: float) -> tuple[int | None, str]:
    """Run to completion within ``timeout_s`` (then SIGTERM, SIGKILL: keepalived's misc
    checker does the same); (exit status or None, what happened)."""
    try:
        proc = spawn(prepared)
    except OSError as exc:
        return None, f"cannot run: {exc.strerror or exc}"
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return None, f"timed out after {timeout_s:g} s"
    if rc < 0:
        return None, f"killed by signal {-rc}"
    return rc, f"exited with status {rc}"


class Child(Protocol):
    """A started script (a `subprocess.Popen`, or a fake in the unit tests)."""

    def poll(self) -> int | None: ...

    def kill(self) -> None: ...


class RunningScripts:
    """The notify scripts a daemon started and has not reaped yet. The daemon polls `reap`
    from its loop (a failure is logged, as keepalived's own warning) and, at exit, `wait`s a
    bounded time before killing what is still running."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._children: list[tuple[Child, str]] = []

    def __bool__(self) -> bool:
        return bool(self._children)

    def add(self, child: Child, what: str) -> None:
        self._children.append((child, what))

    def reap(self) -> None:
        running = []
        for child, what in self._children:
            rc = child.poll()
            if rc is None:
                running.append((child, what))
            elif rc != 0:
                self._log.warning("%s exited with status %d", what, rc)
        self._children = running

    def wait(self, timeout_s: float) -> None:
        """Give the running scripts ``timeout_s`` to finish, then kill them."""
        deadline = time.monotonic() + timeout_s
        while self._children and time.monotonic() < deadline:
            time.sleep(0.02)
            self.reap()
        for child, what in self._children:
            self._log.warning("%s still running at exit; killed", what)
            child.kill()
        self._children.clear()
