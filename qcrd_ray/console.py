"""What the driver shows while a run works: a line as each phase ends (its counts, rate and seconds) and, while
it runs, a bar whose clock moves, so that a user never waits a minute without a sign of life.

On a terminal the bar (tqdm) redraws every second and gives way to the phase's end line; in a log (a pipe,
``ray job logs``) there is no bar: a start line, a line every ``HEARTBEAT_S`` of a long phase, and the end
line. ``Console.say`` prints a line without breaking a bar.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

HEARTBEAT_S = 30.0  # in a log, a long phase says it is still running this often
RUN_LOG = "run.log"  # in the run directory: what Ray's workers and the libraries print, off the console


class PhaseProgress:
    """A running phase's counts: ``update(n)`` advances its bar; ``note`` is added to its end line."""

    def __init__(self, bar=None) -> None:
        self.bar = bar
        self.done = 0
        self.note = ""

    def expect(self, total: int, unit: str) -> None:
        """The phase's size, once it is known: its bar shows done / total and a rate."""
        if self.bar is not None:
            self.bar.total, self.bar.unit, self.bar.bar_format = total, unit, None  # tqdm's bar, with a rate
            self.bar.refresh()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)


class Console:
    """The driver's own lines on ``stream`` (stdout by default); ``bars=None`` draws bars only on a terminal."""

    def __init__(self, stream: TextIO | None = None, bars: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.bars = self.stream.isatty() if bars is None else bars
        self._bar = None  # the bar drawn now, if any

    def say(self, text: str) -> None:
        """One line, above the bar if one is drawn."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    @contextmanager
    def phase(self, label: str) -> Iterator[PhaseProgress]:
        """Show ``label`` while the block runs; at its end one line: ``label: <seconds> s (<note>)``."""
        started = time.perf_counter()
        stop = threading.Event()
        if self.bars:
            from tqdm.auto import tqdm

            # Until the phase knows its size, its clock alone.
            bar = tqdm(desc=label, bar_format="{desc}: {elapsed}", file=self.stream, leave=False, dynamic_ncols=True)
            self._bar, progress = bar, PhaseProgress(bar)
            ticker = threading.Thread(target=self._tick, args=(stop, bar.refresh, 1.0), daemon=True)
        else:
            progress = PhaseProgress()
            self.say(f"{label} ...")

            def heartbeat() -> None:
                self.say(f"{label}: still running, {time.perf_counter() - started:.0f} s")

            ticker = threading.Thread(target=self._tick, args=(stop, heartbeat, HEARTBEAT_S), daemon=True)
        ticker.start()
        failed = True
        try:
            yield progress
            failed = False
        finally:
            stop.set()
            ticker.join()
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            seconds = time.perf_counter() - started
            note = f" ({progress.note})" if progress.note else ""
            self.say(f"{label}: {'failed after ' if failed else ''}{seconds:.0f} s{note}")

    @staticmethod
    def _tick(stop: threading.Event, action, every_s: float) -> None:
        while not stop.wait(every_s):
            action()
