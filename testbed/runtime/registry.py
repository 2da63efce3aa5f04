"""What a testbed run created, recorded on disk as it is created, so it can be removed by id.

Every run (``lvs-testbed up``, an experiment, a test) gets a directory under
``/run/lvs-testbed/<run-id>/`` (``LVS_TESTBED_RUNDIR`` overrides the root). It holds
``resources.jsonl``, one record per created thing: host shells and their network namespaces,
daemons, root-namespace interfaces, Linux and OVS bridges, cgroups. Daemons keep their control
sockets in the same directory (their logs are kept elsewhere, see logs.py).

A run removes its own things in ``finally`` blocks; `clean_run` removes whatever a killed run
left. It touches only what it can prove is its own, never by a number the kernel hands out
again:

- a process by pid *and* start time (a recycled pid is left alone);
- the processes inside a host's network namespace, which the run *holds* for its whole life
  by bind-mounting it on ``<run dir>/netns/<host>``: a held namespace cannot be freed, so no
  other namespace can have its inode while the mount exists, and a process whose namespace is
  that very one is ours (a namespace inode alone proves nothing: the kernel reuses inodes
  once a namespace is gone);
- the processes in the run's own cgroups (``lvs-testbed/<run-id>/<host>``);
- root-namespace bridges and interfaces that carry the run's tag (OVS ``external_ids``
  ``lvs-testbed-run=<run-id>``, a link's alias ``lvs-testbed-run=<run-id>``): a same-named
  one of another run, or of someone else, is left alone.

It never kills by name and never runs ``mn -c``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from testbed.runtime.cgroup import remove_group_dirs

DEFAULT_ROOT = Path("/run/lvs-testbed")
RESOURCES = "resources.jsonl"
NETNS_DIR = "netns"  # <run dir>/netns/<host>: the bind mounts that hold the hosts' namespaces
TAG_KEY = "lvs-testbed-run"
"""OVS external_ids key and link alias prefix naming the run that made a root-namespace thing."""
COMMAND_TIMEOUT_S = 10.0
MS_BIND, MNT_DETACH = 0x1000, 0x2


def run_root() -> Path:
    return Path(os.environ.get("LVS_TESTBED_RUNDIR", str(DEFAULT_ROOT)))


def proc_starttime(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may hold spaces and parentheses: fields resume after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


NetnsId = tuple[int, int]
"""A network namespace as (device, inode) of its nsfs file: an identity only while something
holds the namespace (an open descriptor, a bind mount, a process in it)."""


def netns_id(pid: int) -> NetnsId | None:
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return (st.st_dev, st.st_ino)


def netns_inode(pid: int) -> int | None:
    ns = netns_id(pid)
    return ns[1] if ns is not None else None


def all_pids() -> Iterable[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def pids_in_netns(ns: NetnsId) -> set[int]:
    """Every process in namespace ``ns``. Only meaningful while ``ns`` is held (see
    `held_netns`): otherwise its inode may already name another namespace."""
    return {pid for pid in all_pids() if netns_id(pid) == ns}


def _nsfs_dev() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def held_netns(path: Path) -> NetnsId | None:
    """The namespace bind-mounted on ``path``, or None if nothing is mounted there (the file
    is then a plain empty file of the run directory, on another device than nsfs)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st.st_dev == _nsfs_dev() else None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def hold_netns_at(pid: int, path: Path) -> None:
    """Bind-mount the network namespace of ``pid`` on ``path`` (as ``ip netns`` does)."""
    path.touch(mode=0o600, exist_ok=True)
    src = f"/proc/{pid}/ns/net".encode()
    if _libc().mount(src, str(path).encode(), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot hold the network namespace of pid {pid} on {path}")


def release_netns_at(path: Path) -> None:
    """Unmount a held namespace (lazily: it is freed when its last user goes) and remove the
    mount point. Raises OSError if it stays mounted."""
    if held_netns(path) is not None and _libc().umount2(str(path).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot release the namespace held on {path}")
    path.unlink(missing_ok=True)


def run_tag(run_id: str) -> str:
    """The alias a run gives the root-namespace links it makes."""
    return f"{TAG_KEY}={run_id}"


@dataclass
class Record:
    kind: str  # owner | process | netns | link | bridge | cgroup | logs
    data: dict

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, **self.data}, sort_keys=True)


@dataclass
class CleanReport:
    killed: list[int] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # same name, not ours: left alone
    logs: str | None = None  # the run's kept log directory, if it recorded one

    def merge(self, other: CleanReport) -> None:
        self.killed += other.killed
        self.removed += other.removed
        self.errors += other.errors
        self.skipped += other.skipped


class Run:
    """A live run: records resources as they are created, and removes them on `cleanup`."""

    def __init__(self, kind: str, root: Path | None = None):
        root = root or run_root()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.id = f"{kind}-{stamp}-{os.getpid()}"
        self.dir = root / self.id
        self.dir.mkdir(parents=True, exist_ok=False, mode=0o700)
        self._file = self.dir / RESOURCES
        self._append(Record("owner", {"pid": os.getpid(), "start": proc_starttime(os.getpid())}))

    def _append(self, record: Record) -> None:
        with self._file.open("a") as f:
            f.write(record.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())

    def record_process(self, pid: int, what: str) -> None:
        self._append(Record("process", {"pid": pid, "start": proc_starttime(pid), "what": what}))

    def hold_netns(self, pid: int, host: str) -> Path:
        """Hold the namespace of host shell ``pid`` for the run's life (a bind mount under the
        run directory); every process in it is then provably ours. Recorded before it is
        mounted, so a run killed in between leaves a record `clean_run` can act on."""
        netns_dir = self.dir / NETNS_DIR
        netns_dir.mkdir(exist_ok=True)
        path = netns_dir / host
        self._append(
            Record(
                "netns",
                {"pid": pid, "start": proc_starttime(pid), "host": host, "mount": str(path)},
            )
        )
        hold_netns_at(pid, path)
        return path

    @property
    def tag(self) -> str:
        return run_tag(self.id)

    def record_link(self, name: str) -> None:
        """An interface in the root namespace (a switch port), tagged with `tag` as alias."""
        self._append(Record("link", {"name": name}))

    def record_bridge(self, name: str, kind: str) -> None:
        """A root-namespace bridge: OVS (tagged in external_ids) or Linux (tagged alias)."""
        self._append(Record("bridge", {"name": name, "type": kind}))

    def record_cgroup(self, dirs: Iterable[Path]) -> None:
        self._append(Record("cgroup", {"dirs": [str(d) for d in dirs]}))

    def record_logs(self, path: Path) -> None:
        """Where the run's daemons log (kept: `clean_run` removes state, not logs)."""
        self._append(Record("logs", {"dir": str(path)}))

    def cleanup(self) -> CleanReport:
        """Remove whatever of ours is still there, then the run directory itself."""
        return clean_run(self.dir, own_pid=os.getpid())


def read_records(run_dir: Path) -> list[Record]:
    records = []
    try:
        text = (run_dir / RESOURCES).read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill -9
        records.append(Record(data.pop("kind"), data))
    return records


def owner_alive(run_dir: Path) -> int | None:
    """The pid of the run's owner if it still runs (same start time), else None."""
    for rec in read_records(run_dir):
        if rec.kind == "owner":
            pid = rec.data["pid"]
            if proc_starttime(pid) == rec.data.get("start"):
                return pid
    return None


def list_runs(root: Path | None = None) -> list[Path]:
    root = root or run_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / RESOURCES).exists())


def _same_process(pid: int, start: int | None) -> bool:
    return start is not None and proc_starttime(pid) == start


def _pids_to_kill(records: list[Record], own_pid: int) -> set[int]:
    """Recorded processes still alive (same start time), every process in a namespace the run
    still holds, and every process in the run's cgroups. A namespace record without a held
    mount (an older record, or a run killed before it mounted) adds nothing: its inode alone
    could name someone else's namespace by now."""
    pids: set[int] = set()
    held: set[NetnsId] = set()
    for rec in records:
        d = rec.data
        if rec.kind in ("process", "netns") and _same_process(d["pid"], d.get("start")):
            pids.add(d["pid"])
        if rec.kind == "netns" and d.get("mount"):
            ns = held_netns(Path(d["mount"]))
            if ns is not None:
                held.add(ns)
        if rec.kind == "cgroup":
            for g in d["dirs"]:
                with contextlib.suppress(FileNotFoundError, ValueError):
                    pids.update(int(x) for x in Path(g, "cgroup.procs").read_text().split())
    if held:
        pids.update(pid for pid in all_pids() if netns_id(pid) in held)
    pids.discard(own_pid)
    pids.discard(os.getpid())
    return pids


def kill_pids(pids: set[int], grace_s: float = 2.0) -> list[int]:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL what is left. Returns the pids signalled."""
    starts = {pid: proc_starttime(pid) for pid in pids}
    alive = {p for p, s in starts.items() if s is not None}
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        alive = {p for p in alive if proc_starttime(p) == starts[p] and not _is_zombie(p)}
        if not alive:
            break
        time.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return sorted(p for p, s in starts.items() if s is not None)


def process_alive(pid: int) -> bool:
    """Running (a killed child not yet reaped is a zombie: not alive)."""
    return proc_starttime(pid) is not None and not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A zombie, or gone: a process being reaped while we read its stat gives ESRCH."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 1, "", f"timed out after {COMMAND_TIMEOUT_S:g} s")
    except OSError as exc:
        return subprocess.CompletedProcess(argv, 1, "", str(exc))


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def link_alias(name: str) -> str | None:
    """A root-namespace interface's alias (``ip link set dev NAME alias ...``), or None."""
    try:
        return Path("/sys/class/net", name, "ifalias").read_text().strip()
    except OSError:
        return None


def ovs_bridge_tag(name: str) -> str | None:
    """The run id in an OVS bridge's external_ids, "" if it has none, None if no such bridge
    (or no OVS to ask)."""
    res = _run(["ovs-vsctl", "--timeout=5", "br-get-external-id", name, TAG_KEY])
    if res.returncode != 0:
        return None
    return res.stdout.strip()


def _remove_bridge(rec: Record, run_id: str, report: CleanReport) -> None:
    name, kind = rec.data["name"], rec.data["type"]
    if kind == "ovs":
        tag = ovs_bridge_tag(name)
        if tag is None:
            return  # gone (or no OVS here)
        if tag != run_id:
            report.skipped.append(f"ovs bridge {name} (not this run's: tag {tag or 'none'!r})")
            return
        res = _run(["ovs-vsctl", "--timeout=5", "--if-exists", "del-br", name])
        if res.returncode == 0:
            report.removed.append(f"ovs bridge {name}")
        else:
            report.errors.append(f"ovs bridge {name}: {res.stderr.strip()}")
        if _link_exists(name) and link_alias(name) in (None, "", run_tag(run_id)):
            _run(["ip", "link", "del", name])  # a userspace datapath leaves its tap behind
        return
    if Path("/sys/class/net", name, "bridge").exists():
        _remove_link(name, run_id, report, what="bridge")


def _remove_link(name: str, run_id: str, report: CleanReport, what: str = "interface") -> None:
    if not _link_exists(name):
        return
    if link_alias(name) != run_tag(run_id):
        report.skipped.append(f"{what} {name} (not tagged as this run's)")
        return
    res = _run(["ip", "link", "del", name])
    if res.returncode == 0:
        report.removed.append(f"{what} {name}")
    elif _link_exists(name):
        report.errors.append(f"{what} {name}: {res.stderr.strip()}")


def clean_run(run_dir: Path, own_pid: int | None = None, grace_s: float = 2.0) -> CleanReport:
    """Remove everything recorded in ``run_dir`` that is provably the run's, then the
    directory: processes first, then tagged bridges, then the held namespaces (their
    interfaces go with them), tagged root-namespace interfaces left over, and cgroups."""
    report = CleanReport()
    records = read_records(run_dir)
    run_id = run_dir.name
    report.logs = next((r.data["dir"] for r in records if r.kind == "logs"), None)
    owner = next((r.data["pid"] for r in records if r.kind == "owner"), None)
    report.killed = kill_pids(
        _pids_to_kill(records, own_pid if own_pid is not None else owner or -1), grace_s
    )
    for rec in records:
        if rec.kind == "bridge":
            _remove_bridge(rec, run_id, report)
    for rec in records:
        if rec.kind == "netns" and rec.data.get("mount"):
            mount = Path(rec.data["mount"])
            try:
                if held_netns(mount) is not None:
                    report.removed.append(f"namespace of {rec.data['host']}")
                release_netns_at(mount)
            except OSError as exc:
                report.errors.append(f"namespace of {rec.data['host']}: {exc}")
    for rec in records:
        if rec.kind == "link":
            _remove_link(rec.data["name"], run_id, report)
    for rec in records:
        if rec.kind == "cgroup":
            dirs = [Path(g) for g in rec.data["dirs"] if Path(g).exists()]
            try:
                remove_group_dirs(dirs)
                report.removed += [f"cgroup {g}" for g in dirs]
            except OSError as exc:
                report.errors.append(f"cgroup {dirs}: {exc}")
    if not report.errors:
        shutil.rmtree(run_dir, ignore_errors=True)
    return report
