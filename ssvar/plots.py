"""Figures users would rather look at than read: confusion matrix and per-class accuracy.

Matplotlib with the non-interactive Agg backend (works on headless machines and in workers).
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _size(n: int) -> float:
    return float(min(24, max(5, 0.35 * n + 2)))


def plot_confusion_matrix(cm: torch.Tensor | np.ndarray, class_names: Sequence[str], normalize: bool = True):
    """Rows: true class, columns: predicted class; row-normalised (recall) by default."""
    cm = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=float)
    n = cm.shape[0]
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    fig, ax = plt.subplots(figsize=(_size(n), _size(n)))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(n)
    labels = list(class_names) if len(class_names) == n else [str(i) for i in range(n)]
    if n <= 60:
        ax.set_xticks(ticks, labels, rotation=90, fontsize=8)
        ax.set_yticks(ticks, labels, fontsize=8)
    if n <= 20:  # annotate cells when they are readable
        for i in range(n):
            for j in range(n):
                v = shown[i, j]
                ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center",
                        fontsize=7, color="white" if v > 0.5 * (shown.max() or 1) else "black")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion matrix ({'row-normalised' if normalize else 'counts'}), top-1 {acc:.1%}")
    fig.tight_layout()
    return fig


def plot_per_class_accuracy(cm: torch.Tensor | np.ndarray, class_names: Sequence[str]):
    """Horizontal bars of per-class accuracy (recall), sorted, with the mean class accuracy."""
    cm = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=float)
    n = cm.shape[0]
    support = cm.sum(axis=1)
    acc = np.diag(cm) / np.maximum(support, 1)
    labels = list(class_names) if len(class_names) == n else [str(i) for i in range(n)]
    order = np.argsort(acc)
    fig, ax = plt.subplots(figsize=(7, max(3, 0.25 * n + 1)))
    ax.barh(np.arange(n), acc[order], color=["#c44e52" if a < acc.mean() else "#4c72b0" for a in acc[order]])
    ax.set_yticks(np.arange(n), [f"{labels[i]} (n={int(support[i])})" for i in order], fontsize=8 if n <= 60 else 4)
    ax.axvline(acc[support > 0].mean() if (support > 0).any() else 0, color="k", ls="--", lw=1, label="mean class accuracy")
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy")
    ax.set_title("per-class accuracy")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def log_figure(logger, tag: str, fig, step: int) -> None:
    """Send a figure to TensorBoard or Weights & Biases when that is the logger; then close it."""
    try:
        if logger is None:
            return
        exp = logger.experiment
        if hasattr(exp, "add_figure"):  # TensorBoard
            exp.add_figure(tag, fig, global_step=step, close=False)
        elif type(logger).__name__ == "WandbLogger":
            import wandb

            logger.log_image(key=tag, images=[wandb.Image(fig)], step=step)
    finally:
        plt.close(fig)


def plot_tsne(
    features,
    labels,
    class_names: Sequence[str],
    path: str | None,
    title: str,
    *,
    perplexity: float = 30.0,
    seed: int = 0,
    ax=None,
):
    """2-D t-SNE (scikit-learn) of ``features`` ``[N, D]`` coloured by ``labels`` ``[N]``.

    Features are L2-normalised first (the geometry contrastive losses shape). The perplexity is
    lowered to ``(N - 1) / 3`` for small sets (t-SNE needs ``perplexity < N``). Draws on ``ax``
    when given, else on a new figure; saves to ``path`` (PNG) when given. Returns the figure.
    """
    from sklearn.manifold import TSNE

    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(int)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be [N, D] with one label each, got {x.shape} and {y.shape}")
    if len(x) < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {len(x)}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    perp = float(min(perplexity, max(1.0, (len(x) - 1) / 3)))
    emb = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6.5, 5.5))
    else:
        fig = ax.figure
    n = max(len(class_names), int(y.max()) + 1)
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "gist_ncar")
    for c in range(n):
        sel = y == c
        if sel.any():
            name = class_names[c] if c < len(class_names) else str(c)
            ax.scatter(emb[sel, 0], emb[sel, 1], s=14, color=cmap(c % cmap.N if n <= 20 else c / n), label=name, alpha=0.85)
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    if n <= 20:
        ax.legend(fontsize=7, markerscale=1.2, loc="best", framealpha=0.6)
    if own:
        fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
