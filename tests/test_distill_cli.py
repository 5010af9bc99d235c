"""The driver's entry point: bad configs and bad data fail before any actor (or Ray itself) starts."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def distill(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""}
    return subprocess.run(
        [sys.executable, "-m", "jobs.distill", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def assert_failed_early(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Started a local Ray instance" not in proc.stdout + proc.stderr


def test_bad_override_names_the_key():
    assert_failed_early(distill("--set", "negatives.lag=0"), "negatives.lag: expected an integer >= 1")


def test_bad_config_file_names_file_and_key(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("loss:\n  aggregation: median\n")
    assert_failed_early(distill("--config", str(config)), f"{config}: loss.aggregation")


def test_malformed_data_names_file_and_line(tmp_path):
    data = tmp_path / "qs_train.jsonl"
    data.write_text('{"id": "a", "input": "1 + 1?", "label": "2"}\n{"id": "b", "input": 3}\n')
    (tmp_path / "qs_test.jsonl").write_text('{"id": "c", "input": "2 + 2?", "label": "4"}\n')
    proc = distill(
        "--set",
        "data.source=jsonl",
        "--set",
        "data.task=svamp",
        "--set",
        f"data.path={tmp_path}/qs_{{split}}.jsonl",
        "--set",
        "teacher.backend=dataset",
    )
    assert_failed_early(proc, f"{data}:2")


def test_resume_with_a_changed_config_names_the_keys(tmp_path):
    """--resume continues the run its config.json describes: a changed key is refused before Ray starts."""
    import json

    from qcrd_ray.config import load_config

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(load_config(None, [f"run.output_dir={out}"]).to_dict()))
    proc = distill("--resume", "--set", f"run.output_dir={out}", "--set", "train.lr=0.5", "--set", "loss.beta=0.3")
    assert_failed_early(proc, "--resume with a changed config: loss.beta, train.lr")
    assert "only run.iterations" in proc.stderr


def test_bad_seeds_are_one_line():
    assert_failed_early(distill("--seeds", "a,b"), "--seeds: expected comma-separated integers")
    assert "Traceback" not in distill("--seeds", "0,0").stderr


def test_a_config_that_is_not_utf8_names_its_line(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_bytes(b"run:\n  name: caf\xe9\n")
    assert_failed_early(distill("--config", str(config)), f"{config}:2: not UTF-8")


def test_expected_failures_behind_rays_wrappers_are_one_line_and_bugs_are_not():
    """A non-finite loss in a Ray Train worker, a teacher failing in its actor: found through Ray's wrappers."""
    from ray.exceptions import RayTaskError
    from ray.train import WorkerGroupError

    from actors.teacher import TeacherError
    from jobs.distill import expected_failure

    nan = FloatingPointError("qcrd iteration 2, step 5: the loss is not finite (loss nan)")
    assert expected_failure(WorkerGroupError("rank 0 failed", {0: RayTaskError("_worker", "Traceback", nan)})) is nan
    teacher = TeacherError("openai backend: http://127.0.0.1:1/v1/completions still failing after 3 retries")
    assert expected_failure(RuntimeError("phase failed")) is None
    try:
        try:
            raise RayTaskError("sample", "Traceback", teacher).as_instanceof_cause()
        except TeacherError as inner:
            raise RuntimeError("the teacher phase failed") from inner
    except RuntimeError as outer:
        assert expected_failure(outer) is teacher
    assert expected_failure(KeyError("a bug")) is None


def test_qcrd_console_script_lists_commands():
    from jobs.cli import main

    assert main([]) == 2


LOOPBACK_PROBE = """
from jobs.ray_cluster import init_ray
from qcrd_ray.config import ClusterConfig
init_ray(ClusterConfig(num_cpus=1))
import ray

@ray.remote(num_cpus=0)
def worker_ip():
    return ray.util.get_node_ip_address()

print("addresses", sorted({ray.util.get_node_ip_address(), ray.get(worker_ip.remote()),
                           *(n["NodeManagerAddress"] for n in ray.nodes())}))
"""


def test_a_local_run_stays_on_loopback_without_any_setting():
    """With nothing exported, the driver's local Ray, its node and its workers all use 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    proc = subprocess.run(
        [sys.executable, "-c", LOOPBACK_PROBE],
        cwd=ROOT,
        env={**env, "RAY_ADDRESS": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "addresses ['127.0.0.1']" in proc.stdout


def test_the_report_names_the_data_as_the_teacher_when_it_wrote_the_rationales():
    from jobs.distill import teacher_name
    from qcrd_ray.config import load_config

    assert teacher_name(load_config()) == "builtin:stories"
    dataset = load_config(None, ["teacher.backend=dataset", "data.source=jsonl", "data.path=data/svamp"])
    assert teacher_name(dataset) == "the data's own rationales (jsonl: data/svamp)"
