"""What a testbed run created, recorded on disk as it is created, so it can be removed by id.

Every run (``lvs-testbed up``, an experiment, a test) gets a directory under
``/run/lvs-testbed/<run-id>/`` (``LVS_TESTBED_RUNDIR`` overrides the root). It holds
``resources.jsonl``, one record per created thing: host shells and their network namespaces,
daemons, root-namespace interfaces, Linux and OVS bridges, cgroups. Daemons keep their control
sockets and logs in the same directory.

A run removes its own things in ``finally`` blocks; `clean_run` removes whatever a killed run
left. It touches only what was recorded: processes by pid *and* start time (a recycled pid is
left alone), processes inside a recorded namespace (identified by its inode and verified by the
host's interface names), recorded bridges, interfaces and cgroups. It never kills by name and
never runs ``mn -c``.
"""

from __future__ import annotations

import contextlib
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


def netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def netns_intf_names(pid: int) -> set[str]:
    """Interface names in the network namespace of ``pid``."""
    try:
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return set()
    return {line.split(":", 1)[0].strip() for line in lines}


def all_pids() -> Iterable[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def pids_in_netns(inode: int) -> set[int]:
    """Every process whose network namespace is ``inode``."""
    return {pid for pid in all_pids() if netns_inode(pid) == inode}


@dataclass
class Record:
    kind: str  # process | netns | link | bridge | cgroup
    data: dict

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, **self.data}, sort_keys=True)


@dataclass
class CleanReport:
    killed: list[int] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def merge(self, other: CleanReport) -> None:
        self.killed += other.killed
        self.removed += other.removed
        self.errors += other.errors


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

    def record_netns(self, pid: int, host: str) -> None:
        """A host's namespace, held by its shell ``pid``; later processes in it are ours too."""
        self._append(
            Record(
                "netns",
                {"pid": pid, "start": proc_starttime(pid), "inode": netns_inode(pid), "host": host},
            )
        )

    def record_link(self, name: str) -> None:
        """An interface in the root namespace (a switch port)."""
        self._append(Record("link", {"name": name}))

    def record_bridge(self, name: str, kind: str) -> None:
        self._append(Record("bridge", {"name": name, "type": kind}))

    def record_cgroup(self, dirs: Iterable[Path]) -> None:
        self._append(Record("cgroup", {"dirs": [str(d) for d in dirs]}))

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
    pids: set[int] = set()
    inodes: dict[int, str] = {}
    for rec in records:
        d = rec.data
        if rec.kind in ("process", "netns") and _same_process(d["pid"], d.get("start")):
            pids.add(d["pid"])
        if rec.kind == "netns" and d.get("inode"):
            inodes[d["inode"]] = d["host"]
        if rec.kind == "cgroup":
            for g in d["dirs"]:
                with contextlib.suppress(FileNotFoundError, ValueError):
                    pids.update(int(x) for x in Path(g, "cgroup.procs").read_text().split())
    if inodes:
        verified: dict[int, bool] = {}
        for pid in all_pids():
            ino = netns_inode(pid)
            if ino not in inodes:
                continue
            if ino not in verified:
                # An inode number can be reused by a later namespace: it is ours only if it
                # still holds this host's interfaces (or none at all, as it is torn down).
                names = netns_intf_names(pid) - {"lo"}
                host = inodes[ino]
                verified[ino] = not names or any(n.startswith(f"{host}-") for n in names)
            if verified[ino]:
                pids.add(pid)
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
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def clean_run(run_dir: Path, own_pid: int | None = None, grace_s: float = 2.0) -> CleanReport:
    """Remove everything recorded in ``run_dir``, then the directory."""
    report = CleanReport()
    records = read_records(run_dir)
    owner = next((r.data["pid"] for r in records if r.kind == "owner"), None)
    report.killed = kill_pids(
        _pids_to_kill(records, own_pid if own_pid is not None else owner or -1), grace_s
    )
    for rec in records:
        d = rec.data
        if rec.kind == "bridge":
            if d["type"] == "ovs":
                res = _run(["ovs-vsctl", "--timeout=5", "--if-exists", "del-br", d["name"]])
                if res.returncode == 0:
                    report.removed.append(f"ovs bridge {d['name']}")
                elif _link_exists(d["name"]):
                    report.errors.append(f"ovs bridge {d['name']}: {res.stderr.strip()}")
            elif Path("/sys/class/net", d["name"], "bridge").exists():
                res = _run(["ip", "link", "del", d["name"]])
                (report.removed if res.returncode == 0 else report.errors).append(
                    f"bridge {d['name']}"
                )
    for rec in records:
        if rec.kind == "link" and _link_exists(rec.data["name"]):
            res = _run(["ip", "link", "del", rec.data["name"]])
            if res.returncode == 0:
                report.removed.append(f"interface {rec.data['name']}")
            elif _link_exists(rec.data["name"]):
                report.errors.append(f"interface {rec.data['name']}: {res.stderr.strip()}")
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
