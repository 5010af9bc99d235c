"""Student training throughput: Ray Train + DeepSpeed (one worker) vs a plain single-process loop.

    python -m benchmarks.train [--steps 20] [--d-model 128]

Both train the same student from the same initial weights on the same QCRD items (4 positives and 4
negatives per question, the full contrastive loss) for the same number of steps. The plain loop is what a
notebook would write: ``student_loss`` -> ``backward`` -> ``torch.optim.AdamW`` with clipping. Between them,
the same loop with a local Ray idle beside it (Ray's own processes share the cores), the same loop as a Ray task
(a Ray worker process, without Ray Train's controller and helper actors) and the worker's own iteration on a
DeepSpeed engine in this process separate what Ray's daemons, a Ray worker process, DeepSpeed and Ray Train
each cost. Throughput is the loop's own time (questions/s), so the ratios are what the worker pays per step;
the fit's fixed cost (starting the worker, DeepSpeed init, the checkpoints) is printed apart.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.common import machine
from qcrd_ray.config import Config, StudentConfig, TinyModelConfig, TrainConfig
from qcrd_ray.records import TrainItem
from qcrd_ray.toy import generate_split


def qcrd_items(n: int, per_side: int, seed: int = 0) -> list[TrainItem]:
    """QCRD items from the toy task: gold rationales of other questions stand in for positives and negatives
    (throughput depends on lengths, not on which rationale is which)."""
    rng = random.Random(seed)
    pool = generate_split("train", 4 * n, seed=seed)
    texts = [ex.rationales[0].text for ex in pool]
    items = []
    for ex in pool[:n]:
        positives = (ex.rationales[0].text, *rng.sample(texts, per_side - 1))
        negatives = tuple(rng.sample(texts, per_side))
        ones = (1.0,) * per_side
        items.append(TrainItem(ex.id, ex.input, ex.label, positives, ones, negatives, ones))
    return items


def plain_loop(cfg: Config, items: list[TrainItem], init_dir: str, seed: int) -> float:
    """Questions/s of a single-process torch loop with the same loss, batches and optimizer settings."""
    import torch

    from actors.student_train import GRADIENT_CLIPPING
    from qcrd_ray.methods import encoded_length, student_loss
    from qcrd_ray.models import load_student
    from qcrd_ray.student_iteration import batch_indices, iteration_seed

    model, tokenizer = load_student(init_dir)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    order = torch.Generator().manual_seed(iteration_seed(seed, 0, 0, "batches"))
    lengths = [encoded_length(item, "qcrd") for item in items] if cfg.train.group_by_length else None
    steps = batch_indices(len(items), cfg.train.batch_size, cfg.train.steps_per_iteration, order, lengths)
    started = time.perf_counter()
    for indices in steps:
        loss, _ = student_loss(model, tokenizer, [items[i] for i in indices], "qcrd", cfg)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIPPING)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return len(steps) * cfg.train.batch_size / (time.perf_counter() - started)


def deepspeed_loop(cfg: Config, items: list[TrainItem], init_dir: str, seed: int) -> float:
    """Questions/s of the worker's own iteration (``train_iteration``) on a DeepSpeed engine in this process:
    what DeepSpeed costs, apart from Ray Train."""
    import socket

    import torch.distributed as dist

    from actors.student_train import build_engine
    from qcrd_ray.models import load_student
    from qcrd_ray.schedule import steps_per_iteration
    from qcrd_ray.student_iteration import Slot, train_iteration

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    # A gloo group as Ray Train's worker has; build_engine then lets DeepSpeed join it.
    dist.init_process_group("gloo", rank=0, world_size=1)
    model, tokenizer = load_student(init_dir)
    engine = build_engine(model, cfg.train, 1)
    slot = Slot("qcrd", seed, iteration=0, steps=steps_per_iteration(cfg.train, len(items)))
    return train_iteration(engine, tokenizer, items, cfg, slot)["samples_per_s"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--d-model", type=int, default=128)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import ray

    from actors.student_train import Stage, train_student
    from jobs.ray_cluster import init_ray
    from qcrd_ray.models import build_student, build_tokenizer, save_student

    tiny = TinyModelConfig(d_model=args.d_model, num_layers=4, num_heads=4, d_ff=4 * args.d_model)
    cfg = Config()
    cfg = replace(
        cfg,
        student=StudentConfig(model=None, tiny=tiny),
        train=TrainConfig(batch_size=args.batch_size, steps_per_iteration=args.steps, lr=1e-4),
    )
    items = qcrd_items(256, per_side=4)
    texts = [it.input for it in items] + [t for it in items for t in (*it.positives, *it.negatives)]
    with tempfile.TemporaryDirectory() as root:
        init_dir = Path(root) / "init"
        tokenizer = build_tokenizer(cfg.student, texts)
        save_student(build_student(cfg.student, tokenizer, seed=0), tokenizer, init_dir)
        plain_loop(replace(cfg, train=replace(cfg.train, steps_per_iteration=3)), items, str(init_dir), 0)  # warm-up
        alone = plain_loop(cfg, items, str(init_dir), seed=0)
        init_ray(cfg.cluster)  # as the driver does: local workers get every core, as the plain loop has
        beside_ray = plain_loop(cfg, items, str(init_dir), seed=0)
        in_task = ray.get(ray.remote(plain_loop).remote(cfg, items, str(init_dir), 0))
        in_process = deepspeed_loop(cfg, items, str(init_dir), seed=0)
        started = time.perf_counter()
        (stage,) = train_student(
            cfg, Stage("qcrd", 0, str(init_dir), f"{root}/out"), items, f"{root}/ray_train", seed=0
        )
        result = {**stage.metrics, "fit_seconds": time.perf_counter() - started}
        ray.shutdown()
    ray_train = result["samples_per_s"]
    print(
        f"student training (tiny T5 d_model {args.d_model}, 4 layers, batch {args.batch_size} questions x 8 "
        f"rationales, {args.steps} steps, QCRD loss) on {machine()}"
    )
    rows = [
        ("plain torch loop, no Ray running", alone),
        ("plain torch loop, local Ray idle beside it", beside_ray),
        ("plain torch loop as a Ray task", in_task),
        ("DeepSpeed engine in process, Ray beside it", in_process),
        ("Ray Train + DeepSpeed worker", ray_train),
    ]
    for name, rate in rows:
        print(
            f"  {name:45s} {rate:6.2f} questions/s  {rate / alone:.2f}x  ({rate / beside_ray:.2f}x the loop beside Ray)"
        )
    parts = ("worker_start_seconds", "setup_seconds", "seconds", "save_seconds")
    rest = result["fit_seconds"] - sum(result[k] for k in parts)
    print(
        f"  whole fit {result['fit_seconds']:.1f} s: worker start {result['worker_start_seconds']:.1f} s, "
        f"load + DeepSpeed init {result['setup_seconds']:.1f} s, loop {result['seconds']:.1f} s, "
        f"saves {result['save_seconds']:.1f} s, report + shutdown {rest:.1f} s"
    )


if __name__ == "__main__":
    main()
