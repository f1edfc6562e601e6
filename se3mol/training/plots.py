"""Plots each run writes: the learning curve and the test parity plot (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from se3mol.targets import Target


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(history: Sequence[dict[str, Any]], targets: Sequence[Target], path: Path) -> None:
    """Train loss and validation MAE per epoch."""
    plt = _plt()
    fig, ax1 = plt.subplots(figsize=(6.5, 4))
    ep = [r["epoch"] for r in history]
    ax1.plot(ep, [r["train_loss"] for r in history], color="tab:gray", label="train loss (standardised L1)")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss")
    ax1.set_yscale("log")
    ax2 = ax1.twinx()
    for t in targets:
        ax2.plot(ep, [r[f"val_mae_{t.column}"] for r in history], marker="o", ms=3, label=f"val MAE {t.name}")
    ax2.set_ylabel("validation MAE (" + ", ".join(f"{t.name}: {t.unit}" for t in targets) + ")")
    ax2.set_yscale("log")
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parity_plot(pred: Tensor, ref: Tensor, targets: Sequence[Target], path: Path, label: str = "test") -> None:
    """Predicted against reference values ``[M,D]`` (NaN where a label is missing), one panel per target (a
    tensor target's panel shows all nine components)."""
    plt = _plt()
    n = len(targets)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2), squeeze=False)
    col = 0
    for j, t in enumerate(targets):
        ax = axes[0, j]
        p, r = pred[:, col:col + t.width].reshape(-1).numpy(), ref[:, col:col + t.width].reshape(-1).numpy()
        col += t.width
        keep = np.isfinite(r)  # missing labels are not drawn
        p, r = p[keep], r[keep]
        if len(r) == 0:
            ax.set_title(f"{t.name}: no labels")
            continue
        mae = abs(p - r).mean()
        ax.scatter(r, p, s=2, alpha=0.3, rasterized=True)
        lo, hi = min(r.min(), p.min()), max(r.max(), p.max())
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set_xlabel(f"reference {t.name} ({t.unit})")
        ax.set_ylabel(f"predicted {t.name} ({t.unit})")
        ax.set_title(f"{t.name}: {label} MAE {mae:.4g} {t.unit} (n={len(r)})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def loss_curve(history: Sequence[dict[str, Any]], columns: Sequence[str], path: Path) -> None:
    """The named per-epoch loss columns of ``metrics.csv`` (log scale)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ep = [r["epoch"] for r in history]
    for c in columns:
        ax.plot(ep, [r[c] for r in history], marker="o", ms=3, label=c)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
