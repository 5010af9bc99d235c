"""MetricsLogger (JSONL + Ray metrics) and PhaseTimer."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from qcrd_ray.metrics import (
    JUDGE_SCORE_METRIC,
    MetricsLogger,
    PhaseTimer,
    logged_phase_seconds,
    read_metrics,
)


def metric_names(logger: MetricsLogger) -> list[str]:
    """Names of the Ray metrics ``logger`` has created so far (empty when Ray never ran)."""
    return sorted([*logger._gauges, *logger._histograms])


@pytest.fixture(scope="module")
def ray_running():
    """A real local Ray on loopback; reuses one a session fixture already started (and leaves it running)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address="local", num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield ray
    if started_here:
        ray.shutdown()


def test_log_writes_json_lines_in_order(tmp_path):
    path = tmp_path / "sub" / "metrics.jsonl"
    logger = MetricsLogger(path, run="r1", method="qcrd", ray_metrics=False)
    first = logger.log("teacher", samples_per_second=41.3, num_questions=np.int64(1000))
    logger.log("train", iteration=2, loss=np.float32(0.5), losses=np.array([1.0, 2.0]), note="ok", flag=True)
    # Flushed per line: another reader sees both lines before the logger is closed.
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == first
    records = read_metrics(path)
    assert [r["event"] for r in records] == ["teacher", "train"]
    assert records[0]["num_questions"] == 1000 and isinstance(records[0]["num_questions"], int)
    assert records[1] | {"time": 0} == {
        "time": 0,
        "event": "train",
        "iteration": 2,
        "loss": 0.5,
        "losses": [1.0, 2.0],
        "note": "ok",
        "flag": True,
    }
    assert records[0]["time"] <= records[1]["time"]
    assert read_metrics(path, event="train") == records[1:]
    assert metric_names(logger) == []
    logger.close()
    # A second logger on the same file appends (a resumed run keeps its history).
    MetricsLogger(path, ray_metrics=False).log("evaluate", accuracy=0.25)
    assert [r["event"] for r in read_metrics(path)] == ["teacher", "train", "evaluate"]


def test_log_rejects_bad_values(tmp_path):
    logger = MetricsLogger(tmp_path / "m.jsonl", ray_metrics=False)
    with pytest.raises(ValueError, match="'time' is set by the logger"):
        logger.log("x", time=1.0)
    with pytest.raises(TypeError, match="value of 'thing' has type object"):
        logger.log("x", thing=object())
    with pytest.raises(ValueError, match="not an identifier"):
        logger.log("x", **{"a-b": 1})
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        logger.log_scores("positives", [0.5, 1.5])
    logger.close()
    assert not (tmp_path / "m.jsonl").exists()  # nothing invalid reached the file


def test_read_metrics_names_the_bad_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"event": "a"}\n\n{"event": \n')
    with pytest.raises(ValueError, match=r"m.jsonl:3: not a JSON line"):
        read_metrics(path)


def test_log_scores_summarises_into_bins(tmp_path):
    logger = MetricsLogger(tmp_path / "m.jsonl", ray_metrics=False)
    record = logger.log_scores("student_negatives", [0.05, 0.15, 0.15, 0.95, 1.0], iteration=3)
    assert record["event"] == "judge_scores" and record["kind"] == "student_negatives" and record["iteration"] == 3
    assert record["count"] == 5 and record["bin_counts"] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert record["mean"] == pytest.approx(0.46) and record["min"] == 0.05 and record["max"] == 1.0
    assert logger.log_scores("positives", [])["count"] == 0


def test_logger_pickles_without_its_handle(tmp_path):
    logger = MetricsLogger(tmp_path / "m.jsonl", run="r", ray_metrics=False)
    logger.log("a", x=1)
    clone = pickle.loads(pickle.dumps(logger))
    clone.log("b", x=2)
    assert [r["event"] for r in read_metrics(tmp_path / "m.jsonl")] == ["a", "b"]


def test_phase_timer_accumulates_and_logs(tmp_path):
    logger = MetricsLogger(tmp_path / "m.jsonl", ray_metrics=False)
    timer = PhaseTimer(logger)
    with timer.phase("teacher"):
        sum(range(10000))
    timer.add("train", 2.0, iteration=1)
    timer.add("train", 3.0, iteration=2)
    with pytest.raises(RuntimeError), timer.phase("negatives"):
        raise RuntimeError("boom")
    seconds = dict(timer.seconds)
    assert list(seconds) == ["teacher", "train", "negatives"]
    assert seconds["train"] == 5.0 and seconds["teacher"] > 0 and seconds["negatives"] >= 0
    phases = read_metrics(tmp_path / "m.jsonl", event="phase")
    assert [(r["phase"], r["failed"]) for r in phases] == [
        ("teacher", False),
        ("train", False),
        ("train", False),
        ("negatives", True),
    ]
    assert [r["phase_total_seconds"] for r in phases[1:3]] == [2.0, 5.0]
    with pytest.raises(ValueError, match="negative seconds"):
        timer.add("vote", -1.0)


def test_a_resumed_phase_timer_goes_on_from_what_the_earlier_attempts_logged(tmp_path):
    path = tmp_path / "m.jsonl"
    assert logged_phase_seconds(path) == {}
    first = PhaseTimer(MetricsLogger(path, ray_metrics=False))
    first.add("teacher", 4.0)
    first.add("train", 2.0, iteration=0)  # then the run is killed
    resumed = PhaseTimer(MetricsLogger(path, ray_metrics=False), logged_phase_seconds(path))
    resumed.add("train", 3.0, iteration=1)
    assert dict(resumed.seconds) == {"teacher": 4.0, "train": 5.0}
    assert read_metrics(path, event="phase")[-1]["phase_total_seconds"] == 5.0


def test_no_ray_metrics_before_ray_init(tmp_path):
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray session from another fixture is running; this case needs none")
    logger = MetricsLogger(tmp_path / "m.jsonl")
    logger.log("train", loss=1.0)
    logger.log_scores("positives", [0.9])
    assert metric_names(logger) == []


def test_ray_gauges_and_histogram(tmp_path, ray_running):
    from ray.util.metrics import Gauge, Histogram

    logger = MetricsLogger(tmp_path / "m.jsonl", run="run-a", method="qcrd")
    logger.log("teacher", samples_per_second=41.3, note="text is not a gauge", ok=True)
    logger.log("vote", vote_agreement=0.68)
    logger.log("train", method="dss", loss=0.7, iteration=1)
    gauge = logger._gauges["qcrd_loss"]
    logger.log("train", method="dss", loss=float("nan"), iteration=2)  # NaN stays in the file, not in Ray
    logger.log("phase", phase="train", phase_seconds=1.5)
    logger.log("evaluate", accuracy=0.3)
    logger.log_scores("positives", [0.2, 0.8, 0.9], iteration=1)
    logger.log_scores("student_negatives", [0.1])
    assert metric_names(logger) == sorted(
        [
            "qcrd_samples_per_second",
            "qcrd_vote_agreement",
            "qcrd_loss",
            "qcrd_iteration",
            "qcrd_phase_seconds",
            "qcrd_accuracy",
            JUDGE_SCORE_METRIC,
        ]
    )
    assert all(isinstance(g, Gauge) for g in logger._gauges.values())
    assert isinstance(logger._histograms[JUDGE_SCORE_METRIC], Histogram)
    assert logger._gauges["qcrd_loss"] is gauge  # created once, reused
    assert [r["event"] for r in read_metrics(tmp_path / "m.jsonl")] == [
        "teacher",
        "vote",
        "train",
        "train",
        "phase",
        "evaluate",
        "judge_scores",
        "judge_scores",
    ]
