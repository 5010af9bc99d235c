"""The driver's console: a line as each phase ends, a start line and a heartbeat in a log, a bar on a terminal."""

import io
import time

import pytest

from qcrd_ray import console as console_module
from qcrd_ray.console import Console
from qcrd_ray.metrics import PhaseTimer


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_log_a_phase_has_a_start_line_a_heartbeat_and_an_end_line_with_its_note(monkeypatch):
    monkeypatch.setattr(console_module, "HEARTBEAT_S", 0.05)
    stream = io.StringIO()
    shown = Console(stream)
    assert not shown.bars
    with shown.phase("[qcrd] iteration 1: negatives") as progress:
        progress.expect(10, "questions")
        progress.update(10)
        progress.note = "10 samples"
        time.sleep(0.2)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[qcrd] iteration 1: negatives ..."
    assert any(line.startswith("[qcrd] iteration 1: negatives: still running") for line in lines[1:-1])
    assert lines[-1] == "[qcrd] iteration 1: negatives: 0 s (10 samples)"
    assert progress.done == 10


def test_a_failed_phase_says_so():
    stream = io.StringIO()
    with pytest.raises(RuntimeError), Console(stream).phase("[qcrd] teacher"):
        raise RuntimeError("boom")
    assert stream.getvalue().splitlines()[-1] == "[qcrd] teacher: failed after 0 s"


def test_on_a_terminal_a_bar_counts_and_gives_way_to_the_end_line_and_say_keeps_it_whole():
    stream = Terminal()
    shown = Console(stream)
    assert shown.bars
    with shown.phase("[dss] iteration 2: evaluate") as progress:
        progress.expect(4, "questions")
        progress.update(3)
        shown.say("[dss] a line while the bar runs")
    out = stream.getvalue()
    assert "[dss] iteration 2: evaluate:" in out and "3/4" in out  # the bar, with its count
    assert "[dss] a line while the bar runs\n" in out
    assert out.rstrip("\n").split("\n")[-1].endswith("[dss] iteration 2: evaluate: 0 s")


def test_the_phase_timer_shows_its_phases_on_the_console_and_names_method_and_iteration():
    stream = io.StringIO()
    timer = PhaseTimer(console=Console(stream))
    with timer.phase("train", method="qcrd", iteration=2) as progress:
        progress.note = "120 steps"
    with timer.phase("teacher"):
        pass
    assert stream.getvalue().splitlines() == [
        "[qcrd] iteration 3: train ...",
        "[qcrd] iteration 3: train: 0 s (120 steps)",
        "[qcrd] teacher ...",
        "[qcrd] teacher: 0 s",
    ]
    with PhaseTimer().phase("train") as silent:  # no console: the block still gets its progress
        silent.update(2)
    assert silent.done == 2
