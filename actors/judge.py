"""The quality judge as a pool of Ray actors (``{run}/seed_{s}/judge``, ``..._1``, ...), and a saved judge
served over HTTP.

``JudgeActor`` holds D (``qcrd_ray.judge.QualityJudge``: pretrain, score, update online, save, load) in one
process, so the model and its optimizer stay in memory across iterations. A seed has ``judge.num_replicas`` of
them: all score (a chunk of pairs each), replica 0 alone pretrains, updates and saves, and ``sync_replicas``
hands its new weights to the others before they score again. ``deploy_judge`` serves a saved judge through
Ray Serve (``python -m jobs.serve_judge``), so that anything outside the run can ask it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import ray

from qcrd_ray.judge import JUDGE_STATE_FILE, QualityJudge, resolve_judge_dir, score_texts

JudgeActor = ray.remote(num_cpus=1)(QualityJudge)
JudgeActor.__doc__ = (
    "Ray actor around ``qcrd_ray.judge.QualityJudge``; the driver names replica i f'{run}/seed_{s}/judge' (i = 0) "
    "or f'{run}/seed_{s}/judge_{i}'."
)


def sync_replicas(judges: Sequence) -> None:
    """Replicas 1.. load replica 0's weights (D after its pretraining or online update), and are checked to
    hold its version. The weights travel as an object reference from replica 0 to the others: the driver
    never fetches them. Each actor runs its calls in order, so a replica's next ``score`` sees the new D."""
    if len(judges) < 2:
        return
    weights = judges[0].weights.remote()
    versions = ray.get([judges[0].version.remote(), *(judge.load_weights.remote(weights) for judge in judges[1:])])
    if len(set(versions)) != 1:
        raise RuntimeError(f"sync_replicas: the judge replicas hold versions {versions} after the sync")


# -------------------------------------------------------------------------------------------------------
# Ray Serve: a saved D over HTTP


class JudgeService:
    """Serve deployment body: POST /score {"question", "rationales"} -> {"scores", "version"}."""

    def __init__(self, save_dir: str):
        from qcrd_ray.models import load_judge

        path = resolve_judge_dir(save_dir)
        self.model, self.tokenizer = load_judge(path)
        state = json.loads((path / JUDGE_STATE_FILE).read_text())
        self.version = int(state["version"])
        self.batch_size = int(state["score_batch_size"])
        self.max_length = int(state["max_length"])

    def score(self, question: str, rationales: Sequence[str]) -> list[float]:
        from qcrd_ray.models import judge_text

        texts = [judge_text(question, r) for r in rationales]
        return score_texts(self.model, self.tokenizer, texts, batch_size=self.batch_size, max_length=self.max_length)

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/version"):
            return {"version": self.version}
        if request.method != "POST" or not path.endswith("/score"):
            return JSONResponse({"error": "use POST /score or GET /version"}, status_code=404)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        body = body if isinstance(body, dict) else {}
        question, rationales = body.get("question"), body.get("rationales")
        if (
            not isinstance(question, str)
            or not isinstance(rationales, list)
            or not all(isinstance(r, str) for r in rationales)
        ):
            return JSONResponse({"error": 'expected {"question": str, "rationales": [str, ...]}'}, status_code=400)
        return {"scores": self.score(question, rationales), "version": self.version}


def deploy_judge(
    save_dir: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str = "qcrd_judge",
    *,
    route_prefix: str = "/",
    num_cpus: float = 0.5,
) -> str:
    """Serve the judge saved under ``save_dir`` over HTTP; returns the score URL (``http://host:port/score``)."""
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    deployment = serve.deployment(JudgeService, name=name, ray_actor_options={"num_cpus": num_cpus})
    serve.run(deployment.bind(save_dir), name=name, route_prefix=route_prefix)
    return f"http://{host}:{port}{route_prefix.rstrip('/')}/score"
