"""The run's metrics: one JSON line per event in ``metrics.jsonl``, mirrored to Ray's metrics when Ray runs.

``MetricsLogger.log("train", method="qcrd", iteration=3, loss=0.41)`` appends
``{"time": ..., "event": "train", "method": "qcrd", "iteration": 3, "loss": 0.41}`` and, when Ray is
initialised in this process, sets the gauges ``qcrd_iteration`` and ``qcrd_loss``: every numeric value ``key``
goes to the gauge ``qcrd_<key>``, tagged with ``run``, ``method`` and ``phase``; ``WATCHED_METRICS`` lists
those a user watches (the Grafana dashboard's panels, ``qcrd_ray/grafana.py``). ``phase`` is
the event's name unless a ``phase`` value is given. Judge scores go to one histogram,
``qcrd_judge_score``, tagged by kind (positives, student_negatives, teacher_negatives).

Ray is never imported here at module top: the logger looks for it in ``sys.modules`` at each call, so the core
stays importable and testable without it, and a logger made before ``ray.init`` starts mirroring afterwards.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO

from qcrd_ray.console import Console, PhaseProgress

# Tags every gauge carries; a value not given is reported as the empty string (Ray requires all tag keys).
GAUGE_TAG_KEYS = ("run", "method", "phase")
JUDGE_SCORE_METRIC = "qcrd_judge_score"
JUDGE_SCORE_BOUNDARIES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
_RESERVED_KEYS = ("time", "event")
# What a run exports that a user watches, as Prometheus sees it (Ray prefixes "ray_"): the Grafana dashboard
# plots these, and tests/test_prometheus.py finds each on a live run's scrape endpoint.
WATCHED_METRICS = {
    "qcrd_samples_per_second": "teacher samples per second (the teacher phase)",
    "qcrd_mean_agreement": "the teacher's mean vote agreement: the share of a question's samples in its majority",
    "qcrd_self_consistency_accuracy": "the voted teacher's accuracy on the training questions",
    "qcrd_iteration": "the distillation iteration a method is in",
    "qcrd_phase_seconds": "seconds of the last block of each phase (tag phase)",
    "qcrd_loss": "a method's training loss over the iteration",
    "qcrd_loss_pred": "its label-prediction loss",
    "qcrd_loss_cl": "QCRD's contrastive loss",
    "qcrd_negative_term_active": "the share of QCRD's negatives still inside the margin (their term has a gradient)",
    "qcrd_accuracy": "predict: accuracy after the iteration",
    "qcrd_rationale_accuracy": "accuracy of the answer the student's own rationale ends on",
    "qcrd_judge_auc_minority": "the judge's held-out AUC of positives against the teacher's minority",
    "qcrd_judge_auc_student": "the judge's held-out AUC of positives against the student's samples",
    JUDGE_SCORE_METRIC: "the judge's scores, a histogram tagged by kind (positives, student or teacher negatives)",
}


def _ray_is_running() -> bool:
    """True when this process already imported ray and called ``ray.init`` (never imports ray itself)."""
    ray = sys.modules.get("ray")
    return ray is not None and hasattr(ray, "is_initialized") and bool(ray.is_initialized())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _jsonable(key: str, value: Any) -> Any:
    """``value`` as plain JSON data; numpy/torch scalars become Python numbers, anything else unknown raises."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(key, v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(f"{key}.{k}", v) for k, v in value.items()}
    # numpy and torch values: 0-d ones have .item(), arrays and tensors have .tolist().
    ndim = getattr(value, "ndim", None)
    if ndim == 0 and callable(getattr(value, "item", None)):
        return _jsonable(key, value.item())
    if ndim is not None and callable(getattr(value, "tolist", None)):
        return _jsonable(key, value.tolist())
    raise TypeError(f"qcrd_ray/metrics.py: value of {key!r} has type {type(value).__name__}, which is not JSON data")


class MetricsLogger:
    """Appends events to a JSONL file (the run's ``metrics.jsonl``) and mirrors numbers to ``ray.util.metrics``.

    ``run`` and ``method`` are the default tags of every Ray metric; a ``method=`` or ``phase=`` string given
    to ``log`` overrides them for that event. ``ray_metrics=False`` keeps the logger file-only even under Ray.
    """

    def __init__(self, path: Path, run: str = "", method: str = "", ray_metrics: bool = True) -> None:
        self.path = Path(path)
        self.run = run
        self.method = method
        self.ray_metrics = ray_metrics
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        # Ray metric objects, created once per name and reused (Ray registers each name once per process).
        self._gauges: dict[str, Any] = {}
        self._histograms: dict[str, Any] = {}

    # -- the file ---------------------------------------------------------------------------------------------

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=True)
        with self._lock:
            if self._file is None or self._file.closed:
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line + "\n")
            # Flushed per line so a crashed run still leaves every event it reached on disk.
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # A logger shipped to another process reopens the file there; locks, handles and metrics stay behind.
        state = self.__dict__.copy()
        state.update(_lock=None, _file=None, _gauges={}, _histograms={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- events ------------------------------------------------------------------------------------------------

    def log(self, event: str, **values: Any) -> dict[str, Any]:
        """Append ``{"time", "event", **values}`` as one JSON line; set a Ray gauge per numeric value. Returns the record."""
        return self._log(event, values, gauges=True)

    def log_scores(self, kind: str, scores: list[float], **values: Any) -> dict[str, Any]:
        """Record judge scores (each in [0, 1]) of one kind: a summary line in the file, a Ray histogram.

        The file gets count, mean, min, max and the counts per bin of ``JUDGE_SCORE_BOUNDARIES`` rather than every
        score: an iteration can score many thousands of rationales.
        """
        scores = [float(s) for s in scores]
        bad = [s for s in scores if not 0.0 <= s <= 1.0]
        if bad:
            raise ValueError(f"qcrd_ray/metrics.py: judge scores of {kind!r} must lie in [0, 1], got e.g. {bad[0]!r}")
        counts = [0] * (len(JUDGE_SCORE_BOUNDARIES) + 1)
        for s in scores:
            counts[sum(s > b for b in JUDGE_SCORE_BOUNDARIES)] += 1
        summary: dict[str, Any] = {"kind": kind, "count": len(scores), "bin_counts": counts}
        if scores:
            summary.update(mean=sum(scores) / len(scores), min=min(scores), max=max(scores))
        # No gauges for this summary: the histogram below is the Ray view of these numbers.
        record = self._log("judge_scores", {**summary, **values}, gauges=False)
        if self.ray_metrics and _ray_is_running():
            histogram = self._histogram(JUDGE_SCORE_METRIC)
            tags = {"run": self.run, "method": str(values.get("method", self.method)), "kind": kind}
            for s in scores:
                histogram.observe(s, tags=tags)
        return record

    def _log(self, event: str, values: dict[str, Any], gauges: bool) -> dict[str, Any]:
        if not event:
            raise ValueError("qcrd_ray/metrics.py: log() needs a non-empty event name")
        for key in values:
            if key in _RESERVED_KEYS:
                raise ValueError(f"qcrd_ray/metrics.py: {key!r} is set by the logger and cannot be a logged value")
            if not key.isidentifier():
                raise ValueError(f"qcrd_ray/metrics.py: value name {key!r} is not an identifier (it names a metric)")
        record = {"time": time.time(), "event": event}
        record.update({key: _jsonable(key, value) for key, value in values.items()})
        self._write(record)
        if gauges and self.ray_metrics and _ray_is_running():
            tags = self._tags(record, phase=str(values.get("phase", event)))
            for key, value in record.items():
                if key not in _RESERVED_KEYS and _is_number(value) and math.isfinite(value):
                    self._gauge(f"qcrd_{key}").set(float(value), tags=tags)
        return record

    # -- Ray metrics -------------------------------------------------------------------------------------------

    def _tags(self, record: dict[str, Any], phase: str) -> dict[str, str]:
        return {"run": self.run, "method": str(record.get("method", self.method)), "phase": phase}

    def _gauge(self, name: str) -> Any:
        if name not in self._gauges:
            from ray.util.metrics import Gauge  # ray late: only reached once ray runs, the core runs without it

            self._gauges[name] = Gauge(name, description=f"QCRD {name[len('qcrd_') :]}", tag_keys=GAUGE_TAG_KEYS)
        return self._gauges[name]

    def _histogram(self, name: str) -> Any:
        if name not in self._histograms:
            from ray.util.metrics import Histogram  # ray late: only reached once ray runs, the core runs without it

            self._histograms[name] = Histogram(
                name,
                description="QCRD judge scores",
                boundaries=JUDGE_SCORE_BOUNDARIES,
                tag_keys=("run", "method", "kind"),
            )
        return self._histograms[name]


def read_metrics(path: Path, event: str | None = None) -> list[dict[str, Any]]:
    """All records of a metrics JSONL file in order (only those of ``event`` when given)."""
    records = []
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not a JSON line ({err.msg})") from err
            if not isinstance(record, dict) or "event" not in record:
                raise ValueError(f"{path}:{number}: expected a JSON object with an 'event' key")
            if event is None or record["event"] == event:
                records.append(record)
    return records


def logged_phase_seconds(path: Path) -> dict[str, float]:
    """Seconds per phase that a metrics file's "phase" records add up to ({} if there is no file): what a
    resumed run's earlier attempts spent, in the order the phases first ran."""
    if not Path(path).exists():
        return {}
    seconds: dict[str, float] = {}
    for record in read_metrics(path, "phase"):
        seconds[record["phase"]] = seconds.get(record["phase"], 0.0) + record["phase_seconds"]
    return seconds


class PhaseTimer:
    """Seconds spent per phase (teacher, vote, negatives, train, ...), accumulated over the run's iterations.

    ``with timer.phase("teacher"): ...`` adds the block's wall time to ``timer.seconds["teacher"]`` and, with a
    logger, logs ``phase_seconds`` (this block) and ``phase_total_seconds`` (so far) under the event "phase".
    """

    def __init__(
        self,
        logger: MetricsLogger | None = None,
        earlier: dict[str, float] | None = None,
        console: Console | None = None,
    ) -> None:
        self.logger = logger
        self.console = console  # shows each phase as it runs (``qcrd_ray.console``); None: silent
        # ``earlier``: what a resumed run's earlier attempts spent (``logged_phase_seconds``).
        self.seconds: dict[str, float] = dict(earlier or {})
        self.current: str | None = None  # the phase running now, as a stopped run names it ("qcrd iteration 3: train")

    @contextmanager
    def phase(self, name: str, **values: Any) -> Iterator[PhaseProgress]:
        """Time the block as phase ``name``; it gets a ``PhaseProgress`` for its counts (shown by the console)."""
        started = time.perf_counter()
        failed = True
        method = str(values.get("method", ""))
        iteration = f"iteration {values['iteration'] + 1}: " if "iteration" in values else ""
        self.current = f"{method} {iteration}{name}" if method else name
        shown = self.console.phase(f"[{method or 'qcrd'}] {iteration}{name}") if self.console else None
        try:
            with shown or nullcontext(PhaseProgress()) as progress:
                yield progress
            failed = False
            self.current = None  # kept when the block raised: a stopped run names the phase it stopped in
        finally:
            # Time spent in a failed phase still counts: the report shows where a crashed run spent its time.
            self.add(name, time.perf_counter() - started, failed=failed, **values)

    def add(self, name: str, seconds: float, failed: bool = False, **values: Any) -> None:
        """Add ``seconds`` measured elsewhere (for instance inside an actor) to phase ``name``."""
        if seconds < 0:
            raise ValueError(f"qcrd_ray/metrics.py: phase {name!r} got negative seconds {seconds!r}")
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        if self.logger is not None:
            self.logger.log(
                "phase",
                phase=name,
                phase_seconds=seconds,
                phase_total_seconds=self.seconds[name],
                failed=failed,
                **values,
            )
