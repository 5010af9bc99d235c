"""One run per ``run.output_dir``: a lock file, ``{run_dir}/.lock``, naming the run that holds the directory.

Two runs writing one directory would interleave manifests, checkpoints and metrics, and a ``--resume`` of either
would continue a mix of both. So the driver takes this lock before it writes anything there, and a second run is
refused at once, naming the holder's pid, host and start time. The lock of a process that is gone (a killed run,
about to be resumed) is taken over, saying so, and so is an unreadable one; one from another host cannot be
checked from here, so it is refused with how to take it over. The file is written aside, then hard-linked into
place, so no reader sees it half-written.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any


class RunLockedError(RuntimeError):
    """Another run holds the run directory."""


def _start_ticks(pid: int) -> str | None:
    """When ``pid`` started (Linux: clock ticks since boot); None where unknown, gone or a zombie."""
    try:
        state, *fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if state == "Z" else fields[18]


def _alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` still runs and is the process that took the lock (not a later one given its pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    if not Path("/proc/self/stat").exists():
        return True  # no /proc: the pid is all there is to go by
    now = _start_ticks(pid)
    return now is not None and (started is None or now == started)


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir`` for this process; RunLockedError if a live run holds it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ".lock"
        now = datetime.now().astimezone().isoformat(timespec="seconds")
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": now}
        self.owner |= {"start_ticks": _start_ticks(os.getpid()), "command": shlex.join(sys.argv)}

    def __enter__(self) -> RunLock:
        aside = self.path.with_name(f".lock.{os.getpid()}")
        aside.write_text(json.dumps(self.owner) + "\n")
        try:
            for _ in range(3):
                try:
                    os.link(aside, self.path)
                    return self
                except FileExistsError:
                    self._take_over_or_refuse()
        finally:
            aside.unlink()
        raise RunLockedError(f"{self.path}: other runs keep taking this lock")

    def _take_over_or_refuse(self) -> None:
        try:
            other = json.loads(self.path.read_text())
            who = f"pid {int(other['pid'])} on host {other['host']}, started {other.get('started')}"
        except FileNotFoundError:
            return  # released meanwhile: try again
        except (OSError, ValueError, TypeError, KeyError) as err:
            print(f"[qcrd] taking over the unreadable lock {self.path} ({type(err).__name__}: {err})", flush=True)
        else:
            if other["host"] != self.owner["host"]:
                raise RunLockedError(
                    f"{self.path.parent} is held by another run ({who}) that this host cannot check; "
                    f"if it is over, delete {self.path}"
                )
            if _alive(int(other["pid"]), other.get("start_ticks")):
                raise RunLockedError(f"{self.path.parent} is in use by another run ({who}; lock {self.path})")
            print(f"[qcrd] taking over the lock of a dead run ({who})", flush=True)
        self.path.unlink(missing_ok=True)

    def __exit__(self, *exc: Any) -> None:
        """Remove the lock if it is still this run's (never that of a run that took it over)."""
        try:
            if json.loads(self.path.read_text()) == self.owner:
                self.path.unlink()
        except (OSError, ValueError):
            pass
