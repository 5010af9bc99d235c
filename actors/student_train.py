"""Student training: a Ray Train ``TorchTrainer`` whose loop runs DeepSpeed (ZeRO) with the method's loss.

The only module of the project that imports deepspeed (inside the worker function); the optimizer steps are
the core's (``qcrd_ray.student_iteration``), the losses ``qcrd_ray.student_loss``'s. A seed has one fit
(``StreamingFit``) for all of its methods: the driver hands it one stage (an iteration of a method) at a time
through a ``StageFeed`` (``actors/train_feed.py``). Each stage ends with the student in transformers format
(rank 0) and a DeepSpeed checkpoint with the optimizer state (every rank its own shard) reported to Ray
Train; a failed worker resumes from it, and a resumed run's fit loads it so Adam's moments carry on."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from qcrd_ray.config import Config, TrainConfig
from qcrd_ray.console import PhaseProgress
from qcrd_ray.methods import get_method
from qcrd_ray.records import FitResult, TrainItem
from qcrd_ray.schedule import steps_per_iteration
from qcrd_ray.student_iteration import FitStopped, Slot, train_iteration

GRADIENT_CLIPPING = 1.0
TRAIN_STATE_FILE = "qcrd_train_state.json"  # inside each reported checkpoint: stages done, the last one's metrics
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
                named += [
                    (n, b)
                    for n, b in module.named_buffers(recurse=False)
                    if n not in module._non_persistent_buffers_set
                ]
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


@dataclass(frozen=True)
class Stage:
    """One iteration of one method, as a seed's fit trains it. The first stage of a method (one the engine
    does not hold) loads the student from ``init_dir``, and the DeepSpeed checkpoint ``optimizer_state``
    (weights and Adam's moments: a resumed run) when given; later stages of the method carry on in memory.
    Iteration t's student goes to ``out_dir/iter_{t+1:04d}``."""

    method: str
    iteration: int
    init_dir: str
    out_dir: str
    optimizer_state: str | None = None


def _start_method(engine, cfg: Config, stage: Stage, world: int, checkpoint=None):
    """A fresh engine for ``stage``'s method: its student, then ``checkpoint`` (a worker restarted inside the
    method: Ray Train's last reported one) or the stage's ``optimizer_state``. Returns (engine, tokenizer)."""
    import gc

    import ray.train

    from qcrd_ray.models import load_student

    if engine is not None:  # the previous method's: free it before the next one is built
        engine.destroy()
        del engine
        gc.collect()
    model, tokenizer = load_student(stage.init_dir)
    engine = build_engine(model, cfg.train, world)
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            _load_deepspeed_checkpoint(engine, directory, "resume")
    elif stage.optimizer_state is not None:
        with ray.train.Checkpoint(stage.optimizer_state).as_directory() as directory:
            _load_deepspeed_checkpoint(engine, directory, "optimizer_state")
    return engine, tokenizer


def _worker(config: dict) -> None:
    """What Ray Train runs on each worker: take the driver's stages from the ``feed`` (a ``StageFeed``)
    one after another, train each (``qcrd_ray.student_iteration.train_iteration``), save its student and report
    a checkpoint, until the driver stops the feed (mid-stage too: the workers then leave the stage unsaved at the
    next step, so a stopped run does not wait for it). One fit serves every method of a seed, so Ray Train's
    start-up (processes, imports, process group) is paid once; a method change only rebuilds the engine.
    """
    import ray
    import ray.train

    cfg: Config = config["cfg"]
    seed, feed = config["seed"], config["feed"]
    entered = time.time()  # wall clock: compared with the driver's, so the fit's start-up cost can be split
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    resume, state = _resume_point(ray.train.get_checkpoint(), feed, config["checkpoints"], rank)
    startup = {"worker_start_seconds": entered - config["fit_started_at"]}
    engine = tokenizer = method = None
    while (box := ray.get(feed.take.remote(state["completed"]))) is not None:  # [stage, ref to its items]
        stage, items = box[0], ray.get(box[1])
        if stage.method != method:
            building = time.time()
            restarted = resume if stage.method == state["method"] else None  # a worker restarted inside the method
            engine, tokenizer = _start_method(engine, cfg, stage, world, restarted)
            method = stage.method
            startup["setup_seconds"] = time.time() - building  # the student's load and DeepSpeed's init
        tag = f"iter_{stage.iteration + 1:04d}"
        slot = Slot(method, seed, stage.iteration, steps_per_iteration(cfg.train, len(items)), rank, world)
        index = state["completed"]
        # Rank 0 reports each step and hears whether the driver has stopped the fit; the others follow it.
        on_step = (lambda n, index=index: ray.get(feed.step.remote(index, n))) if rank == 0 else (lambda n: False)
        try:
            metrics = train_iteration(engine, tokenizer, items[rank::world], cfg, slot, on_step)
        except FitStopped:
            return  # nothing of the stage is saved or reported: a resumed run trains it again
        saving = time.perf_counter()
        student_dir = Path(stage.out_dir) / tag
        _save_student(engine, tokenizer, student_dir, rank)
        metrics.update(startup, iteration=stage.iteration, student_dir=str(student_dir))
        startup = {}  # paid by the first stage of the fit (workers) and of each method (set-up)
        name = checkpoint_name(index, stage)
        state = {"completed": index + 1, "method": method, "checkpoint": name, "metrics": metrics}
        with tempfile.TemporaryDirectory(prefix=f"qcrd-{tag}-") as tmp:
            (Path(tmp) / DEEPSPEED_DIR / tag).mkdir(parents=True)  # DeepSpeed makes it on rank 0 only
            engine.save_checkpoint(str(Path(tmp) / DEEPSPEED_DIR), tag=tag)
            metrics["save_seconds"] = time.perf_counter() - saving  # the student, the DeepSpeed checkpoint
            if rank == 0:
                (Path(tmp) / TRAIN_STATE_FILE).write_text(json.dumps(state))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=name)
        if rank == 0:
            ray.get(feed.finish.remote(index, metrics, name))


def _read_state(checkpoint) -> dict:
    with checkpoint.as_directory() as directory:
        return json.loads((Path(directory) / TRAIN_STATE_FILE).read_text())


def _resume_point(checkpoint, feed, checkpoints: str, rank: int):
    """Where a (re)started worker carries on -> (checkpoint or None, state {"completed", "method", ...}).

    The feed, not Ray Train, says which stages are done: a worker killed right after ``ray.train.report``
    leaves a checkpoint on disk that the controller may not have registered yet, and restarting from the one
    before would ask for a stage the driver has already moved past (and wait forever). So a restarted worker
    takes the feed's last finished stage's checkpoint when it is newer, and hands over a reported stage the
    feed never got (it died between the report and ``finish``)."""
    import ray
    import ray.train

    state = _read_state(checkpoint) if checkpoint is not None else {"completed": 0, "method": None}
    done, last = ray.get(feed.progress.remote())
    if done > state["completed"]:
        checkpoint = ray.train.Checkpoint(str(Path(checkpoints) / last))
        state = _read_state(checkpoint)
    elif state["completed"] > done and rank == 0:
        ray.get(feed.finish.remote(done, state["metrics"], state["checkpoint"]))
    return checkpoint, state


def checkpoint_name(index: int, stage: Stage) -> str:
    """The directory, under the fit's storage, of the checkpoint reported after the fit's ``index``-th stage."""
    return f"checkpoint_{index:04d}_{stage.method}_iter_{stage.iteration + 1:04d}"


# ---------------------------------------------------------------------------------------------------------
# the driver's entry point


def validate_items(items: list[TrainItem | None], num_workers: int, where: str) -> None:
    """Enough items for every worker, and every positive and negative has a judge score in [0, 1] (raises
    ValueError naming the item). None is a question the iteration's batches do not draw."""
    if len(items) < num_workers:
        raise ValueError(f"{where}: {len(items)} items cannot feed train.num_workers={num_workers} workers")
    for it in items:
        if it is None:
            continue
        if len(it.positive_scores) != len(it.positives) or len(it.negative_scores) != len(it.negatives):
            raise ValueError(
                f"{where}: item {it.id!r} has {len(it.positives)} positives / {len(it.negatives)} "
                f"negatives but {len(it.positive_scores)} / {len(it.negative_scores)} scores"
            )
        if any(not 0.0 <= s <= 1.0 for s in (*it.positive_scores, *it.negative_scores)):
            raise ValueError(f"{where}: item {it.id!r} has a judge score outside [0, 1]")


class StreamingFit:
    """One Ray Train fit that trains stages (an iteration of a method) as the driver hands them over.

    Use as a context manager; ``train(stage, items)`` returns the stage's ``FitResult`` once it is trained: its
    student, its checkpoint (weights and Adam's moments, what a resumed run starts from) and its metrics.
    Leaving the block stops the fit, also when the driver fails between stages, so no worker waits for
    stages that will never come. A seed's methods share one fit: a QCRD iteration's items exist only once the
    previous student has been sampled and judged, and a fit per iteration or per method would pay Ray Train's
    start-up (processes, imports, DeepSpeed init; about 30 s on a laptop, a gang-scheduled GPU group on a
    cluster) each time.
    """

    def __init__(self, cfg: Config, seed: int, storage_path: str):
        from actors.placement import start_actor
        from actors.train_feed import StageFeed

        self.cfg, self.seed, self.stages = cfg, seed, 0
        self.checkpoints = Path(storage_path) / fit_name(cfg, seed)
        self.feed = start_actor(StageFeed, f"{cfg.run.name}/seed_{seed}/train_feed", None, 0)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qcrd-fit")  # fit() blocks
        self._fit = self._pool.submit(_fit, cfg, seed, storage_path, self.feed)

    def train(self, stage: Stage, items: list[TrainItem | None], progress: PhaseProgress | None = None) -> FitResult:
        """Hand the workers ``stage`` and its items; wait until they have trained and reported it (its steps
        counted on ``progress`` as rank 0 takes them)."""
        import ray

        _validate(self.cfg, stage, items)
        index = self.stages
        ray.get(self.feed.put.remote(index, [stage, ray.put(list(items))]))
        pending = self.feed.result.remote(index)
        if progress is not None:
            progress.expect(steps_per_iteration(self.cfg.train, len(items)), "steps")
        while not ray.wait([pending], timeout=1.0)[0]:
            if progress is not None:
                progress.update(ray.get(self.feed.steps.remote(index)) - progress.done)
            if self._fit.done():
                self._fit.result()  # raises the fit's own error
                raise RuntimeError(
                    f"StreamingFit: the fit ended before {stage.method} iteration {stage.iteration + 1} was trained"
                )
        self.stages += 1
        metrics = ray.get(pending)
        return FitResult(
            student_dir=metrics.pop("student_dir"),
            checkpoint=str(self.checkpoints / checkpoint_name(index, stage)),
            metrics=metrics,
        )

    def __enter__(self) -> StreamingFit:
        return self

    def __exit__(self, *exc) -> None:
        import ray

        try:
            ray.get(self.feed.stop.remote())
            if exc[0] is None:
                self._fit.result()  # a clean exit surfaces a failed fit
        finally:
            self._pool.shutdown(wait=True)
            ray.kill(self.feed)


def _fit(cfg: Config, seed: int, storage_path: str, feed) -> None:
    """Ray Train's ``fit`` of ``_worker`` (blocks until the feed is stopped)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        _worker,
        train_loop_config={
            "fit_started_at": time.time(),
            "cfg": cfg,
            "seed": seed,
            "feed": feed,
            "checkpoints": str(Path(storage_path) / fit_name(cfg, seed)),
        },
        scaling_config=ScalingConfig(num_workers=cfg.train.num_workers, use_gpu=cfg.train.use_gpu),
        run_config=RunConfig(
            name=fit_name(cfg, seed),
            storage_path=str(storage_path),
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.num_to_keep),
        ),
    )
    trainer.fit()


def _validate(cfg: Config, stage: Stage, items: list[TrainItem]) -> None:
    where = "actors/student_train.py: StreamingFit.train"
    try:
        get_method(stage.method)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    if not (Path(stage.init_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{where}: init_dir {stage.init_dir} holds no transformers student (config.json)")
    validate_items(items, cfg.train.num_workers, where)


def train_student(
    cfg: Config, first: Stage, items: list[TrainItem], storage_path: str, seed: int, *, iterations: int = 1
) -> list[FitResult]:
    """Train ``first.method`` on fixed ``items`` for ``iterations`` stages, numbered from ``first.iteration`` (it
    seeds the batches and dropout), in a fit of its own (tests, benchmarks) -> every stage's result."""
    stages = [replace(first, iteration=first.iteration + k) for k in range(iterations)]
    _validate(cfg, first, items)  # before any fit starts
    with StreamingFit(cfg, seed, storage_path) as fit:
        return [fit.train(stage, items) for stage in stages]


def fit_name(cfg: Config, seed: int) -> str:
    """Ray Train's run name of a seed's fit: its checkpoints are under storage/name."""
    return f"{cfg.run.name}-seed{seed}"
