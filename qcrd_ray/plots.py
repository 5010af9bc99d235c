"""The report's figures: accuracy per iteration and the judge's score densities (PNG, matplotlib's Agg canvas)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def score_density(scores: list[float], grid_size: int = 201, bandwidth: float | None = None) -> tuple[Any, Any]:
    """Kernel density of scores in [0, 1]: (grid [grid_size], density [grid_size]) integrating to 1 on [0, 1].

    Scores are binned on the grid, then smoothed with a Gaussian (Scott's bandwidth, at least 0.02), which costs
    O(grid) whatever the number of scores; mass leaking past 0 or 1 is dropped and the rest renormalised.
    """
    x = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    grid = np.linspace(0.0, 1.0, grid_size)
    if x.size == 0:
        return grid, np.zeros(grid_size)
    step = grid[1] - grid[0]
    counts = np.bincount(np.rint(x / step).astype(np.int64), minlength=grid_size)[:grid_size].astype(np.float64)
    if bandwidth is None:
        bandwidth = max(1.06 * float(x.std()) * x.size ** (-0.2), 0.02)
    offsets = np.arange(-grid_size + 1, grid_size) * step
    kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2)
    # The full convolution is 3 * grid_size - 2 long; the kernel's centre sits at grid_size - 1.
    density = np.convolve(counts, kernel)[grid_size - 1 : 2 * grid_size - 1]
    return grid, density / (density.sum() * step)


def _figure(width: float = 7.0, height: float = 4.0) -> Any:
    # The object-oriented API with an explicit Agg canvas: no pyplot global state, no display needed.
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def plot_accuracy(curves: dict[str, list[list[float]]], teacher_accuracy: float | None, path: Path) -> bool:
    """Accuracy (%) per iteration: per label, one thin line per seed and a thick mean line (one seed: one line).

    ``curves[label][seed][i]`` is the accuracy in [0, 1] after iteration i + 1; the teacher's is a dashed line.
    """
    curves = {label: seeds for label, seeds in curves.items() if seeds}
    if not curves:
        return False
    fig = _figure()
    ax = fig.subplots()
    for i, (label, seeds) in enumerate(curves.items()):
        colour = f"C{i}"
        if len(seeds) == 1:
            ax.plot(range(1, len(seeds[0]) + 1), [100.0 * a for a in seeds[0]], color=colour, marker="o", label=label)
            continue
        for curve in seeds:
            ax.plot(range(1, len(curve) + 1), [100.0 * a for a in curve], color=colour, alpha=0.35, linewidth=1.0)
        # The mean runs as far as every seed's curve does.
        length = min(len(c) for c in seeds)
        mean = 100.0 * np.mean([c[:length] for c in seeds], axis=0)
        ax.plot(
            range(1, length + 1),
            mean,
            color=colour,
            linewidth=2.2,
            marker="o",
            label=f"{label} (mean of {len(seeds)} seeds)",
        )
    if teacher_accuracy is not None:
        ax.axhline(
            100.0 * teacher_accuracy, color="grey", linestyle="--", linewidth=1.0, label="teacher, self-consistency"
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _save(fig, ax, path, xlabel="iteration", ylabel="accuracy (%)", title="Student accuracy per iteration")
    return True


def plot_judge_scores(scores: dict[str, list[float]], kinds: tuple[tuple[str, str], ...], path: Path) -> bool:
    """Density of judge scores per (kind, label) of ``kinds``, the first kind against the rest (the paper's Fig. 6)."""
    if not scores[kinds[0][0]] or not any(scores[kind] for kind, _ in kinds[1:]):
        return False
    fig = _figure()
    ax = fig.subplots()
    for i, (kind, label) in enumerate(kinds):
        if scores[kind]:
            grid, density = score_density(scores[kind])
            ax.plot(grid, density, color=f"C{i}", linewidth=1.8, label=f"{label}, n={len(scores[kind])}")
            ax.fill_between(grid, density, color=f"C{i}", alpha=0.2)
    ax.set_xlim(0.0, 1.0)
    title = "Judge scores of positive and negative rationales (all seeds pooled)"
    _save(fig, ax, path, xlabel="judge score s = D(x, r)", ylabel="density", title=title)
    return True


def _save(fig: Any, ax: Any, path: Path, *, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
