"""The whole pipeline, end to end, on a real local Ray: as a plain command, through ``ray job submit``, on a
simulated 2-node cluster, and killed mid-iteration then resumed. Slow: each run trains real students.
"""

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from qcrd_ray.stories import generate_split

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# The tiny preset, with a shared teacher-sample cache so only the first run pays for sampling.
TINY = ["--config", "configs/tiny.yaml"]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_ADDRESS": ""}


@pytest.fixture(scope="module")
def teacher_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("teacher_cache"))


def overrides(out: Path, teacher_cache: str, *extra: str) -> list[str]:
    items = [f"run.output_dir={out}", f"teacher.cache_dir={teacher_cache}", *extra]
    return [arg for item in items for arg in ("--set", item)]


def distill(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.distill", *args],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def seed_summary(out: Path, seed: int = 0) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    summaries = summary["summaries"] if isinstance(summary, dict) else summary
    return next(s for s in summaries if s["seed"] == seed)


def final_history(out: Path, method: str = "qcrd", seed: int = 0) -> list[dict]:
    return seed_summary(out, seed)["methods"][method]["history"]


def test_embedded_default_shortened_writes_report_student_and_metrics(tmp_path, teacher_cache):
    """The README's first command, shortened: QCRD vs DSS (and DSS on the teacher's greedy answer) vs
    fine-tuning, report with plots, the judge's held-out separation, saved student and predictions."""
    out = tmp_path / "run"
    proc = distill(
        overrides(
            out,
            teacher_cache,
            "run.baselines=[finetune,dss,dss_greedy]",
            "data.toy_train_size=48",
            "data.toy_eval_size=24",
            "run.iterations=2",
            "train.steps_per_iteration=6",
            "train.batch_size=8",
            "teacher.num_samples=3",
            "judge.pretrain_steps=5",
            "judge.update_steps=2",
        )
    )
    report = out / "report.md"
    assert f"report: {report}" in proc.stdout
    # A quiet console: the driver's own lines; Ray's workers and the libraries in run.log, which the report names.
    console = (proc.stdout + proc.stderr).splitlines()
    own = [line for line in console if line.startswith(("[", "teacher: "))]
    assert len(own) >= 0.9 * len(console), [line for line in console if line not in own]
    assert any(line.startswith("[qcrd] iteration 2: train: ") for line in own)
    logged = (out / "run.log").read_text()
    assert "RayTrainWorker pid=" in logged and "StudentSampler pid=" in logged
    text = report.read_text()
    assert "`run.log`" in text
    for method in ("Fine-tuning", "DSS", "QCRD"):
        assert method.lower() in text.lower()
    assert "| always the most frequent training answer (" in text  # the floor every student must clear
    # Both ways of reading an answer, for every student that explains; fine-tuning only predicts.
    for row in (
        "| DSS, from its rationale |",
        "| DSS, predict: |",
        "| QCRD, from its rationale |",
        "| QCRD, predict: |",
        "| fine-tuning, predict: |",
        "| DSS (greedy teacher), predict: |",
        "| teacher, greedy |",
        "| of which Ray Train start-up (workers, set-up) |",
        "### Does the judge separate?",
    ):
        assert row in text, row
    assert "fine-tuning, from its rationale" not in text
    assert list(out.glob("*.png"))
    metrics = [json.loads(line) for line in (out / "seed_0" / "metrics.jsonl").read_text().splitlines()]
    events = {m["event"] for m in metrics}
    assert {"teacher", "iteration"} <= events
    # Whether QCRD's contrastive term is alive, per iteration, in metrics.jsonl and in the report.
    from qcrd_ray.student_loss import CONTRASTIVE_FIGURES

    qcrd_iterations = [m for m in metrics if m["event"] == "iteration" and m["method"] == "qcrd"]
    assert len(qcrd_iterations) == 2 and all(set(CONTRASTIVE_FIGURES) <= set(m) for m in qcrd_iterations)
    assert "## The contrastive term" in text and "| negative term active |" in text
    # The judge's held-out AUCs, per iteration, for every kind of negative the iteration had.
    assert all({"judge_auc_minority", "judge_auc_corrupted", "judge_auc_student"} <= set(m) for m in qcrd_iterations)
    assert list(Path(teacher_cache).glob("*-K1-T0-*.jsonl"))  # the greedy teacher phase, cached apart
    # What the students learnt cannot be held here: 2 x 6 steps of 8 questions are far too few to learn the
    # task (studies/README.md: on the piles task the students reached 52-75% on `predict:` only after 160 steps
    # of 16). On 24 test questions this run's students score 0-3 right (fine-tuning 12.5%, DSS 0%, QCRD 4.2% at
    # 1acbe25, on the piles task), noise around the floor (1 of 24 there): no margin above it is reliable. That every student
    # clears the floor is what the full default's recorded runs show (README.md, Results). Held here instead:
    # the floor is the hand-computed one, every method trained (its loss fell), and the saved student is the
    # one that was evaluated.
    summary = seed_summary(out)
    train_answers = Counter(ex.rationales[0].answer for ex in generate_split("train", 48, seed=0))
    most_frequent = train_answers.most_common(1)[0][0]
    test = generate_split("test", 24, seed=0)
    floor = sum(ex.rationales[0].answer == most_frequent for ex in test) / len(test)
    assert summary["majority_label"] == {"label": most_frequent, "accuracy": pytest.approx(floor)}
    assert f"| always the most frequent training answer ({most_frequent}) | {100 * floor:.2f} |" in text
    for method in ("finetune", "dss", "dss_greedy", "qcrd"):
        predictions = (out / "seed_0" / method / "predictions.jsonl").read_text().splitlines()
        assert len(predictions) == len(test) and (json.loads(predictions[0])["rationale"] is None) == (
            method == "finetune"
        )
        history = summary["methods"][method]["history"]
        assert [h["iteration"] for h in history] == [0, 1], method
        # The mean training loss of the second iteration against the first: 0.35 (fine-tuning), 0.44 (DSS)
        # and 0.44 (QCRD) at 1acbe25 on the piles task; below 0.75 leaves half the fall as slack.
        assert history[1]["loss"] < 0.75 * history[0]["loss"], (method, [h["loss"] for h in history])
        assert history[-1]["accuracy"] == summary["methods"][method]["final_accuracy"]

    # The saved QCRD student, reloaded here, decodes what the run evaluated: the same accuracies both ways
    # and the same predictions and rationales for the report's examples.
    from qcrd_ray.config import from_dict
    from qcrd_ray.evaluation import evaluate_student
    from qcrd_ray.models import load_student

    cfg = from_dict(json.loads((out / "config.json").read_text()))  # the run's own
    model, tokenizer = load_student(final_student(out))
    model.eval()
    result = evaluate_student(
        model, tokenizer, test, "arith", cfg.eval, explains=True, max_input_length=cfg.student.max_input_length
    )
    qcrd = summary["methods"]["qcrd"]
    assert (result["accuracy"], result["rationale_accuracy"]) == (
        qcrd["final_accuracy"],
        qcrd["final_rationale_accuracy"],
    )
    decoded = [(e["prediction"], e["rationale"]) for e in result["examples"]]
    assert decoded == [(e["prediction"], e["rationale"]) for e in qcrd["examples"]]


def final_student(out: Path) -> str:
    summary = json.loads((out / "summary.json").read_text())
    summaries = summary["summaries"] if isinstance(summary, dict) else summary
    return summaries[0]["methods"]["qcrd"]["student_dir"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str) -> dict[str, set[frozenset]]:
    """Each ``qcrd`` metric family on a Prometheus endpoint, with the label sets of its samples ({} if down)."""
    import urllib.error
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except (urllib.error.URLError, OSError):
        return {}
    return {
        family.name.removeprefix("ray_"): {frozenset(s.labels.items()) for s in family.samples}
        for family in text_string_to_metric_families(text)
        if family.name.startswith("ray_qcrd_")
    }


def test_every_watched_metric_reaches_a_prometheus_scrape_of_a_live_run(tmp_path):
    """The metrics the Grafana dashboard plots, read off a running run's Prometheus endpoint with their tags."""
    from qcrd_ray.metrics import WATCHED_METRICS

    port, out = free_port(), tmp_path / "run"
    args = [
        "--config",
        "configs/tiny.yaml",
        *overrides(out, str(tmp_path / "cache"), f"cluster.metrics_export_port={port}"),
    ]
    # Ray exports every 10 s by default: every second here, so that a short run's last metrics are seen too.
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.distill", *args],
        cwd=ROOT,
        env={**env(), "RAY_metrics_report_interval_ms": "1000"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: dict[str, set[frozenset]] = {}
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        for name, label_sets in scrape(f"http://127.0.0.1:{port}/metrics").items():
            seen.setdefault(name, set()).update(label_sets)
        time.sleep(0.5)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output[-4000:]
    assert set(WATCHED_METRICS) <= set(seen), sorted(set(WATCHED_METRICS) - set(seen))
    labels = {name: [dict(s) for s in sets] for name, sets in seen.items()}
    assert all(d["run"] == "tiny/seed_0" for name in WATCHED_METRICS for d in labels[name]), labels
    assert {d["method"] for d in labels["qcrd_loss_cl"]} == {"qcrd"}
    assert {"teacher", "train"} <= {d["phase"] for d in labels["qcrd_phase_seconds"]}
    kinds = {d["kind"] for d in labels["qcrd_judge_score"]}
    assert kinds == {"positives", "student_negatives", "teacher_negatives"}, kinds


def test_ray_job_submit_to_a_real_local_head(tmp_path, teacher_cache):
    port, dashboard = free_port(), free_port()
    # The README's recipe. A token in ~/.ray/auth_token (`ray get-auth-token --generate`, or any earlier local
    # ray.init) makes a plain `ray start --head` turn token authentication on; `ray job submit` reads the
    # file only once RAY_AUTH_MODE=token is exported. HOME is this test's own, and so is the token.
    home = tmp_path / "home"
    home.mkdir()
    head_env = {k: v for k, v in env().items() if not k.startswith("RAY_AUTH_")} | {"HOME": str(home)}
    ray = str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray, "get-auth-token", "--generate"], check=True, env=head_env, capture_output=True, timeout=60)
    assert (home / ".ray" / "auth_token").is_file()
    # As with an activated venv: the job's entrypoint `python` is this venv's (the head passes PATH on).
    head_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # Its own temp dir (short: Ray's socket paths have a length limit), so that stopping it below touches
    # none of the other Ray instances on this machine, such as the test session's own.
    temp_dir = tempfile.mkdtemp(prefix="qrj", dir="/tmp")
    subprocess.run(
        [
            ray,
            "start",
            "--head",
            "--temp-dir",
            temp_dir,
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dashboard),
            # Ray's fixed defaults (agent 52365, client 10001, metrics) collide with any other Ray here.
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--ray-client-server-port",
            str(free_port()),
            "--metrics-export-port",
            str(free_port()),
            "--num-cpus",
            "2",
            "--disable-usage-stats",
        ],
        check=True,
        env=head_env,
        capture_output=True,
        timeout=120,
    )
    try:
        out = tmp_path / "run"
        submit = [
            ray,
            "job",
            "submit",
            "--address",
            f"http://127.0.0.1:{dashboard}",
            "--runtime-env",
            "cluster/runtime_env.yaml",
            "--",
            "python",
            "-m",
            "jobs.distill",
            *TINY,
            *overrides(out, teacher_cache),
        ]
        client_env = {**head_env, "RAY_AUTH_MODE": "token"}
        deadline = time.monotonic() + 180
        while True:
            proc = subprocess.run(submit, cwd=ROOT, env=client_env, capture_output=True, text=True, timeout=900)
            # A head on a busy machine answers before its job agent is up: Ray asks to try again later.
            if "No available agent" not in proc.stderr or time.monotonic() > deadline:
                break
            time.sleep(5)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
        assert "succeeded" in proc.stdout
        assert (out / "report.md").is_file()
    finally:
        stop_processes_of(temp_dir)  # not `ray stop`: it would stop every Ray on the machine


def stop_processes_of(temp_dir: str) -> None:
    """SIGKILL every process whose command line names ``temp_dir`` (a ``ray start`` head's processes)."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        if any(temp_dir in arg for arg in proc.info["cmdline"] or ()):
            with contextlib.suppress(psutil.Error):
                proc.kill()


TWO_NODE = """
import sys
from ray.cluster_utils import Cluster
import ray
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                  "include_dashboard": False})
cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
ray.init(address=cluster.address)
assert len([n for n in ray.nodes() if n["Alive"]]) == 2
from jobs.distill import main
code = main(sys.argv[1:])
ray.shutdown()
cluster.shutdown()
sys.exit(code)
"""


def test_run_on_a_simulated_two_node_cluster(tmp_path, teacher_cache):
    """The whole run on two nodes of 1 CPU, its pools sized to them: beside the fit's CPU, one sampler and one
    judge of half a CPU each."""
    out = tmp_path / "run"
    auto = ["--set", "sampler.num_replicas=auto", "--set", "judge.num_replicas=auto"]
    proc = subprocess.run(
        [sys.executable, "-c", TWO_NODE, *TINY, *overrides(out, teacher_cache), *auto],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert len(final_history(out)) == 2
    assert "pools sized to the cluster: 1 student sampler(s) and 1 judge(s) for the 1 CPU(s)" in proc.stdout
    assert json.loads((out / "pools.json").read_text()) == {
        "unit": "CPU",
        "capacity": 2.0,
        "fit": 1.0,
        "samplers": 1,
        "judges": 1,
    }


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory, teacher_cache) -> Path:
    """The tiny preset's run, whole: what a stopped-and-resumed run must end as."""
    out = tmp_path_factory.mktemp("unbroken")
    distill([*TINY, *overrides(out, teacher_cache)])
    return out


def submitted_and_trained(out: Path) -> tuple[float, float]:
    """When iteration 2's negatives were submitted, and when iteration 1's fit ended (QCRD, seed 0)."""
    metrics = [json.loads(line) for line in (out / "seed_0" / "metrics.jsonl").read_text().splitlines()]
    submitted = next(m for m in metrics if m["event"] == "negatives_submitted" and m["iteration"] == 1)
    trained = next(m for m in metrics if m["event"] == "phase" and m["phase"] == "train" and m["iteration"] == 0)
    return submitted["time"], trained["time"]


def test_negatives_sampled_during_the_fit_are_those_sampled_after_it(tmp_path, teacher_cache):
    """With j = 2 (as the presets' 5) and negatives.sample_ahead (as the presets have it), iteration 2's negatives
    are sampled while iteration 1 trains; a run that waits for the fit (the default) ends with the same student
    and metrics."""
    ahead, waited = tmp_path / "ahead", tmp_path / "waited"
    distill([*TINY, *overrides(ahead, teacher_cache, "negatives.lag=2", "negatives.sample_ahead=true")])
    distill([*TINY, *overrides(waited, teacher_cache, "negatives.lag=2", "negatives.sample_ahead=false")])
    submitted, trained = submitted_and_trained(ahead)
    assert submitted < trained
    submitted, trained = submitted_and_trained(waited)
    assert submitted > trained
    weights = [Path(final_student(out), "model.safetensors").read_bytes() for out in (waited, ahead)]
    assert weights[0] == weights[1]
    for key in ("accuracy", "rationale_accuracy", "loss"):
        assert [h[key] for h in final_history(waited)] == [h[key] for h in final_history(ahead)], key


def test_an_iteration_samples_scores_and_trains_only_its_questions_and_resumes_to_the_same(tmp_path, teacher_cache):
    """Two steps of 16 draw 32 of the 64 questions: exactly those are sampled, scored and drawn by the workers;
    a run stopped after its first iteration and resumed for the second ends as the unbroken one."""
    short = [*TINY, "--set", "train.steps_per_iteration=2"]
    unbroken, resumed = tmp_path / "unbroken", tmp_path / "resumed"
    distill([*short, *overrides(unbroken, teacher_cache)])
    for record in final_history(unbroken):
        assert record["questions_sampled"] == record["questions_trained"] == record["questions_drawn"] == 32, record
    distill([*short, *overrides(resumed, teacher_cache, "run.iterations=1")])
    distill([*short, *overrides(resumed, teacher_cache, "run.iterations=2"), "--resume"])
    weights = [Path(final_student(out), "model.safetensors").read_bytes() for out in (resumed, unbroken)]
    assert weights[0] == weights[1]
    for key in ("accuracy", "rationale_accuracy", "loss", "questions_drawn"):
        assert [h[key] for h in final_history(resumed)] == [h[key] for h in final_history(unbroken)], key


def start_and_stop(args: list[str], out: Path, signum: int) -> subprocess.Popen:
    """Start ``jobs.distill`` in a session of its own, wait until its first QCRD iteration is complete, then send
    ``signum``: SIGKILL and SIGINT to the whole session (a terminal's Ctrl-C reaches the local Ray's processes
    too), SIGTERM to the driver alone (``kill PID``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.distill", *args],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    marker = out / "seed_0" / "qcrd" / "latest"
    deadline = time.monotonic() + 900
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, "the run ended before it could be stopped"
    time.sleep(3)  # into the second iteration
    if signum == signal.SIGTERM:
        os.kill(proc.pid, signum)
    else:
        os.killpg(proc.pid, signum)
    return proc


def assert_resumes_to(args: list[str], broken: Path, unbroken: Path) -> None:
    distill([*args, "--resume"])
    resumed, reference = final_history(broken), final_history(unbroken)
    assert [h["iteration"] for h in resumed] == [0, 1]
    for key in ("accuracy", "loss"):
        assert [h[key] for h in resumed] == pytest.approx([h[key] for h in reference], abs=1e-6), key


def test_killed_driver_resumes_to_the_same_final_metrics(tmp_path, teacher_cache, unbroken):
    broken = tmp_path / "broken"
    args = [*TINY, *overrides(broken, teacher_cache)]  # 2 iterations: killed in the second, resumed
    proc = start_and_stop(args, broken, signal.SIGKILL)
    proc.wait()
    assert (broken / "seed_0" / "qcrd" / "latest").read_text().strip()  # an iteration was complete when it died
    assert_resumes_to(args, broken, unbroken)

    scores = json.loads((broken / "summary.json").read_text())[0]["judge_scores"]
    distill([*args, "--resume"])  # nothing left to train: the report still has the judge's last scores
    assert json.loads((broken / "summary.json").read_text())[0]["judge_scores"] == scores
    assert scores["positives"] and scores["student_negatives"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_the_run_with_one_line_and_its_resume_command(tmp_path, teacher_cache, unbroken, signum):
    """Ctrl-C (SIGINT to the session) or SIGTERM (to the driver): the run stops within 30 s, says in one line where, and prints
    the exact command that resumes it; that command then ends as the unbroken run did."""
    broken = tmp_path / "broken"
    args = [*TINY, *overrides(broken, teacher_cache)]
    proc = start_and_stop(args, broken, signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if line.startswith("[qcrd] stopped")]
    name = signal.Signals(signum).name
    assert line.startswith(f"[qcrd] stopped by {name} in seed 0"), line  # and the phase, when it was in one
    command = line.split("To go on: ", 1)[1]
    assert shlex.split(command) == ["python", "-m", "jobs.distill", *args, "--resume"]
    assert not (broken / ".lock").exists()  # the lock went with the run
    assert_resumes_to(args, broken, unbroken)
