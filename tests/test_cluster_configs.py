"""The cluster files in cluster/: Ray's autoscaler schema, the KubeRay CRD schemas, and the resources presets ask for."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
CRDS = ROOT.parent / "shared" / "data" / "kuberay-crds"
AUTOSCALER_FILES = ["aws.yaml", "gcp.yaml"]
KUBERAY_FILES = {"raycluster.yaml": "ray.io_rayclusters.yaml", "rayjob.yaml": "ray.io_rayjobs.yaml"}


# The CRD files are megabytes of YAML: parse them with libyaml when present, and once per session.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_LOADER)


def ray_schema() -> dict:
    spec = importlib.util.find_spec("ray")
    assert spec is not None and spec.submodule_search_locations, "ray is not installed"
    path = Path(next(iter(spec.submodule_search_locations))) / "autoscaler" / "ray-schema.json"
    return json.loads(path.read_text())


@functools.cache
def _crd(crd_file: str) -> dict:
    return load(CRDS / crd_file)


def crd_kind(crd_file: str) -> str:
    return _crd(crd_file)["spec"]["names"]["kind"]


@functools.cache
def crd_schema(crd_file: str) -> dict:
    """The v1 openAPIV3Schema of a KubeRay CRD, made strict (see ``strict``); do not mutate."""
    (version,) = [v for v in _crd(crd_file)["spec"]["versions"] if v["name"] == "v1"]
    return strict(version["schema"]["openAPIV3Schema"])


def need_crds() -> None:
    if not CRDS.is_dir():
        pytest.skip(f"KubeRay CRDs not found at {CRDS}")


def strict(schema: Any) -> Any:
    """The schema with unknown fields rejected, as Kubernetes would silently prune them (a typo'd key is lost)."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def errors(instance: Any, schema: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


# ---------------------------------------------------------------------------------------------------------
# what each cluster file offers


def autoscaler_node_types(config: dict) -> dict[str, dict[str, int]]:
    return {name: dict(t["resources"]) for name, t in config["available_node_types"].items()}


def kuberay_groups(spec: dict) -> dict[str, dict[str, int]]:
    """Ray resources per group: custom ones from rayStartParams.resources, GPUs from the container limits."""

    def offered(group: dict) -> dict[str, int]:
        out: dict[str, int] = {}
        custom = group.get("rayStartParams", {}).get("resources")
        if custom:
            # KubeRay's spelling: a JSON object inside double quotes, '"{\"teacher\": 1}"'.
            assert custom.startswith('"') and custom.endswith('"'), f"resources must be quoted JSON, got {custom!r}"
            out.update(json.loads(custom[1:-1].replace('\\"', '"')))
        gpus = sum(
            int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
            for c in group["template"]["spec"]["containers"]
        )
        if "num-gpus" in group.get("rayStartParams", {}):
            gpus = int(group["rayStartParams"]["num-gpus"])
        if gpus:
            out["GPU"] = gpus
        return out

    groups = {"head": offered(spec["headGroupSpec"])}
    groups.update({g["groupName"]: offered(g) for g in spec["workerGroupSpecs"]})
    return groups


def all_clusters() -> dict[str, dict[str, dict[str, int]]]:
    clusters = {name: autoscaler_node_types(load(CLUSTER / name)) for name in AUTOSCALER_FILES}
    clusters["kuberay/raycluster.yaml"] = kuberay_groups(load(CLUSTER / "kuberay" / "raycluster.yaml")["spec"])
    clusters["kuberay/rayjob.yaml"] = kuberay_groups(
        load(CLUSTER / "kuberay" / "rayjob.yaml")["spec"]["rayClusterSpec"]
    )
    return clusters


def requested_teacher_resources() -> set[str]:
    """Every custom resource a preset's teacher asks for; "teacher" always, as the GPU presets use it."""
    names = {"teacher"}
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        resource = ((load(path) or {}).get("teacher") or {}).get("resource")
        if resource:
            names.add(resource)
    return names


# ---------------------------------------------------------------------------------------------------------
# Ray cluster launcher files


@pytest.mark.parametrize("name", AUTOSCALER_FILES)
def test_autoscaler_config_matches_rays_schema(name):
    config = load(CLUSTER / name)
    assert errors(config, ray_schema()) == []
    assert config["head_node_type"] in config["available_node_types"]


@pytest.mark.parametrize("name", AUTOSCALER_FILES)
def test_autoscaler_config_passes_ray_up_validation(name):
    """What `ray up` itself runs: defaults filled in, then the schema plus Ray's own consistency checks."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(load(CLUSTER / name)))


def test_rays_schema_catches_a_broken_config():
    config = load(CLUSTER / "aws.yaml")
    config["available_node_types"]["teacher_gpu"]["resources"]["GPU"] = "one"
    config["max_worker"] = 4
    found = errors(config, ray_schema())
    assert any("GPU" in e for e in found) and any("max_worker" in e for e in found)


@pytest.mark.parametrize("name", AUTOSCALER_FILES)
def test_autoscaler_node_types(name):
    config = load(CLUSTER / name)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"].get("CPU", 0) >= 1
    workers = {n: t for n, t in types.items() if n != config["head_node_type"]}
    assert all(t.get("min_workers", 0) == 0 for t in workers.values()), "GPU nodes must scale from zero"
    teacher = [t for t in workers.values() if t["resources"].get("teacher", 0) >= 1]
    assert teacher and all(t["resources"].get("GPU", 0) >= 1 for t in teacher)
    trainer = [t for t in workers.values() if "teacher" not in t["resources"] and t["resources"].get("GPU", 0) >= 1]
    assert trainer, "a GPU node type for training"


@pytest.mark.parametrize("name", AUTOSCALER_FILES)
def test_setup_installs_torch_before_the_project(name):
    config = load(CLUSTER / name)
    common = config.get("setup_commands", [])
    effective = {config["head_node_type"]: common + config.get("head_setup_commands", [])}
    for node, t in config["available_node_types"].items():
        if node != config["head_node_type"]:
            # A node type's own list replaces the global setup and worker setup lists (Ray's schema says so).
            effective[node] = t.get("worker_setup_commands", common + config.get("worker_setup_commands", []))
    for node, commands in effective.items():
        torch_at = [i for i, c in enumerate(commands) if re.search(r"pip install .*\btorch\b", c)]
        project_at = [i for i, c in enumerate(commands) if re.search(r"pip install (-e )?[\"']?\.", c)]
        assert torch_at and project_at and torch_at[0] < project_at[0], f"{name}: {node}: {commands}"


# ---------------------------------------------------------------------------------------------------------
# KubeRay manifests


@pytest.mark.parametrize(("name", "crd"), list(KUBERAY_FILES.items()))
def test_kuberay_manifest_matches_the_crd_schema(name, crd):
    need_crds()
    manifest = load(CLUSTER / "kuberay" / name)
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == crd_kind(crd)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", manifest["metadata"]["name"])
    assert errors(manifest, crd_schema(crd)) == []


def test_the_crd_schema_catches_a_broken_raycluster():
    manifest = load(CLUSTER / "kuberay" / "raycluster.yaml")
    manifest["spec"]["enableInTreeAutoscalling"] = True  # typo: Kubernetes would drop it silently
    manifest["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "one"
    del manifest["spec"]["workerGroupSpecs"][1]["groupName"]
    need_crds()
    found = errors(manifest, crd_schema("ray.io_rayclusters.yaml"))
    assert any("enableInTreeAutoscalling" in e for e in found)
    assert any("maxReplicas" in e for e in found)
    assert any("groupName" in e for e in found)


def test_raycluster_shape():
    spec = load(CLUSTER / "kuberay" / "raycluster.yaml")["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    groups = kuberay_groups(spec)
    assert groups["head"].get("GPU", 0) == 0
    assert all(g["minReplicas"] == 0 for g in spec["workerGroupSpecs"])
    assert spec["workerGroupSpecs"][0]["rayStartParams"]["resources"] == '"{\\"teacher\\": 1}"'
    assert any(r.get("teacher") == 1 and r.get("GPU", 0) >= 1 for r in groups.values())
    assert any("teacher" not in r and r.get("GPU", 0) >= 1 for n, r in groups.items() if n != "head")


def test_rayjob_runs_the_svamp_preset_on_the_same_cluster_spec():
    job = load(CLUSTER / "kuberay" / "rayjob.yaml")
    assert job["spec"]["entrypoint"] == "python -m jobs.distill --config configs/svamp_t5_base.yaml"
    assert (ROOT / "configs" / "svamp_t5_base.yaml").is_file()
    assert job["spec"]["rayClusterSpec"] == load(CLUSTER / "kuberay" / "raycluster.yaml")["spec"]
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    # The working_dir is the image's copy of the repository (the Dockerfile's WORKDIR), uploaded by the submitter pod.
    workdir = re.search(r"^WORKDIR (\S+)", (CLUSTER / "kuberay" / "Dockerfile").read_text(), re.M).group(1)
    assert runtime_env["working_dir"] == workdir
    from ray.runtime_env import RuntimeEnv

    # Ray checks that a local working_dir exists, which it does only in the image: validate the rest here.
    RuntimeEnv(**{k: v for k, v in runtime_env.items() if k != "working_dir"})


def test_ray_versions_agree_across_cluster_files():
    versions = {str(load(CLUSTER / "kuberay" / "raycluster.yaml")["spec"]["rayVersion"])}
    for name in AUTOSCALER_FILES:
        docker = load(CLUSTER / name)["docker"]
        versions |= {re.match(r"rayproject/ray:([\d.]+)-", docker[k]).group(1) for k in ("image", "head_image")}
    versions |= set(
        re.findall(r"^FROM rayproject/ray:([\d.]+)-", (CLUSTER / "kuberay" / "Dockerfile").read_text(), re.M)
    )
    assert len(versions) == 1, versions


# ---------------------------------------------------------------------------------------------------------
# what the presets ask for, and the runtime environment


def test_every_teacher_resource_is_offered_by_every_cluster():
    wanted = requested_teacher_resources()
    for cluster, node_types in all_clusters().items():
        for resource in sorted(wanted):
            offering = [n for n, r in node_types.items() if r.get(resource, 0) >= 1]
            assert offering, f"{cluster}: no node type offers the custom resource {resource!r}"
            assert all(node_types[n].get("GPU", 0) >= 1 for n in offering), f"{cluster}: {resource} without a GPU"


def test_runtime_env():
    from ray.runtime_env import RuntimeEnv

    env = load(CLUSTER / "runtime_env.yaml")
    RuntimeEnv(**env)  # raises on a malformed runtime environment
    assert env["working_dir"] == "."
    excludes = {e.rstrip("/") for e in env["excludes"]}
    ignored = [line.strip().rstrip("/") for line in (ROOT / ".gitignore").read_text().splitlines()]
    missing = [p for p in ignored if p and not p.startswith("#") and p not in excludes]
    assert not missing, f"runtime_env.yaml excludes lack .gitignore entries {missing}"
    assert {".venv", "runs", ".git"} <= excludes
    assert "HF_HUB_OFFLINE" not in env.get("env_vars", {})
