"""Teacher sampling: one padded batch (KV cache, K rows per prompt) vs one prompt at a time.

    python -m benchmarks.teacher [--model builtin:arith] [--prompts 32]

Both runs sample the same prompts with the same backend in the same process; tokens/s counts generated
tokens (K completions per prompt). The backend seeds every row (``qcrd_ray.row_sampling``); the same batch
through transformers' own sampling, one RNG for the batch, shows what that costs. Also times a rerun through
the on-disk sample cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

from benchmarks.common import machine
from qcrd_ray.config import TeacherConfig
from qcrd_ray.tasks import get_task
from qcrd_ray.toy import generate_split


def main(argv: list[str] | None = None) -> None:
    from actors.teacher import TransformersBackend

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="builtin:arith")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args(argv)
    task = get_task("arith")
    examples = generate_split("test", args.prompts, seed=0)
    prompts = [task.prompt(ex.input) for ex in examples]
    cfg = TeacherConfig(model=args.model, num_samples=args.k, max_new_tokens=96, batch_size=args.prompts)
    backend = TransformersBackend(cfg)
    backend.sample(prompts[:2])  # warm-up

    def tokens(outs: list[list[str]]) -> int:
        return sum(len(backend.tokenizer(c, add_special_tokens=False)["input_ids"]) for o in outs for c in o)

    start = time.perf_counter()
    batched = backend.sample(prompts)
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    single = [backend.sample([p])[0] for p in prompts]
    t_single = time.perf_counter() - start
    from qcrd_ray.models import generate

    start = time.perf_counter()
    one_rng = generate(
        backend.model,
        backend.tokenizer,
        prompts,
        max_new_tokens=cfg.max_new_tokens,
        do_sample=True,
        temperature=cfg.temperature,
        num_return_sequences=cfg.num_samples,
        batch_size=len(prompts),
        seed=0,
        max_input_length=cfg.max_input_length,
    )
    t_one_rng = time.perf_counter() - start
    rate_b, rate_s, rate_1 = (
        tokens(o) / t for o, t in ((batched, t_batched), (single, t_single), (one_rng, t_one_rng))
    )

    # A rerun of the whole teacher phase (the driver's own function) with every question cached.
    from jobs.teacher_phase import run_teacher_phase
    from qcrd_ray.config import from_dict
    from qcrd_ray.sample_cache import CacheKey, SampleCache, prompt_template_sha

    with tempfile.TemporaryDirectory() as root:
        run_cfg = from_dict({"teacher": {**dataclasses.asdict(cfg), "cache_dir": root}})
        key = CacheKey.for_teacher(run_cfg.teacher, prompt_template_sha(task.prompt))
        with SampleCache(root, key) as cache:
            cache.append((ex.id, p, c) for ex, p, c in zip(examples, prompts, batched, strict=True))
        start = time.perf_counter()
        rerun = run_teacher_phase(run_cfg, examples, task, progress=lambda line: None)
        t_cache = time.perf_counter() - start
    print(f"teacher sampling ({args.model}, {args.prompts} prompts x K={args.k}, temperature 0.7) on {machine()}")
    print(f"  one prompt at a time  {t_single:7.2f} s  {rate_s:8.1f} tokens/s  1.00x")
    print(f"  batched               {t_batched:7.2f} s  {rate_b:8.1f} tokens/s  {rate_b / rate_s:.2f}x")
    print(f"  batched, one RNG      {t_one_rng:7.2f} s  {rate_1:8.1f} tokens/s  {rate_1 / rate_s:.2f}x (no row seeds)")
    print(f"  teacher phase rerun, all cached  {t_cache:7.4f} s for {rerun.num_cached} questions (0 sampled)")


if __name__ == "__main__":
    main()
