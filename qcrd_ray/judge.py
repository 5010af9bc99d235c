"""The quality judge D (docs/METHOD.md section 4): score, pretrain, update online, save and load.

D reads (question, rationale) and gives s in [0, 1]. It is pretrained on the teacher's positives against its
negatives (classes balanced by ``qcrd_ray.augment``), scores every iteration's rationales in large batches, and
is updated online after each iteration. a3's decay acts on those updates through their learning rate
(``update_lr * lr_scale``, with ``lr_scale = a3_t / a3_0``): D has an optimizer of its own, and AdamW is blind to the
scale of its loss, so multiplying the loss by a3 would change nothing. ``actors/judge.py`` holds D in Ray
actors, a pool of ``judge.num_replicas`` that split the scoring while the first alone trains and hands its
``weights()`` to the others (and serves a saved D over HTTP); everything here is plain torch.

A save is a directory ``v{version:04d}`` (``models.save_judge`` plus the optimizer state and a small
``judge_state.json``) under the save root; the root's ``LATEST`` marker is written last, so a crash during a
save never leaves a half version that looks whole.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from qcrd_ray.augment import balance_negatives
from qcrd_ray.config import JudgeConfig
from qcrd_ray.losses import judge_level_loss, judge_loss
from qcrd_ray.models import build_judge, judge_encoder, judge_text, load_judge, save_judge
from qcrd_ray.precision import compute_dtype
from qcrd_ray.records import Group  # (question, positives, negatives): what D trains on
from qcrd_ray.tokenizer import load_tokenizer

LATEST = "LATEST"
JUDGE_STATE_FILE = "judge_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"  # torch's generator (dropout): a resumed run's next update draws what an unbroken one would
MAX_KEPT_SCORES = 10_000  # the histogram in state() needs a sample, not every score of a long run


def resolve_judge_dir(path: str | os.PathLike) -> Path:
    """A version directory itself, or the version a save root's ``LATEST`` marker names."""
    path = Path(path)
    marker = path / LATEST
    if marker.is_file():
        path = path / marker.read_text().strip()
    if not (path / JUDGE_STATE_FILE).is_file():
        raise FileNotFoundError(f"{path}: not a saved judge (no {JUDGE_STATE_FILE}, no {LATEST} marker)")
    return path


def score_texts(
    model, tokenizer, texts: Sequence[str], *, batch_size: int, max_length: int, dtype: torch.dtype = torch.float32
) -> list[float]:
    """D's score in [0, 1] for each already-formatted judge text, in batches, computed in ``dtype``; no gradients.

    Texts are batched in order of length so that a batch carries little padding; scores come back in input order.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    scores = [0.0] * len(texts)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast(device, dtype):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            batch_scores = model(enc["input_ids"].to(device), enc["attention_mask"].to(device))  # [B]
            for i, s in zip(idx, batch_scores.float().cpu().tolist(), strict=True):
                scores[i] = s
    model.train(was_training)
    return scores


def autocast(device: torch.device, dtype: torch.dtype):
    """Compute in ``dtype`` (bf16: autocast, the weights stay fp32); nothing for fp32."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


class QualityJudge:
    """D with its optimizer: pretrain, score, update online, save and load. ``actors.judge.JudgeActor`` wraps it."""

    def __init__(self, cfg: JudgeConfig, student_dir: str, seed: int):
        """D for ``cfg`` on the run's initial student ``student_dir`` (``judge.encoder: student``: its encoder and
        tokenizer; a tiny encoder reads with its tokenizer too), its head seeded by ``seed``."""
        if not student_dir:
            raise ValueError("QualityJudge: student_dir (the run's initial student, or its tokenizer) is required")
        self.cfg = cfg
        self.seed = seed
        torch.manual_seed(seed)
        encoder = judge_encoder(cfg.encoder, student_dir)
        self.tokenizer = load_tokenizer(encoder if encoder is not None else student_dir)
        self.model = build_judge(cfg, self.tokenizer, seed=seed, encoder=encoder)
        if cfg.num_gpus > 0 and torch.cuda.is_available():
            self.model.to("cuda")
        self.dtype = compute_dtype(cfg.dtype, next(self.model.parameters()).device)
        self.optimizer = self._new_optimizer()
        self.rng = random.Random(seed)
        self._version = 0
        self._steps = 0
        self._last_losses: list[float] = []
        self._last_scores: list[float] = []

    def _new_optimizer(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr)

    # ---------------------------------------------------------------------------------------------------
    # training

    def _group_scores(self, batch: Sequence[Group]):
        """D's scores for a batch of groups, padded: pos [N, P], pos_mask [N, P], neg [N, M], neg_mask [N, M]."""
        texts, pos_index, neg_index = [], [], []
        for question, positives, negatives in batch:
            pos_index.append(list(range(len(texts), len(texts) + len(positives))))
            texts += [judge_text(question, r) for r in positives]
            neg_index.append(list(range(len(texts), len(texts) + len(negatives))))
            texts += [judge_text(question, r) for r in negatives]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.cfg.max_length, return_tensors="pt")
        device = next(self.model.parameters()).device
        with autocast(device, self.dtype):
            flat = self.model(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float()  # [T]
        # One extra zero at index T is what padded slots gather; the masks keep it out of the loss.
        flat = torch.cat([flat, flat.new_zeros(1)])

        def pad(rows: list[list[int]]):
            width = max(len(r) for r in rows)
            index = torch.full((len(rows), width), len(texts), dtype=torch.long, device=device)
            for i, r in enumerate(rows):
                index[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            return flat[index], index < len(texts)

        pos_scores, pos_mask = pad(pos_index)
        neg_scores, neg_mask = pad(neg_index)
        return pos_scores, pos_mask, neg_scores, neg_mask

    def train_steps(self, groups: list[Group], steps: int, lr: float) -> list[float]:
        """``steps`` AdamW steps at learning rate ``lr`` on L_D over batches of ``cfg.batch_size`` groups
        (epochs reshuffled); returns the losses."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        losses: list[float] = []
        order: list[int] = []
        for _ in range(steps):
            if len(order) < min(self.cfg.batch_size, len(groups)):
                fresh = list(range(len(groups)))
                self.rng.shuffle(fresh)
                order += fresh
            batch = [groups[i] for i in order[: self.cfg.batch_size]]
            del order[: self.cfg.batch_size]
            pos, pos_mask, neg, neg_mask = self._group_scores(batch)
            loss = judge_loss(pos, pos_mask, neg, neg_mask, self.cfg.loss_form)
            if self.cfg.level_weight > 0:
                loss = loss + self.cfg.level_weight * judge_level_loss(pos, pos_mask, neg, neg_mask)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            losses.append(float(loss.detach()))
            self._steps += 1
        return losses

    @staticmethod
    def _usable(groups: Sequence[Group]) -> list[Group]:
        """Groups that can enter L_D: at least one positive and one negative."""
        return [(q, list(p), list(n)) for q, p, n in groups if len(p) > 0 and len(n) > 0]

    def _finish(self, phase: str, losses: list[float], num_groups: int, extra: dict[str, Any]) -> dict[str, Any]:
        self._version += 1
        self._last_losses = losses
        return {
            "phase": phase,
            "version": self._version,
            "steps": len(losses),
            "total_steps": self._steps,
            "num_groups": num_groups,
            "losses": losses,
            "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None,
            **extra,
        }

    def balanced(self, groups: Sequence[Group]) -> tuple[list[Group], int]:
        """``groups`` with each one's negatives topped up to its number of positives with corrupted positives
        (so the classes are balanced), less the groups left without a positive or a negative; and how many
        negatives were made."""
        balanced, num_augmented = [], 0
        for question, positives, negatives in groups:
            extra = balance_negatives(list(positives), list(negatives), self.rng, self.cfg.mask_probability)
            num_augmented += len(extra)
            balanced.append((question, list(positives), [*negatives, *extra]))
        return self._usable(balanced), num_augmented

    def pretrain(self, groups: Sequence[Group]) -> dict[str, Any]:
        """Pretrain on the teacher's (question, positives, negatives), ``balanced``: ``cfg.pretrain_steps`` steps
        at ``cfg.lr``."""
        usable, num_augmented = self.balanced(groups)
        if not usable and self.cfg.pretrain_steps > 0:
            raise ValueError(f"QualityJudge.pretrain: none of {len(groups)} groups has a positive to learn from")
        losses = self.train_steps(usable, self.cfg.pretrain_steps, self.cfg.lr)
        return self._finish("pretrain", losses, len(usable), {"num_augmented": num_augmented})

    def update(self, groups: Sequence[Group], lr_scale: float) -> dict[str, Any]:
        """Online update after an iteration: ``cfg.update_steps`` steps at ``cfg.update_lr * lr_scale``
        (``schedule.judge_lr_scale``: a3_t / a3_0, so the updates weaken as a3 decays; 0 skips them).

        The iteration's negatives (teacher minority + student samples) are real, so nothing is augmented here.
        """
        if not 0.0 <= lr_scale <= 1.0:
            raise ValueError(f"QualityJudge.update: lr_scale must be in [0, 1], got {lr_scale!r}")
        usable = self._usable(groups)
        steps = self.cfg.update_steps if usable and lr_scale > 0 else 0
        losses = self.train_steps(usable, steps, self.cfg.update_lr * lr_scale)
        return self._finish("update", losses, len(usable), {"lr_scale": lr_scale})

    # ---------------------------------------------------------------------------------------------------
    # scoring, state, persistence

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """D(x, r) in [0, 1] for each (question, rationale) pair, in batches of ``cfg.score_batch_size``."""
        texts = [judge_text(q, r) for q, r in pairs]
        scores = score_texts(
            self.model,
            self.tokenizer,
            texts,
            batch_size=self.cfg.score_batch_size,
            max_length=self.cfg.max_length,
            dtype=self.dtype,
        )
        if scores:  # an empty call keeps the last histogram
            self._last_scores = scores[-MAX_KEPT_SCORES:]
        return scores

    def version(self) -> int:
        """How many times D has been trained (pretrain or update); 0 for a fresh D."""
        return self._version

    def state(self) -> dict[str, Any]:
        """Version, total optimizer steps, the last phase's losses and the last scores (for a histogram)."""
        return {
            "version": self._version,
            "steps": self._steps,
            "last_losses": list(self._last_losses),
            "last_scores": list(self._last_scores),
        }

    def weights(self) -> dict[str, Any]:
        """What another replica needs to score as this one does: a copy of D's weights (on the CPU), its version
        and step count."""
        model = {name: tensor.detach().to("cpu", copy=True) for name, tensor in self.model.state_dict().items()}
        return {"model": model, "version": self._version, "steps": self._steps}

    def load_weights(self, weights: dict[str, Any]) -> int:
        """Take another replica's ``weights()`` (the one that trains); returns the version now held. The
        optimizer and random state stay: a replica that only scores never uses them."""
        self.model.load_state_dict(weights["model"])
        self._version, self._steps = int(weights["version"]), int(weights["steps"])
        return self._version

    def save(self, root: str) -> str:
        """Save D, its tokenizer, optimizer and random state under ``root/v{version:04d}``; then point
        ``root/LATEST`` at it."""
        target = Path(root) / f"v{self._version:04d}"
        target.mkdir(parents=True, exist_ok=True)
        save_judge(self.model, self.tokenizer, target)
        torch.save(self.optimizer.state_dict(), target / OPTIMIZER_FILE)
        torch.save(torch.get_rng_state(), target / RNG_FILE)
        state = {
            "version": self._version,
            "steps": self._steps,
            "max_length": self.cfg.max_length,
            "score_batch_size": self.cfg.score_batch_size,
            "rng": self.rng.getstate(),  # the batch order of the next update
        }
        (target / JUDGE_STATE_FILE).write_text(json.dumps(state, indent=2))
        tmp = Path(root) / f"{LATEST}.tmp"
        tmp.write_text(target.name)
        os.replace(tmp, Path(root) / LATEST)
        return str(target)

    def load(self, path: str) -> int:
        """Load a version directory (or a save root's latest); returns the loaded version."""
        path = resolve_judge_dir(path)
        self.model, self.tokenizer = load_judge(path)
        self.optimizer = self._new_optimizer()
        if (path / OPTIMIZER_FILE).is_file():
            self.optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, weights_only=True))
        state = json.loads((path / JUDGE_STATE_FILE).read_text())
        self._version, self._steps = int(state["version"]), int(state["steps"])
        if "rng" in state:
            version, internal, gauss = state["rng"]
            self.rng.setstate((version, tuple(internal), gauss))
        if (path / RNG_FILE).is_file():
            torch.set_rng_state(torch.load(path / RNG_FILE, weights_only=True))
        return self._version
