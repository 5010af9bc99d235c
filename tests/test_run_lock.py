"""One run per run.output_dir (qcrd_ray/run_lock.py): a live holder refuses a second run, a dead one's lock is
taken over. Fast: no Ray; the other run is a sleeping subprocess."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qcrd_ray.run_lock import RunLock, RunLockedError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(run_dir: Path, pid: int, host: str | None = None) -> Path:
    lock = run_dir / ".lock"
    lock.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "2026-01-01T00:00"}))
    return lock


def test_the_lock_names_this_run_and_goes_when_released(tmp_path):
    with RunLock(tmp_path):
        held = json.loads((tmp_path / ".lock").read_text())
        assert (held["pid"], held["host"]) == (os.getpid(), socket.gethostname())
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # the file written aside is gone
    assert list(tmp_path.iterdir()) == []


def test_a_second_run_is_refused_while_the_first_holds_the_lock(tmp_path, sleeper):
    with RunLock(tmp_path), pytest.raises(RunLockedError, match=f"pid {os.getpid()} on host"):
        RunLock(tmp_path).__enter__()
    lock = write_lock(tmp_path, sleeper.pid)
    with pytest.raises(RunLockedError) as refused:
        RunLock(tmp_path).__enter__()
    assert f"pid {sleeper.pid} on host {socket.gethostname()}, started 2026-01-01T00:00" in str(refused.value)
    assert str(lock) in str(refused.value) and "\n" not in str(refused.value)
    assert json.loads(lock.read_text())["pid"] == sleeper.pid  # the other run's lock is left alone


def test_a_dead_runs_lock_is_taken_over_saying_so(tmp_path, capsys):
    pid = dead_pid()
    write_lock(tmp_path, pid)
    with RunLock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    out = capsys.readouterr().out
    assert f"[qcrd] taking over the lock of a dead run (pid {pid} on host {socket.gethostname()}" in out
    assert not (tmp_path / ".lock").exists()


def test_a_reused_pid_is_not_the_run_that_took_the_lock(tmp_path, sleeper, capsys):
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc: a process's start time is unknown")
    lock = write_lock(tmp_path, sleeper.pid)
    lock.write_text(json.dumps({**json.loads(lock.read_text()), "start_ticks": "1"}))
    with RunLock(tmp_path):
        assert "taking over the lock of a dead run" in capsys.readouterr().out


def test_a_lock_from_another_host_is_refused_with_how_to_take_it_over(tmp_path):
    lock = write_lock(tmp_path, os.getpid(), host="elsewhere.example")
    with pytest.raises(RunLockedError, match=f"on host elsewhere.example.*delete {lock}"):
        RunLock(tmp_path).__enter__()


def test_a_corrupt_lock_is_taken_over(tmp_path, capsys):
    (tmp_path / ".lock").write_text('{"pid": ')
    with RunLock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert "taking over the unreadable lock" in capsys.readouterr().out


def test_release_leaves_a_lock_that_another_run_took_over(tmp_path):
    with RunLock(tmp_path):
        other = write_lock(tmp_path, dead_pid())
    assert other.exists()


def test_the_driver_refuses_a_held_run_dir_in_one_line_before_ray(tmp_path, sleeper):
    out = tmp_path / "run"
    out.mkdir()
    write_lock(out, sleeper.pid)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.distill", "--config", "configs/tiny.yaml", "--set", f"run.output_dir={out}"],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert f"pid {sleeper.pid} on host" in proc.stderr
    assert "Started a local Ray instance" not in proc.stdout + proc.stderr
    assert [p.name for p in out.iterdir()] == [".lock"]
    print(f"refused in {time.monotonic() - started:.1f} s")
