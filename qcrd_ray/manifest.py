"""The run manifest: everything a crashed or stopped run needs to resume after its last completed iteration.

Layout under the run directory::

    manifests/iter_0000.json, iter_0001.json, ...   one per completed iteration
    latest                                          one line: the path of the newest whole manifest

Each manifest is written to a temporary file, fsynced and renamed into place, and only then is ``latest``
(itself written the same way) pointed at it. A crash at any moment therefore leaves ``latest`` naming a whole
manifest, or no ``latest`` at all; stray temporary files are never read. A latest manifest damaged later (a
disk, a hand edit) gives way to the newest older one that is whole, with a warning.

A manifest records the sha256 of every file its checkpoints hold (``files``, paths relative to the run
directory): ``verify_files`` checks them before anything is loaded, and refuses a path outside the run
directory, so a resumed run unpickles only what it wrote itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
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
    config_hash: str  # config_hash(): a resume with another config is refused
    completed_iteration: int = -1
    snapshot_ring: dict[str, Any] = field(default_factory=dict)  # schedule.SnapshotRing.to_dict()
    judge_path: str | None = None  # the judge's save after this iteration (weights, optimizer, random state)
    optimizer_state: str | None = None  # the student's DeepSpeed checkpoint: Adam moments carry over
    metrics_history: tuple[dict[str, Any], ...] = ()  # one dict per completed iteration
    files: dict[str, str] = field(default_factory=dict)  # checkpoint file (relative to the run dir) -> sha256

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
            "snapshot_ring": (dict, "an object"),
            "judge_path": ((str, type(None)), "a string or null"),
            "optimizer_state": ((str, type(None)), "a string or null"),
            "metrics_history": (list, "a list of objects"),
            "files": (dict, "an object of path -> sha256"),
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
        return cls(**data)


# What a resumed run may change: where it runs, and how many iterations it runs (to extend it).
RESUMABLE_KEYS = ("cluster.", "run.iterations")


def _resumable(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)


def flatten_config(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A ``Config.to_dict()`` tree (config.json) as dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and value and key != "vllm_engine_args":
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_hash(config: Any) -> str:
    """A short stable hash of a config (a ``Config`` or its ``to_dict()``), ignoring what a resume may change
    (``RESUMABLE_KEYS``: the cluster, the number of iterations)."""
    raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    kept = {k: v for k, v in flatten_config(raw).items() if not _resumable(k)}
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two ``Config.to_dict()`` trees that a resume may not change."""
    a, b = flatten_config(old), flatten_config(new)
    return sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>") and not _resumable(k))


def check_resumable(manifest: RunManifest, config: Any, where: str | Path) -> None:
    """Raise ManifestError unless ``config`` computes what the run of ``manifest`` computed."""
    if manifest.run_name != config.run.name:
        raise ManifestError(
            f"{where}: --resume: the manifest is run {manifest.run_name!r}, the config names {config.run.name!r}"
        )
    if manifest.config_hash != config_hash(config):
        raise ManifestError(
            f"{where}: --resume: the config differs from the one the run started with (only "
            f"run.iterations and cluster.* may change); start a new run.output_dir"
        )


def manifest_path(run_dir: str | Path, iteration: int) -> Path:
    return Path(run_dir) / MANIFEST_DIR / f"iter_{iteration:04d}.json"


def atomic_write_text(path: Path, text: str) -> None:
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
    atomic_write_text(path, json.dumps(manifest.to_dict(), indent=1, sort_keys=True) + "\n")
    atomic_write_text(run_dir / LATEST_MARKER, path.relative_to(run_dir).as_posix() + "\n")
    return path


def read_manifest(run_dir: str | Path, warn=print) -> RunManifest | None:
    """The manifest ``latest`` names, or None when the run has none yet. When that one cannot be used, the
    newest older manifest that can (``warn`` says so); ManifestError naming the latest when none can."""
    run_dir = Path(run_dir)
    marker = run_dir / LATEST_MARKER
    if not marker.is_file():
        return None
    try:
        return _read_latest(run_dir, marker)
    except ManifestError as err:
        for older in sorted((run_dir / MANIFEST_DIR).glob("iter_*.json"), reverse=True):
            try:
                manifest = _read_one(older)
            except ManifestError:
                continue
            warn(f"[qcrd] {err}; resuming from the previous whole manifest, {older}")
            return manifest
        raise


def _read_latest(run_dir: Path, marker: Path) -> RunManifest:
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
    return _read_one(path)


def _read_one(path: Path) -> RunManifest:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: corrupt manifest (not valid JSON: {err})") from err
    return RunManifest.from_dict(data, where=str(path))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inside(run_dir: Path, path: str | Path, what: str) -> Path:
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(run_dir.resolve()):
        raise ManifestError(f"{what}: {path} is outside the run directory {run_dir}; checkpoints load only from it")
    return resolved


def file_hashes(run_dir: str | Path, paths: list[str], known: dict[str, str] | None = None) -> dict[str, str]:
    """The sha256 of every file under ``paths`` (files or directories inside ``run_dir``), by path relative
    to ``run_dir``: what a manifest records of its checkpoints. ``known``: the previous manifest's hashes,
    reused for the files it already had (a snapshot in the ring is never rewritten while a manifest names it),
    so an iteration hashes only what it wrote."""
    run_dir, known = Path(run_dir).resolve(), known or {}
    hashes = {}
    for path in paths:
        root = _inside(run_dir, path, "manifest")
        for file in sorted([root] if root.is_file() else (p for p in root.rglob("*") if p.is_file())):
            rel = file.relative_to(run_dir).as_posix()
            hashes[rel] = known[rel] if rel in known else _sha256(file)
    return hashes


def verify_files(run_dir: str | Path, manifest: RunManifest, paths: list[str | None]) -> None:
    """Before a resume loads anything: each of ``paths`` (what it will load) lies inside ``run_dir``, and every
    file the manifest recorded is there with its sha256 (ManifestError naming the first that is not)."""
    run_dir = Path(run_dir).resolve()
    for path in paths:
        if path is not None:
            _inside(run_dir, path, "--resume")
    for rel, digest in manifest.files.items():
        file = _inside(run_dir, run_dir / rel, "--resume")
        if not file.is_file():
            raise ManifestError(f"--resume: {file} is missing; the manifest recorded it")
        if _sha256(file) != digest:
            raise ManifestError(
                f"--resume: {file} does not match its sha256 in the manifest (changed since it was saved)"
            )
