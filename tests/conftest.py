"""Shared fixtures: a real local Ray on loopback, a tiny random-init causal LM, the built-in teacher.

Nothing here reaches the network: models are built from configs, tokenizers trained on the toy task's text.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports transformers or starts Ray: no hub, and Ray stays on 127.0.0.1.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

TEST_NAMESPACE = "qcrd-tests"


def _init_ray(attempts: int = 3):
    """``ray.init`` on loopback, or joins ``$QCRD_TEST_RAY_ADDRESS`` (a cluster started by hand) when set.

    On a CPU-starved machine Ray's raylet gives up on its slow-starting agents ("timed out during startup");
    that says nothing about the code under test, so startup is tried again a few times.
    """
    import ray

    address = os.environ.get("QCRD_TEST_RAY_ADDRESS")
    if address:
        ray.init(address=address, namespace=TEST_NAMESPACE)
        return
    for attempt in range(1, attempts + 1):
        try:
            # address="local": a new instance even where `ray start` left one running (tests stay independent).
            ray.init(
                address="local",
                num_cpus=2,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                namespace=TEST_NAMESPACE,
            )
            return
        except Exception as err:  # Ray raises a bare Exception here
            if "timed out during startup" not in str(err) or attempt == attempts:
                raise
            ray.shutdown()


@pytest.fixture(scope="session")
def _ray_session():
    """Starts Ray once per session (or reuses one already running) and shuts down only what it started."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        _init_ray()
    yield ray
    if started_here and ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def ray_local(_ray_session):
    """The ``ray`` module with a real local Ray running on 127.0.0.1 (2 CPUs, no dashboard).

    Shared by the session; started again if a module's own fixture shut its Ray down in between.
    """
    if not _ray_session.is_initialized():
        _init_ray()
    return _ray_session


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory) -> Path:
    """A random-init tiny Llama + byte-level BPE saved with ``save_pretrained`` (its text is gibberish:
    for the mechanics of sampling, caching and actors, not for parseable answers)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from qcrd_ray.builtin_teacher import train_teacher_tokenizer
    from qcrd_ray.toy import generate_split, prompt_text

    out = tmp_path_factory.mktemp("tiny_causal_lm")
    texts = [prompt_text(ex.input) + " So the answer is 5." for ex in generate_split("train", 200, seed=0)]
    tokenizer = train_teacher_tokenizer(texts, vocab_size=300)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def builtin_teacher_dir() -> Path:
    """The built-in arithmetic teacher: the build shipped in ``qcrd_ray/assets`` (nothing is trained here)."""
    from qcrd_ray.builtin_teacher import ensure_builtin_teacher

    return ensure_builtin_teacher()
