"""Typed, frozen run configuration: YAML in, dotted overrides, validation that raises.

Every section is a frozen dataclass. ``load_config`` reads YAML, applies ``--set a.b=c`` overrides and
builds the tree; an unknown key, a wrong type or a value out of range raises ``ConfigError`` naming the
key path (``train.lr``) and what was expected. Nothing is ever silently rewritten.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from qcrd_ray.methods import METHODS, methods_of
from qcrd_ray.teacher_config import TeacherConfig, VotingConfig
from qcrd_ray.typed_config import ConfigError, build, check, parse_overrides, set_dotted


@dataclass(frozen=True)
class TinyModelConfig:
    """A randomly initialised model built from a config (tests, the embedded default)."""

    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    d_ff: int = 128

    def validate(self, p: str) -> None:
        for key in ("d_model", "num_layers", "num_heads", "d_ff"):
            check(getattr(self, key) >= 1, f"{p}.{key}", "an integer >= 1", getattr(self, key))
        check(
            self.d_model % self.num_heads == 0,
            f"{p}.d_model",
            f"a multiple of num_heads ({self.num_heads})",
            self.d_model,
        )


@dataclass(frozen=True)
class RunConfig:
    name: str = "qcrd"
    output_dir: str = "runs/qcrd"
    seed: int = 0
    method: str = "qcrd"  # a name of qcrd_ray.methods.METHODS
    # With a contrastive method, also train these baselines on the same student, data, steps and seed, for the
    # report ([] for none): "finetune", "dss" (the teacher's first sample), "dss_greedy" (its greedy answer).
    baselines: tuple[str, ...] = ("finetune", "dss")
    iterations: int = 5
    # Ablations of the full method (docs/METHOD.md section 7's component ablation).
    self_consistency: bool = True
    student_negatives: bool = True
    use_judge: bool = True

    def validate(self, p: str) -> None:
        check(self.method in METHODS, f"{p}.method", "one of " + ", ".join(map(repr, METHODS)), self.method)
        baselines = [name for name, m in METHODS.items() if not m.contrastive]
        for name in self.baselines:
            check(name in baselines, f"{p}.baselines", "a list of " + ", ".join(map(repr, baselines)), name)
        check(len(set(self.baselines)) == len(self.baselines), f"{p}.baselines", "no name twice", self.baselines)
        check(self.iterations >= 1, f"{p}.iterations", "an integer >= 1", self.iterations)
        check(bool(self.name) and "/" not in self.name, f"{p}.name", "a non-empty name without '/'", self.name)


@dataclass(frozen=True)
class DataConfig:
    # toy: the built-in arithmetic task; hf: HF datasets (a hub name or a local copy, qcrd_ray/hf_data.py);
    # dss: the DSS release; jsonl: the project's own format.
    source: Literal["toy", "hf", "dss", "jsonl"] = "toy"
    task: Literal["arith", "svamp", "cqa", "anli1", "esnli"] = "arith"
    path: str = "../shared/data/dss"
    hf_config: str | None = None  # hf: the dataset's configuration name (cos_e: v1.11)
    train_split: str = "train"
    eval_split: str = "test"
    # Fraction of train held out for validation when the dataset has no validation split (DSS: 10%, seed 0).
    validation_fraction: float = 0.1
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    # The built-in task (source: toy): "piles" (qcrd_ray/toy.py: one person's pile, the equation copied from
    # the story) or "stories" (qcrd_ray/stories.py: two people in SVAMP's structures), and its sizes.
    toy_task: Literal["piles", "stories"] = "stories"
    toy_train_size: int = 1000  # 500 leave DSS's and QCRD's label path bimodal over seeds (studies/README.md)
    toy_eval_size: int = 1000  # 200 give a standard error of 3.4 points at 65%; the curve uses eval.curve_size
    # A longer record (a line of a JSONL file, a teacher output) fails at load, naming its file and line.
    max_record_chars: int = 100_000

    def validate(self, p: str) -> None:
        check(
            0.0 <= self.validation_fraction < 1.0,
            f"{p}.validation_fraction",
            "a float in [0, 1)",
            self.validation_fraction,
        )
        for key in ("max_train_examples", "max_eval_examples"):
            v = getattr(self, key)
            check(v is None or v >= 1, f"{p}.{key}", "null or an integer >= 1", v)
        check(self.toy_train_size >= 1, f"{p}.toy_train_size", "an integer >= 1", self.toy_train_size)
        check(self.toy_eval_size >= 1, f"{p}.toy_eval_size", "an integer >= 1", self.toy_eval_size)
        check(self.max_record_chars >= 1, f"{p}.max_record_chars", "an integer >= 1", self.max_record_chars)
        check(self.source != "toy" or self.task == "arith", f"{p}.task", "'arith' when data.source is 'toy'", self.task)


@dataclass(frozen=True)
class NegativesConfig:
    lag: int = 1  # j: negatives come from the student snapshot of iteration t - j
    temperature: float = 1.5
    samples_per_question: int = 1
    include_teacher_minority: bool = True
    max_per_question: int = 4
    batch_size: int = 128
    max_new_tokens: int = 160  # the stories' rationales run to ~110 of the student's tokens
    # Sample iteration t + 1's negatives while t trains (the first iteration's while the judge pretrains): their
    # snapshot, t + 1 - j, exists by then (for j = 1 it is the one t starts from). The samples are the same
    # either way (seeded per iteration and chunk). Off by default: on a CPU-only machine the samplers and the fit
    # share the cores, and the default's QCRD iterations took 2x as long with it (README); the presets, whose
    # samplers have GPUs of their own, turn it on.
    sample_ahead: bool = False

    def validate(self, p: str) -> None:
        check(self.lag >= 1, f"{p}.lag", "an integer >= 1", self.lag)
        check(self.temperature > 0.0, f"{p}.temperature", "a float > 0", self.temperature)
        for key in ("samples_per_question", "max_per_question", "batch_size", "max_new_tokens"):
            check(getattr(self, key) >= 1, f"{p}.{key}", "an integer >= 1", getattr(self, key))


@dataclass(frozen=True)
class JudgeConfig:
    # Encoder of D: "student" (the run's initial student: its T5 encoder, or a decoder-only student's
    # transformer, with its tokenizer), a hub name, local directory or builtin: name, or null for a tiny
    # random-init T5 encoder over the student's tokenizer.
    encoder: str | None = "student"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    hidden_size: int = 128
    # Pretraining: steps and rate chosen by the held-out AUC on the story task (studies/README.md, issue 33).
    pretrain_steps: int = 500
    lr: float = 3e-4
    update_interval: int = 1  # online update every this many iterations
    update_steps: int = 12
    update_lr: float = 1e-4  # online updates (times a3_t / a3_0): their own rate, so D drifts, not swings
    # Share of the training questions D never trains on: its held-out AUCs per iteration are measured there.
    holdout_fraction: float = 0.1
    batch_size: int = 8  # groups (a question's positives and negatives) per step
    score_batch_size: int = 128
    max_length: int = 256
    loss_form: Literal["infonce", "paper_printed"] = "infonce"
    # Weight of a binary cross-entropy term (positives -> 1, negatives -> 0) added to L_D in pretraining and
    # updates. L_D sees only differences of scores, so alone it lets their level drift (to 0.003 or 0.995 within
    # 100 steps on the student's encoder); this pins the level, which QCRD uses as its weights.
    level_weight: float = 1.0
    mask_probability: float = 0.15
    # What each judge actor asks of its node (half a CPU: it shares one with the student sampler on a laptop),
    # and how many score each iteration's pairs (the online update runs on the first; the others load it).
    num_cpus: float = 0.5
    num_gpus: float = 0.0
    num_replicas: int | Literal["auto"] = 1  # auto: sized to the cluster when the run starts (qcrd_ray/pool_sizing.py)
    # auto: bf16 on a GPU (autocast: the weights and Adam stay fp32), fp32 on the CPU.
    dtype: Literal["auto", "fp32", "bf16"] = "auto"

    def validate(self, p: str) -> None:
        check(
            0 <= self.pretrain_steps <= 500,
            f"{p}.pretrain_steps",
            "an integer in [0, 500] (docs/METHOD.md: at most 500)",
            self.pretrain_steps,
        )
        check(self.lr > 0, f"{p}.lr", "a float > 0", self.lr)
        check(self.update_lr > 0, f"{p}.update_lr", "a float > 0", self.update_lr)
        check(0.0 <= self.holdout_fraction < 1.0, f"{p}.holdout_fraction", "a float in [0, 1)", self.holdout_fraction)
        check(self.level_weight >= 0, f"{p}.level_weight", "a float >= 0", self.level_weight)
        check(0.0 <= self.mask_probability < 1.0, f"{p}.mask_probability", "a float in [0, 1)", self.mask_probability)
        for key in ("hidden_size", "update_interval", "batch_size", "score_batch_size", "max_length"):
            check(getattr(self, key) >= 1, f"{p}.{key}", "an integer >= 1", getattr(self, key))
        check(self.update_steps >= 0, f"{p}.update_steps", "an integer >= 0", self.update_steps)
        check_resources(self, p)


@dataclass(frozen=True)
class SamplerConfig:
    """The student sampler actors (negatives and evaluation): what each asks of its node, and how many."""

    num_cpus: float = 0.5
    num_gpus: float = 0.0
    num_replicas: int | Literal["auto"] = 1  # auto: sized to the cluster when the run starts (qcrd_ray/pool_sizing.py)
    dtype: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on a GPU, fp32 on the CPU

    def validate(self, p: str) -> None:
        check_resources(self, p)


def check_resources(section, p: str) -> None:
    """An actor pool's ``num_cpus`` and ``num_gpus`` (at least something, nothing negative) and ``num_replicas``
    (a count, or ``auto``)."""
    check(section.num_cpus >= 0, f"{p}.num_cpus", "a float >= 0", section.num_cpus)
    check(section.num_gpus >= 0, f"{p}.num_gpus", "a float >= 0", section.num_gpus)
    check(section.num_cpus + section.num_gpus > 0, f"{p}.num_cpus", "more than 0 (or num_gpus > 0)", section.num_cpus)
    replicas = section.num_replicas
    check(replicas == "auto" or replicas >= 1, f"{p}.num_replicas", "an integer >= 1 or auto", replicas)


@dataclass(frozen=True)
class StudentConfig:
    # A hub name or local directory; "builtin:arith-student" is the project's pretrained tiny T5 (shipped);
    # null builds a tiny random-init model of `architecture` from `tiny` (tests, the decoder-only path).
    model: str | None = "builtin:arith-student"
    architecture: Literal["seq2seq", "causal"] = "seq2seq"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    # Tokenizer for tiny models: a directory (or hub name), or "train" (a BPE trained on the run's texts).
    tokenizer: str = "train"
    max_input_length: int = 1024
    max_target_length: int = 256

    def validate(self, p: str) -> None:
        for key in ("max_input_length", "max_target_length"):
            check(getattr(self, key) >= 2, f"{p}.{key}", "an integer >= 2", getattr(self, key))


@dataclass(frozen=True)
class LossConfig:
    alpha_pred: float = 0.5  # a1
    alpha_cl: float = 0.5  # a2
    alpha_judge: float = 0.5  # a3
    alpha_judge_decay: float = 0.9  # a3 *= decay every iteration
    dss_alpha: float = 0.5  # DSS: a * CE(label) + (1 - a) * CE(rationale)
    beta: float = 0.2
    delta: float = 3.0
    aggregation: Literal["minmax", "maxmin", "sampling", "mean", "weighted_mean"] = "minmax"

    def validate(self, p: str) -> None:
        for key in ("alpha_pred", "alpha_cl", "alpha_judge", "beta", "delta"):
            check(getattr(self, key) >= 0, f"{p}.{key}", "a float >= 0", getattr(self, key))
        check(
            0.0 < self.alpha_judge_decay <= 1.0, f"{p}.alpha_judge_decay", "a float in (0, 1]", self.alpha_judge_decay
        )
        check(0.0 <= self.dss_alpha <= 1.0, f"{p}.dss_alpha", "a float in [0, 1]", self.dss_alpha)


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 2e-3
    # linear: from lr down to 0 over the run's steps, as transformers' Trainer (DSS's) does; constant: lr throughout.
    lr_schedule: Literal["constant", "linear"] = "linear"
    # The run's first warmup_ratio of steps rise linearly to lr (under either schedule), as the Trainer's
    # warmup_ratio: without it, some seeds' first steps at the full rate set them back for the whole run.
    warmup_ratio: float = 0.1
    batch_size: int = 16  # global batch (questions) per optimizer step
    # An iteration is `steps_per_iteration` optimizer steps, or `epochs_per_iteration` passes over the
    # training questions (docs/METHOD.md section 10: snapshot t - j should be a trained student).
    iteration_unit: Literal["steps", "epochs"] = "steps"
    steps_per_iteration: int = 120
    epochs_per_iteration: float = 1.0
    # Batches of questions of similar length (transformers' group_by_length; student_iteration.batch_indices):
    # 1.10x faster steps in the default, but its students learnt 4-10 points less (studies/README.md).
    group_by_length: bool = False
    weight_decay: float = 0.0
    num_workers: int = 1
    use_gpu: bool = False
    zero_stage: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    max_failures: int = 1
    num_to_keep: int = 2

    def validate(self, p: str) -> None:
        check(self.lr > 0, f"{p}.lr", "a float > 0", self.lr)
        check(self.epochs_per_iteration > 0, f"{p}.epochs_per_iteration", "a float > 0", self.epochs_per_iteration)
        check(self.weight_decay >= 0, f"{p}.weight_decay", "a float >= 0", self.weight_decay)
        check(0.0 <= self.warmup_ratio < 1.0, f"{p}.warmup_ratio", "a float in [0, 1)", self.warmup_ratio)
        for key in ("batch_size", "steps_per_iteration", "num_workers", "num_to_keep"):
            check(getattr(self, key) >= 1, f"{p}.{key}", "an integer >= 1", getattr(self, key))
        check(self.zero_stage in (0, 1, 2, 3), f"{p}.zero_stage", "one of 0, 1, 2, 3", self.zero_stage)
        check(self.max_failures >= -1, f"{p}.max_failures", "an integer >= -1", self.max_failures)
        check(
            self.use_gpu or self.precision != "fp16",
            f"{p}.precision",
            "fp32 or bf16 on CPU (DeepSpeed refuses fp16 there)",
            self.precision,
        )
        check(
            self.batch_size % self.num_workers == 0,
            f"{p}.batch_size",
            f"a multiple of train.num_workers ({self.num_workers})",
            self.batch_size,
        )


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 64
    max_new_tokens: int = 32  # the label on the predict: path
    rationale_max_new_tokens: int = 160  # a student's own rationale, and the answer read from it
    num_examples_in_report: int = 3
    # Which way of reading a student's answer the report leads with: the predict: path (the paper's, and the one
    # fine-tuning shares), or the answer its own rationale reaches (docs/METHOD.md section 9). Both are measured.
    lead_metric: Literal["predict", "rationale"] = "predict"
    # Every iteration but the last is evaluated on the split's first curve_size examples (the curve); the last
    # on all of them (the result). null: all of them every time.
    curve_size: int | None = 256

    def validate(self, p: str) -> None:
        for key in ("batch_size", "max_new_tokens", "rationale_max_new_tokens"):
            check(getattr(self, key) >= 1, f"{p}.{key}", "an integer >= 1", getattr(self, key))
        check(
            self.curve_size is None or (self.curve_size >= 1 and self.curve_size % self.batch_size == 0),
            f"{p}.curve_size",
            f"null or a positive multiple of eval.batch_size ({self.batch_size}): whole chunks of the split",
            self.curve_size,
        )
        check(
            self.num_examples_in_report >= 0,
            f"{p}.num_examples_in_report",
            "an integer >= 0",
            self.num_examples_in_report,
        )


@dataclass(frozen=True)
class ClusterConfig:
    # null: join a running cluster if RAY_ADDRESS says so, else start a local one (on 127.0.0.1).
    address: str | None = None
    namespace: str = "qcrd"
    num_cpus: int | None = None
    # On an autoscaling cluster a phase may ask for nodes that do not exist yet: warn and wait (bounded)
    # instead of failing the feasibility check.
    autoscaling: bool = False
    placement_timeout_s: float = 900.0
    # A local Ray's Prometheus endpoint (http://127.0.0.1:<port>/metrics); null lets Ray pick a free port, which
    # `ray metrics launch-prometheus` finds on its own. On a cluster `ray start --metrics-export-port` sets it.
    metrics_export_port: int | None = None

    def validate(self, p: str) -> None:
        check(self.num_cpus is None or self.num_cpus >= 1, f"{p}.num_cpus", "null or an integer >= 1", self.num_cpus)
        port = self.metrics_export_port
        check(port is None or 1 <= port <= 65535, f"{p}.metrics_export_port", "null or a port in 1-65535", port)
        check(self.placement_timeout_s > 0, f"{p}.placement_timeout_s", "a float > 0", self.placement_timeout_s)


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    voting: VotingConfig = field(default_factory=VotingConfig)
    negatives: NegativesConfig = field(default_factory=NegativesConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def validate(self, p: str) -> None:
        greedy = [m for m in methods_of(self.run) if METHODS[m].teacher == "greedy"]
        check(
            not greedy or self.teacher.backend != "dataset",
            "run.baselines",
            "no method that reads the teacher's greedy answer with teacher.backend 'dataset' (it has none)",
            greedy,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: a tuple comes out as the list config.json holds (a resume compares the two)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, overrides: dict[str, Any]) -> Config:
        """A new config with dotted-path overrides applied (``{"train.lr": 3e-4}``), validated."""
        raw = self.to_dict()
        for dotted, value in overrides.items():
            set_dotted(raw, dotted, value)
        return from_dict(raw)


def from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a ``Config`` from nested plain data (missing keys take their defaults)."""
    return build(Config, raw, "")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the embedded default when ``path`` is None) and apply ``KEY=VALUE`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            line = path.read_bytes()[: err.start].count(b"\n") + 1
            raise ConfigError(f"{path}:{line}: not UTF-8 (byte {err.object[err.start]:#04x})") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        config = from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from None
    if overrides:
        config = config.replace(parse_overrides(overrides))
    return config
