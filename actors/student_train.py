"""Student training: a Ray Train ``TorchTrainer`` whose loop runs DeepSpeed (ZeRO) with the method's loss.

The only module of the project that imports deepspeed (inside the worker function); the optimizer steps are
the core's (``qcrd_ray.student_iteration``), the losses ``qcrd_ray.student_loss``'s. One ``fit`` trains every
iteration of a method: a baseline's fixed items, or QCRD's items handed over one iteration at a time by the
driver (``actors/train_feed.py``). Each iteration ends with the student in transformers format (rank 0) and
a DeepSpeed checkpoint with the optimizer state (every rank its own shard) reported to Ray Train; a failed
worker resumes from it, and a resumed run's fit loads it so Adam's moments carry on."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from qcrd_ray.config import Config, TrainConfig
from qcrd_ray.records import TrainItem
from qcrd_ray.schedule import steps_per_iteration
from qcrd_ray.student_iteration import Slot, train_iteration
from qcrd_ray.student_loss import METHODS

GRADIENT_CLIPPING = 1.0
STATE_FILE = "qcrd_train_state.json"  # inside each reported checkpoint: iterations done and their metrics
DEEPSPEED_DIR = "deepspeed"  # inside each reported checkpoint: engine.save_checkpoint's directory


def deepspeed_config(train: TrainConfig, world_size: int) -> dict:
    """DeepSpeed's config for a ``world_size``-worker fit: ZeRO stage, precision, AdamW, clipping."""
    return {
        "train_batch_size": train.batch_size,
        "train_micro_batch_size_per_gpu": train.batch_size // world_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": GRADIENT_CLIPPING,
        # torch_adam: DeepSpeed's own CPU / fused Adam are JIT-compiled (68 s on CPU, nvcc on GPU nodes).
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": train.lr, "weight_decay": train.weight_decay, "torch_adam": True},
        },
        "zero_optimization": {"stage": train.zero_stage},
        "bf16": {"enabled": train.precision == "bf16"},
        "fp16": {"enabled": train.precision == "fp16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def build_engine(model, train: TrainConfig, world_size: int):
    """``deepspeed.initialize`` of the student for a ``world_size``-worker fit -> the engine."""
    import deepspeed

    if not train.use_gpu:
        # DeepSpeed's shared-memory all-reduce is a speed-up over gloo between CPU ranks of one node, and its
        # JIT build costs 2-9 minutes of g++ on a fresh machine. Without it DeepSpeed all-reduces through gloo.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    engine, *_ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), config=deepspeed_config(train, world_size)
    )
    return engine


def _full_state_dict(engine, rank: int) -> dict | None:
    """On rank 0, every parameter and persistent buffer as fp32 on CPU; None elsewhere. Collective under ZeRO-3.

    Gathers one module's own parameters at a time, so no rank ever holds more than one layer in full.
    """
    import deepspeed
    import torch

    state = {}
    # remove_duplicate=False: a tied module (T5's encoder.embed_tokens is ``shared``) is saved under each name.
    for prefix, module in engine.module.named_modules(remove_duplicate=False):
        own = list(module.parameters(recurse=False))
        with deepspeed.zero.GatheredParameters(own, modifier_rank=None):  # a no-op below ZeRO-3
            if rank == 0:
                named = list(module.named_parameters(recurse=False))
                named += [(n, b) for n, b in module.named_buffers(recurse=False)
                          if n not in module._non_persistent_buffers_set]  # fmt: skip
                for name, tensor in named:
                    state[f"{prefix}.{name}" if prefix else name] = tensor.detach().to("cpu", torch.float32, copy=True)
    return state if rank == 0 else None


def _save_student(engine, tokenizer, out_dir: Path, rank: int) -> None:
    """The student in transformers format, fp32, written whole or not at all (rank 0 writes)."""
    import torch

    from qcrd_ray.models import save_student

    state = _full_state_dict(engine, rank)
    if rank != 0:
        return
    module = engine.module
    student = type(module)(module.config).to(torch.float32)  # a CPU twin: under ZeRO-3 the module holds shards
    student.load_state_dict(state, strict=True)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_student(student, tokenizer, tmp)
    shutil.rmtree(out_dir, ignore_errors=True)  # a retried iteration replaces what a failed attempt left
    tmp.rename(out_dir)


def _load_deepspeed_checkpoint(engine, directory: str | Path, what: str) -> None:
    path, _ = engine.load_checkpoint(str(Path(directory) / DEEPSPEED_DIR))
    if path is None:
        raise FileNotFoundError(f"{what}: no DeepSpeed checkpoint under {Path(directory) / DEEPSPEED_DIR}")


def _worker(config: dict) -> None:
    """What Ray Train runs on each worker: load the student, wrap it in DeepSpeed, then per iteration take the
    items, train them (``qcrd_ray.student_iteration.train_iteration``), save the student and report a checkpoint.

    Each iteration's items are the fit's fixed ``items`` (a baseline), or come from the driver's ``feed``
    (QCRD: an ``IterationFeed``), which the worker waits on between iterations.
    """
    import ray
    import ray.train

    from qcrd_ray.models import load_student

    cfg: Config = config["cfg"]
    method, seed, first_iteration, n_iterations, feed = (
        config["method"],
        config["seed"],
        config["iteration"],
        config["iterations_in_fit"],
        config["feed"],
    )
    entered = time.time()  # wall clock: compared with the driver's, so the fit's start-up cost can be split
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # The same items in the same order give every worker the same shard, in any fit.
    fixed = ray.get(config["items"]) if feed is None else None
    model, tokenizer = load_student(config["init_dir"])
    engine = build_engine(model, cfg.train, world)
    state = {"completed": 0, "history": []}
    resume = ray.train.get_checkpoint()
    if resume is not None:  # a worker failed: carry on after the last reported iteration
        with resume.as_directory() as directory:
            _load_deepspeed_checkpoint(engine, directory, "resume")
            state = json.loads((Path(directory) / STATE_FILE).read_text())
    elif config["optimizer_state"] is not None:  # the previous fit: weights and Adam's moments
        with ray.train.Checkpoint(config["optimizer_state"]).as_directory() as directory:
            _load_deepspeed_checkpoint(engine, directory, "optimizer_state")
    startup = {"worker_start_seconds": entered - config["fit_started_at"], "setup_seconds": time.time() - entered}
    for k in range(state["completed"], n_iterations):
        iteration = first_iteration + k
        tag = f"iter_{iteration + 1:04d}"
        if feed is None:
            items = fixed
        else:
            box = ray.get(feed.take.remote(iteration))  # [ref to the items], or None: the driver stopped the fit
            if box is None:
                return
            items = ray.get(box[0])
        slot = Slot(method, seed, iteration, steps_per_iteration(cfg.train, len(items)), rank, world)
        metrics = train_iteration(engine, tokenizer, items[rank::world], cfg, slot)
        saving = time.perf_counter()
        student_dir = Path(config["out_dir"]) / tag
        _save_student(engine, tokenizer, student_dir, rank)
        metrics.update(startup, iteration=iteration, student_dir=str(student_dir))
        startup = {}  # paid once per fit, by its first iteration
        state = {"completed": k + 1, "history": [*state["history"], metrics]}
        with tempfile.TemporaryDirectory(prefix=f"qcrd-{tag}-") as tmp:
            (Path(tmp) / DEEPSPEED_DIR / tag).mkdir(parents=True)  # DeepSpeed makes it on rank 0 only
            engine.save_checkpoint(str(Path(tmp) / DEEPSPEED_DIR), tag=tag)
            metrics["save_seconds"] = time.perf_counter() - saving  # the student, the DeepSpeed checkpoint
            if rank == 0:
                (Path(tmp) / STATE_FILE).write_text(json.dumps(state))
            ray.train.report({key: v for key, v in metrics.items() if key != "loss_curve"},
                             checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=checkpoint_name(iteration))  # fmt: skip
        if feed is not None and rank == 0:
            ray.get(feed.finish.remote(iteration, metrics))


def checkpoint_name(iteration: int) -> str:
    """The directory, under the fit's storage, of the checkpoint reported after ``iteration`` (0-based)."""
    return f"checkpoint_iter_{iteration + 1:04d}"


# ---------------------------------------------------------------------------------------------------------
# the driver's entry point


def validate_items(items: list[TrainItem], num_workers: int, where: str) -> None:
    """Enough items for every worker, and every positive and negative has a judge score in [0, 1] (raises
    ValueError naming the item)."""
    if len(items) < num_workers:
        raise ValueError(f"{where}: {len(items)} items cannot feed train.num_workers={num_workers} workers")
    for it in items:
        if len(it.positive_scores) != len(it.positives) or len(it.negative_scores) != len(it.negatives):
            raise ValueError(f"{where}: item {it.id!r} has {len(it.positives)} positives / {len(it.negatives)} "
                             f"negatives but {len(it.positive_scores)} / {len(it.negative_scores)} scores")  # fmt: skip
        if any(not 0.0 <= s <= 1.0 for s in (*it.positive_scores, *it.negative_scores)):
            raise ValueError(f"{where}: item {it.id!r} has a judge score outside [0, 1]")


def _validate(cfg: Config, method: str, items: list[TrainItem] | None, init_dir: str, iterations_in_fit: int) -> None:
    where = "actors/student_train.py: train_student"
    if method not in METHODS:
        raise ValueError(f"{where}: method must be one of {METHODS}, got {method!r}")
    if iterations_in_fit < 1:
        raise ValueError(f"{where}: iterations_in_fit must be >= 1, got {iterations_in_fit}")
    if not (Path(init_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{where}: init_dir {init_dir} holds no transformers student (config.json)")
    if items is not None:
        validate_items(items, cfg.train.num_workers, where)


def train_student(cfg: Config, method: str, items: list[TrainItem] | None, init_dir: str, out_dir: str,
                  iteration: int, storage_path: str, seed: int, iterations_in_fit: int = 1,
                  optimizer_state: str | None = None, feed=None) -> dict:  # fmt: skip
    """Train the student from ``init_dir`` for ``iterations_in_fit`` iterations (numbered from ``iteration``).

    Iteration t's student goes to ``out_dir/iter_{t+1:04d}``. ``items``: every iteration's items, or None
    when ``feed`` (an ``IterationFeed``, see ``actors/train_feed.py``) hands over each iteration's.
    ``optimizer_state``: a previous fit's ``result["optimizer_state"]``, so Adam's moments continue.
    Returns the last iteration's metrics (loss, loss_pred, loss_cl | loss_rationale, steps, samples_per_s,
    seconds, student_dir), ``iterations`` (every iteration's metrics), ``optimizer_state`` / ``checkpoint``
    (this fit's last checkpoint) and ``fit_seconds`` (including Ray Train's fixed cost).
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    _validate(cfg, method, items, init_dir, iterations_in_fit)
    started = time.perf_counter()
    loop_config = {
        "fit_started_at": time.time(),
        "cfg": cfg, "method": method, "items": None if items is None else ray.put(list(items)),
        "init_dir": str(init_dir), "out_dir": str(out_dir), "iteration": iteration,
        "iterations_in_fit": iterations_in_fit, "seed": seed, "optimizer_state": optimizer_state, "feed": feed,
    }  # fmt: skip
    trainer = TorchTrainer(
        _worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=cfg.train.num_workers, use_gpu=cfg.train.use_gpu),
        run_config=RunConfig(
            name=fit_name(cfg, method, seed, iteration),
            storage_path=str(storage_path),
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.num_to_keep),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"train_student: the fit in {storage_path} reported no checkpoint")
    with result.checkpoint.as_directory() as directory:
        state = json.loads((Path(directory) / STATE_FILE).read_text())
    history = state["history"]
    return {
        **history[-1],
        "iterations": history,
        "optimizer_state": result.checkpoint.path,
        "checkpoint": result.checkpoint.path,
        "fit_seconds": time.perf_counter() - started,
    }


def fit_name(cfg: Config, method: str, seed: int, iteration: int) -> str:
    """Ray Train's run name of the fit that starts at ``iteration``: its checkpoints are under storage/name."""
    return f"{cfg.run.name}-{method}-seed{seed}-iter{iteration + 1:04d}"
