"""Kept daemon logs (runtime/logs.py): one directory per run outside the run's state, the
oldest pruned past a count or a size, an experiment point's kept with it, files capped."""

import os
import time

from testbed.runtime import logs


def make_run_logs(root, name: str, size: int, age_s: float) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / logs.MARKER).touch()
    (d / "d1.director.log").write_bytes(b"x" * size)
    old = time.time() - age_s
    os.utime(d, (old, old))


def test_a_run_gets_a_directory_under_the_log_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LVS_TESTBED_LOGDIR", str(tmp_path / "kept"))
    monkeypatch.delenv("LVS_TESTBED_LOGS_IN", raising=False)
    path = logs.new_log_dir("up-dr-1")
    assert path == tmp_path / "kept" / "up-dr-1" and (path / logs.MARKER).exists()


def test_an_experiment_points_logs_go_with_its_results(tmp_path, monkeypatch):
    monkeypatch.setenv("LVS_TESTBED_LOGDIR", str(tmp_path / "kept"))
    monkeypatch.setenv("LVS_TESTBED_LOGS_IN", str(tmp_path / "results" / "p1" / "logs"))
    assert logs.new_log_dir("exp-1") == tmp_path / "results" / "p1" / "logs" / "exp-1"
    assert not (tmp_path / "kept").exists()


def test_prune_removes_the_oldest_past_a_count_and_a_size(tmp_path):
    for i in range(5):
        make_run_logs(tmp_path, f"run{i}", 100, age_s=100 - i)  # run0 is the oldest
    (tmp_path / "not-ours").mkdir()
    removed = logs.prune(tmp_path, keep_runs=3, keep_bytes=10**9)
    assert [p.name for p in removed] == ["run0", "run1"]
    removed = logs.prune(tmp_path, keep_runs=3, keep_bytes=250)
    assert [p.name for p in removed] == ["run2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-ours", "run3", "run4"]


def test_a_file_past_the_cap_keeps_its_tail_as_dot_1_and_starts_again(tmp_path):
    log = tmp_path / "d1.vrrp.log"
    with open(log, "ab") as daemon:  # the daemon's own descriptor, O_APPEND
        daemon.write(b"a" * 300)
        daemon.flush()
        assert not logs.cap_file(log, max_bytes=1000)
        daemon.write(b"b" * 800)
        daemon.flush()
        assert logs.cap_file(log, max_bytes=1000)
        daemon.write(b"after\n")
        daemon.flush()
    assert (tmp_path / "d1.vrrp.log.1").read_bytes() == b"a" * 300 + b"b" * 800
    assert log.read_bytes() == b"after\n"


def test_log_cap_checks_every_log_of_its_directory(tmp_path):
    (tmp_path / "a.log").write_bytes(b"x" * 50)
    (tmp_path / "b.log").write_bytes(b"x" * 5)
    cap = logs.LogCap(tmp_path, max_bytes=10)
    cap.check()
    assert cap.cuts == 1 and (tmp_path / "a.log.1").exists() and not (tmp_path / "b.log.1").exists()
