"""The run manifest: everything a crashed or stopped run needs to resume after its last completed iteration.

Layout under the run directory::

    manifests/iter_0000.json, iter_0001.json, ...   one per completed iteration
    latest                                          one line: the path of the newest whole manifest

Each manifest is written to a temporary file, fsynced and renamed into place, and only then is ``latest``
(itself written the same way) pointed at it. A crash at any moment therefore leaves ``latest`` naming a whole
manifest, or no ``latest`` at all; stray temporary files are never read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_FORMAT = 1
MANIFEST_DIR = "manifests"
LATEST_MARKER = "latest"


class ManifestError(RuntimeError):
    """A manifest or the ``latest`` marker exists but cannot be used (missing target, corrupt, wrong fields)."""


@dataclass(frozen=True)
class RunManifest:
    """The resumable state of a run after ``completed_iteration`` (-1: no iteration completed yet)."""

    run_name: str
    config_hash: str
    completed_iteration: int = -1
    alpha_disc: float = 0.0  # a3 for the next iteration
    snapshot_ring: dict[str, Any] = field(default_factory=dict)  # schedule.SnapshotRing.to_dict()
    discriminator_version: int = 0  # how many online updates D has had
    discriminator_path: str | None = None
    data_cursor: int = 0  # position in the training stream, so a resume sees the same batches
    rng_state: dict[str, Any] = field(default_factory=dict)  # capture_rng_state()
    teacher_cache_key: str | None = None
    optimizer_state: str | None = None  # the student's DeepSpeed checkpoint: Adam moments carry over
    metrics_history: tuple[dict[str, Any], ...] = ()  # one dict per completed iteration

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["metrics_history"] = list(self.metrics_history)
        return {"format": MANIFEST_FORMAT, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> RunManifest:
        """Build from ``to_dict`` output; raises ManifestError naming ``where`` and the offending field."""
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        fmt = data.pop("format", None)
        if fmt != MANIFEST_FORMAT:
            raise ManifestError(f"{where}: format: expected {MANIFEST_FORMAT}, got {fmt!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ManifestError(f"{where}: {unknown[0]}: unknown field (known: {', '.join(sorted(names))})")
        checks = {
            "run_name": (str, "a string"),
            "config_hash": (str, "a string"),
            "completed_iteration": (int, "an integer"),
            "alpha_disc": ((int, float), "a number"),
            "snapshot_ring": (dict, "an object"),
            "discriminator_version": (int, "an integer"),
            "discriminator_path": ((str, type(None)), "a string or null"),
            "data_cursor": (int, "an integer"),
            "rng_state": (dict, "an object"),
            "teacher_cache_key": ((str, type(None)), "a string or null"),
            "optimizer_state": ((str, type(None)), "a string or null"),
            "metrics_history": (list, "a list of objects"),
        }
        for name, (types_, expected) in checks.items():
            if name not in data:
                if name in ("run_name", "config_hash"):
                    raise ManifestError(f"{where}: {name}: missing")
                continue
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, types_):
                raise ManifestError(f"{where}: {name}: expected {expected}, got {value!r}")
        if "metrics_history" in data:
            data["metrics_history"] = tuple(data["metrics_history"])
        if "alpha_disc" in data:
            data["alpha_disc"] = float(data["alpha_disc"])
        return cls(**data)


def config_hash(config: Any, exclude: tuple[str, ...] = ("cluster",)) -> str:
    """A short stable hash of a config (a ``Config`` or its ``to_dict()``), ignoring top-level ``exclude`` sections.

    ``cluster`` is left out by default: where a run executes does not change what it computes, and a resume on
    another cluster should find its manifest valid.
    """
    raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    kept = {k: v for k, v in raw.items() if k not in exclude}
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def manifest_path(run_dir: str | Path, iteration: int) -> Path:
    return Path(run_dir) / MANIFEST_DIR / f"iter_{iteration:04d}.json"


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself must reach the disk before the marker that depends on it is written.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_manifest(run_dir: str | Path, manifest: RunManifest) -> Path:
    """Write ``manifests/iter_{t:04d}.json`` atomically, then point ``latest`` at it; returns the manifest path."""
    t = manifest.completed_iteration
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise ValueError(f"RunManifest.completed_iteration: a written manifest records an iteration >= 0, got {t!r}")
    run_dir = Path(run_dir)
    path = manifest_path(run_dir, t)
    _atomic_write_text(path, json.dumps(manifest.to_dict(), indent=1, sort_keys=True) + "\n")
    _atomic_write_text(run_dir / LATEST_MARKER, path.relative_to(run_dir).as_posix() + "\n")
    return path


def read_manifest(run_dir: str | Path) -> RunManifest | None:
    """The manifest ``latest`` names, or None when the run has none yet; ManifestError if it cannot be used."""
    run_dir = Path(run_dir)
    marker = run_dir / LATEST_MARKER
    if not marker.is_file():
        return None
    try:
        target = marker.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as err:
        raise ManifestError(f"{marker}: corrupt marker ({err})") from err
    rel = Path(target)
    if not target or rel.is_absolute() or ".." in rel.parts or rel.parts[0] != MANIFEST_DIR:
        raise ManifestError(f"{marker}: expected a path under {MANIFEST_DIR}/, got {target!r}")
    path = run_dir / rel
    if not path.is_file():
        raise ManifestError(f"{marker}: names {path}, which does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: corrupt manifest (not valid JSON: {err})") from err
    return RunManifest.from_dict(data, where=str(path))


# ---------------------------------------------------------------------------------------------------------
# random number generator state, as plain JSON


def capture_rng_state(numpy: bool = False, torch: bool = False) -> dict[str, Any]:
    """Python's ``random`` state, plus numpy's and torch's CPU generator when asked; JSON-serialisable.

    CUDA generators are not captured: GPU sampling is seeded per call by the actors instead.
    """
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {"python": [version, list(internal), gauss_next]}
    if numpy:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    if torch:
        import torch as _torch

        state["torch"] = _torch.get_rng_state().tolist()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``: restores whichever generators ``state`` holds."""
    if "python" in state:
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
    if "numpy" in state:
        import numpy as np

        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch" in state:
        import torch as _torch

        _torch.set_rng_state(_torch.tensor(state["torch"], dtype=_torch.uint8))
