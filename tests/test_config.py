"""Config: YAML + dotted overrides, frozen, and errors that name the key path."""

import dataclasses
from pathlib import Path

import pytest

from qcrd_ray.config import Config, ConfigError, from_dict, load_config, parse_overrides

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_embedded_default_is_valid_and_frozen():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.data.source == "toy" and cfg.loss.aggregation == "minmax"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_preset_loads(path):
    cfg = load_config(path)
    assert cfg.run.name


@pytest.mark.parametrize("path", [p for p in CONFIGS if "_t5_" in p.name], ids=lambda p: p.name)
def test_presets_put_the_judge_and_sampler_on_gpus_and_read_through_datasets(path):
    cfg = load_config(path)
    assert cfg.judge.num_gpus == cfg.sampler.num_gpus == 1 and cfg.train.use_gpu
    assert cfg.data.source == "hf"


def test_paper_presets_keep_the_papers_numbers():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "svamp_t5_base.yaml")
    assert (cfg.teacher.num_samples, cfg.teacher.temperature) == (5, 0.7)
    assert (cfg.negatives.lag, cfg.negatives.temperature) == (5, 1.5)
    assert (cfg.loss.beta, cfg.loss.delta, cfg.loss.alpha_judge_decay) == (0.2, 3.0, 0.9)
    assert (cfg.train.lr, cfg.train.batch_size) == (5e-5, 64)
    assert cfg.student.model == "google-t5/t5-base"


def test_dotted_overrides_parse_yaml_scalars():
    cfg = load_config(None, ["train.lr=3e-4", "run.method=dss", "data.max_train_examples=10", "run.use_judge=false"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.run.method == "dss"
    assert cfg.data.max_train_examples == 10
    assert cfg.run.use_judge is False
    assert parse_overrides(["run.name=a.b"]) == {"run.name": "a.b"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.lrr=1"], "train.lrr: unknown key"),
        (["trainer.lr=1"], "trainer: unknown section"),
        (["train.lr=fast"], "train.lr: expected float"),
        (["train.lr=-1"], "train.lr: expected a float > 0"),
        (["loss.aggregation=median"], "loss.aggregation: expected one of"),
        (["train.zero_stage=4"], "train.zero_stage"),
        (["judge.pretrain_steps=501"], "judge.pretrain_steps"),
        (["train.steps_per_iteration=2.5"], "train.steps_per_iteration: expected int"),
        (["teacher.backend=openai"], "teacher.endpoint"),
        (["teacher.vllm_engine_args=eager"], "teacher.vllm_engine_args: expected dict"),
        (["teacher.vllm_engine_args={seed: 3}"], "teacher.vllm_engine_args: expected no model"),
        (["train.precision=fp16"], "train.precision"),
        (["lr"], "expected KEY=VALUE"),
        # every section validates every field, and a number is a finite one (issue 16)
        (["train.lr=.inf"], "train.lr: expected a finite number"),
        (["loss.delta=.nan"], "loss.delta: expected a finite number"),
        (["eval.batch_size=0"], "eval.batch_size: expected an integer >= 1"),
        (["eval.max_new_tokens=0"], "eval.max_new_tokens: expected an integer >= 1"),
        (["eval.curve_size=100"], "eval.curve_size: expected null or a positive multiple of eval.batch_size"),
        (["student.tiny.d_model=0"], "student.tiny.d_model: expected an integer >= 1"),
        (["judge.tiny.num_heads=3"], "judge.tiny.d_model: expected a multiple of num_heads"),
        (["student.max_input_length=1"], "student.max_input_length: expected an integer >= 2"),
        (["cluster.placement_timeout_s=-1"], "cluster.placement_timeout_s: expected a float > 0"),
        (["train.weight_decay=-1"], "train.weight_decay: expected a float >= 0"),
        (["sampler.num_gpus=-1"], "sampler.num_gpus: expected a float >= 0"),
        (["judge.num_cpus=0"], "judge.num_cpus: expected more than 0"),
        (["sampler.num_replicas=0"], "sampler.num_replicas: expected an integer >= 1"),
        (["judge.num_replicas=-2"], "judge.num_replicas: expected an integer >= 1"),
        (["judge.num_replicas=1.5"], "judge.num_replicas: expected int"),
        (["train.epochs_per_iteration=0"], "train.epochs_per_iteration: expected a float > 0"),
        (["train.lr=[1,"], "the value is not valid YAML"),
        # the judge is served from a saved run by jobs.serve_judge, not by a config switch nothing read
        (["judge.serve=true"], "judge.serve: unknown key"),
    ],
)
def test_bad_values_name_the_key_path(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, overrides)


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: train\.batch_size: expected int"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"run:\n  name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1\.yaml:2: not UTF-8 \(byte 0xe9\)"):
        load_config(tmp_path / "latin1.yaml")


def test_to_dict_round_trips():
    cfg = load_config(None, ["negatives.lag=3"])
    assert from_dict(cfg.to_dict()) == cfg


def test_run_baselines_are_a_list_of_baseline_names():
    """run.baselines picks what a contrastive run is compared with; DSS-greedy is one of them, opt-in."""
    from qcrd_ray.methods import methods_of

    assert methods_of(load_config().run) == ["finetune", "dss", "qcrd"]
    cfg = load_config(None, ["run.baselines=[dss_greedy, finetune]"])
    assert cfg.run.baselines == ("dss_greedy", "finetune")  # a tuple: the config stays frozen
    assert methods_of(cfg.run) == ["finetune", "dss_greedy", "qcrd"]  # the registry's order
    assert methods_of(load_config(None, ["run.baselines=[]"]).run) == ["qcrd"]
    assert methods_of(load_config(None, ["run.method=dss"]).run) == ["dss"]
    with pytest.raises(ConfigError, match=r"run\.baselines: expected a list of 'finetune'.*got 'qcrd'"):
        load_config(None, ["run.baselines=[qcrd]"])
    with pytest.raises(ConfigError, match=r"run\.baselines: expected a list of str"):
        load_config(None, ["run.baselines=dss"])
    with pytest.raises(ConfigError, match="no name twice"):
        load_config(None, ["run.baselines=[dss, dss]"])
    with pytest.raises(ConfigError, match="greedy answer with teacher.backend 'dataset'"):
        load_config(None, ["run.baselines=[dss_greedy]", "teacher.backend=dataset"])
