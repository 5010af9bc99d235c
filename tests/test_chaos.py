"""One trial of the chaos test of resume (benchmarks/chaos.py): a process of a real run killed, the run resumed,
its final student, judge, metrics and teacher cache compared with an unbroken run. Slow: three real runs."""

import pytest

from benchmarks.chaos import run_reference, run_trial


@pytest.mark.slow
def test_a_run_with_a_killed_train_worker_ends_as_the_unbroken_run(tmp_path):
    reference, seconds = run_reference(tmp_path)
    # Seed 2, trial 1 draws a Ray Train worker at 70% of the unbroken run's time: in the QCRD iterations.
    trial = run_trial(1, seed=2, work=tmp_path, reference=reference, reference_s=seconds)
    assert trial.killed.startswith("train worker"), trial
    assert trial.identical, trial
