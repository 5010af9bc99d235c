"""Judge scoring throughput: the judge actor's large length-sorted batches vs one pair at a time.

    python -m benchmarks.judge [--pairs 1024] [--d-model 256]

The same D (a random-init T5 encoder of the given width) scores the same (question, rationale) pairs: first
in this process one pair per forward pass (the plain baseline), then through a ``JudgeActor`` on a
local Ray in one ``score`` call (what the driver does every iteration), Ray's transfer included.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

from benchmarks.common import machine
from qcrd_ray.config import Config, JudgeConfig, TinyModelConfig
from qcrd_ray.toy import generate_split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import ray

    from actors.judge import JudgeActor
    from jobs.ray_cluster import init_ray
    from qcrd_ray.config import StudentConfig
    from qcrd_ray.judge import QualityJudge, score_texts
    from qcrd_ray.models import build_tokenizer, judge_text

    examples = generate_split("train", args.pairs, seed=0)
    pairs = [(ex.input, ex.rationales[0].text) for ex in examples]
    tiny = TinyModelConfig(d_model=args.d_model, num_layers=4, num_heads=4, d_ff=4 * args.d_model)
    dcfg = JudgeConfig(tiny=tiny, score_batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        build_tokenizer(StudentConfig(model=None), [judge_text(q, r) for q, r in pairs]).save_pretrained(tokenizer_dir)
        judge = QualityJudge(dcfg, tokenizer_dir, seed=0)
        texts = [judge_text(q, r) for q, r in pairs]
        score_texts(judge.model, judge.tokenizer, texts[:8], batch_size=1, max_length=dcfg.max_length)  # warm-up
        started = time.perf_counter()
        single = score_texts(judge.model, judge.tokenizer, texts, batch_size=1, max_length=dcfg.max_length)
        t_single = time.perf_counter() - started

        init_ray(replace(Config().cluster, num_cpus=2))
        actor = JudgeActor.remote(dcfg, tokenizer_dir, 0)
        ray.get(actor.score.remote(pairs[:8]))  # the actor is up and warm
        started = time.perf_counter()
        batched = ray.get(actor.score.remote(pairs))
        t_actor = time.perf_counter() - started
        ray.shutdown()
    worst = max(abs(a - b) for a, b in zip(single, batched, strict=True))
    print(f"judge scoring (T5 encoder d_model {args.d_model}, 4 layers, {args.pairs} pairs) on {machine()}")
    print(f"  one pair at a time, in process     {t_single:7.2f} s  {args.pairs / t_single:8.1f} pairs/s  1.00x")
    print(
        f"  JudgeActor.score, batch {args.batch_size} {t_actor:7.2f} s  {args.pairs / t_actor:8.1f} pairs/s  "
        f"{t_single / t_actor:.2f}x  (largest score difference {worst:.1e})"
    )


if __name__ == "__main__":
    main()
