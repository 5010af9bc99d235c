"""The run manifest: round trip, the latest marker written last, crash simulation, config hashing and the resume check."""

from __future__ import annotations

import json

import pytest

from qcrd_ray.config import Config
from qcrd_ray.manifest import (
    LATEST_MARKER,
    ManifestError,
    RunManifest,
    check_resumable,
    config_changes,
    config_hash,
    manifest_path,
    read_manifest,
    write_manifest,
)
from qcrd_ray.schedule import SnapshotRing


def make_manifest(iteration: int, **changes) -> RunManifest:
    ring = SnapshotRing.for_lag(2)
    for k in range(iteration + 2):
        ring.push(k, f"snapshots/{k}")
    fields = {
        "run_name": "tiny",
        "config_hash": config_hash(Config()),
        "completed_iteration": iteration,
        "snapshot_ring": ring.to_dict(),
        "judge_path": f"judge/v{iteration + 1}",
        "optimizer_state": f"ray_train/checkpoint_iter_{iteration + 1:04d}",
        "metrics_history": tuple({"iteration": t, "accuracy": 0.1 * t} for t in range(iteration + 1)),
    }
    fields.update(changes)
    return RunManifest(**fields)


def test_no_manifest_yet(tmp_path):
    assert read_manifest(tmp_path) is None
    assert read_manifest(tmp_path / "does-not-exist") is None


def test_round_trip_and_latest_marker(tmp_path):
    first = make_manifest(0)
    path = write_manifest(tmp_path, first)
    assert path == manifest_path(tmp_path, 0) == tmp_path / "manifests" / "iter_0000.json"
    assert (tmp_path / LATEST_MARKER).read_text().strip() == "manifests/iter_0000.json"
    assert read_manifest(tmp_path) == first

    second = make_manifest(1)
    write_manifest(tmp_path, second)
    loaded = read_manifest(tmp_path)
    assert loaded == second
    assert SnapshotRing.from_dict(loaded.snapshot_ring) == SnapshotRing.from_dict(second.snapshot_ring)
    assert loaded.metrics_history[1] == {"iteration": 1, "accuracy": 0.1}
    assert manifest_path(tmp_path, 0).is_file()  # older manifests stay for inspection


def test_crash_leaves_the_previous_manifest_in_force(tmp_path):
    whole = make_manifest(2)
    write_manifest(tmp_path, whole)
    manifests = tmp_path / "manifests"
    # A crash while writing iteration 3: a half-written temporary file is left behind ...
    (manifests / ".iter_0003.json.x1y2.tmp").write_text('{"format": 1, "run_na')
    # ... or the manifest was renamed into place but the process died before the marker moved.
    (manifests / "iter_0003.json").write_text(json.dumps(make_manifest(3).to_dict()))
    assert read_manifest(tmp_path) == whole
    # No temporary file of a successful write is left over.
    write_manifest(tmp_path, make_manifest(4))
    assert sorted(p.name for p in manifests.iterdir() if p.name.endswith(".tmp")) == [".iter_0003.json.x1y2.tmp"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert read_manifest(tmp_path).completed_iteration == 4


def test_marker_pointing_to_missing_or_corrupt_file_raises_naming_it(tmp_path):
    write_manifest(tmp_path, make_manifest(0))
    manifest_path(tmp_path, 0).unlink()
    with pytest.raises(ManifestError, match="iter_0000.json, which does not exist"):
        read_manifest(tmp_path)

    write_manifest(tmp_path, make_manifest(1))
    manifest_path(tmp_path, 1).write_text('{"format": 1, "run_name": "ti')
    with pytest.raises(ManifestError, match=r"iter_0001\.json: corrupt manifest"):
        read_manifest(tmp_path)  # and no older manifest is whole either

    (tmp_path / LATEST_MARKER).write_text("../elsewhere.json\n")
    with pytest.raises(ManifestError, match="expected a path under manifests/"):
        read_manifest(tmp_path)


def test_a_corrupt_latest_manifest_falls_back_to_the_previous_whole_one_saying_so(tmp_path):
    for t in range(3):
        write_manifest(tmp_path, make_manifest(t))
    manifest_path(tmp_path, 2).write_text('{"format": 1, "run_na')  # a damaged disk, a bad hand edit
    manifest_path(tmp_path, 1).write_bytes(b"\xff\xfe")
    said: list[str] = []
    assert read_manifest(tmp_path, warn=said.append) == make_manifest(0)
    assert len(said) == 1 and "iter_0002.json: corrupt manifest" in said[0] and "iter_0000.json" in said[0]


def test_checkpoint_files_are_hashed_and_checked_and_load_only_from_the_run_dir(tmp_path):
    from qcrd_ray.manifest import file_hashes, verify_files

    ckpt = tmp_path / "seed_0" / "ray_train" / "checkpoint_0001"
    (ckpt / "deepspeed").mkdir(parents=True)
    (ckpt / "deepspeed" / "mp_rank_00_model_states.pt").write_bytes(b"weights")
    (ckpt / "qcrd_train_state.json").write_text("{}")
    files = file_hashes(tmp_path, [str(ckpt)])
    assert sorted(files) == [
        "seed_0/ray_train/checkpoint_0001/deepspeed/mp_rank_00_model_states.pt",
        "seed_0/ray_train/checkpoint_0001/qcrd_train_state.json",
    ]
    manifest = make_manifest(0, optimizer_state=str(ckpt), files=files)
    verify_files(tmp_path, manifest, [manifest.optimizer_state])
    state = (
        "seed_0/ray_train/checkpoint_0001/qcrd_train_state.json"  # a file the last manifest hashed is not read again
    )
    assert file_hashes(tmp_path, [str(ckpt)], known={state: "known"}) == {**files, state: "known"}
    (ckpt / "deepspeed" / "mp_rank_00_model_states.pt").write_bytes(b"a pickle that runs code")
    with pytest.raises(ManifestError, match=r"mp_rank_00_model_states\.pt does not match its sha256"):
        verify_files(tmp_path, manifest, [manifest.optimizer_state])
    outside = tmp_path.parent / "elsewhere"
    with pytest.raises(ManifestError, match="is outside the run directory"):
        verify_files(tmp_path, make_manifest(0), [str(outside)])
    with pytest.raises(ManifestError, match="is outside the run directory"):
        file_hashes(tmp_path, [str(outside)])
    (ckpt / "qcrd_train_state.json").unlink()
    with pytest.raises(ManifestError, match=r"qcrd_train_state\.json is missing"):
        verify_files(tmp_path, make_manifest(0, files={k: v for k, v in files.items() if "state.json" in k}), [])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.pop("format"), "format"),
        (lambda d: d.update(extra=1), "extra: unknown field"),
        (lambda d: d.pop("run_name"), "run_name: missing"),
        (lambda d: d.update(completed_iteration="3"), "completed_iteration: expected an integer"),
        (lambda d: d.update(judge_path=True), "judge_path: expected a string or null"),
        (lambda d: d.update(metrics_history={}), "metrics_history"),
    ],
)
def test_wrong_fields_raise_naming_the_file_and_field(tmp_path, edit, match):
    write_manifest(tmp_path, make_manifest(0))
    path = manifest_path(tmp_path, 0)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=match) as err:
        read_manifest(tmp_path)
    assert "iter_0000.json" in str(err.value)


def test_write_refuses_an_uncompleted_iteration(tmp_path):
    with pytest.raises(ValueError, match="completed_iteration"):
        write_manifest(tmp_path, make_manifest(0, completed_iteration=-1))
    assert read_manifest(tmp_path) is None


def test_config_hash_is_stable_and_sensitive():
    base = Config()
    assert config_hash(base) == config_hash(Config())
    assert config_hash(base) == config_hash(base.to_dict())
    assert len(config_hash(base)) == 16
    assert config_hash(base.replace({"train.lr": 3e-4})) != config_hash(base)
    assert config_hash(base.replace({"voting.require_gold": True})) != config_hash(base)
    # Where the run executes, and how far it goes, do not change what its iterations compute.
    assert config_hash(base.replace({"cluster.address": "ray://head:10001"})) == config_hash(base)
    assert config_hash(base.replace({"run.iterations": 7})) == config_hash(base)


def test_a_resume_refuses_a_changed_config_naming_the_keys():
    base = Config()
    changed = base.replace({"train.lr": 3e-4, "loss.beta": 0.5, "run.iterations": 9, "cluster.num_cpus": 2})
    assert config_changes(base.to_dict(), changed.to_dict()) == ["loss.beta", "train.lr"]
    assert config_changes(base.to_dict(), base.replace({"run.iterations": 9}).to_dict()) == []
    manifest = make_manifest(0, config_hash=config_hash(base), run_name=base.run.name)
    check_resumable(manifest, base.replace({"run.iterations": 9}), "runs/x")  # extending a run is allowed
    with pytest.raises(ManifestError, match="runs/x: --resume: the config differs"):
        check_resumable(manifest, changed, "runs/x")
    with pytest.raises(ManifestError, match="the manifest is run 'other'"):
        check_resumable(make_manifest(0, config_hash=config_hash(base), run_name="other"), base, "runs/x")
