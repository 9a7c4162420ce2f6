"""Evaluation plots as matplotlib figures (rendered headless)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def calibration_figure(y: np.ndarray, p: np.ndarray, title: str, bins: int = 10) -> Any:
    edges = np.quantile(p, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    mean_p = np.array([p[idx == b].mean() if (idx == b).any() else np.nan for b in range(bins)])
    mean_y = np.array([y[idx == b].mean() if (idx == b).any() else np.nan for b in range(bins)])
    fig, ax = plt.subplots(figsize=(4, 4))
    hi = float(np.nanmax([np.nanmax(mean_p), np.nanmax(mean_y), 1e-6]))
    ax.plot([0, hi], [0, hi], "--", color="grey", label="perfect")
    ax.plot(mean_p, mean_y, "o-", label="model")
    ax.set_xlabel("mean predicted")
    ax.set_ylabel("observed rate")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def importance_figure(names: list[str], gains: np.ndarray, title: str) -> Any:
    order = np.argsort(gains)
    fig, ax = plt.subplots(figsize=(5, 0.3 * len(names) + 1.2))
    ax.barh([names[i] for i in order], gains[order])
    ax.set_xlabel("total gain")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def line_figure(x: np.ndarray, ys: dict[str, np.ndarray], title: str, xlabel: str, ylabel: str) -> Any:
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, y in ys.items():
        ax.plot(x, y, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def scatter_figure(x: np.ndarray, y: np.ndarray, highlight: np.ndarray | None, title: str, xlabel: str, ylabel: str) -> Any:
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(x, y, s=12, alpha=0.6, label="trials")
    if highlight is not None and highlight.any():
        ax.scatter(x[highlight], y[highlight], s=30, color="red", label="Pareto front")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def to_markdown_image(fig: Any) -> str:
    """A figure as an inline PNG for Dagster's Markdown metadata."""
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return f"![plot](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"
