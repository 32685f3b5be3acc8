"""Figures users would rather look at than read: confusion matrix and per-class accuracy.

Matplotlib with the non-interactive Agg backend (works on headless machines and in workers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
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
    ax.axvline(
        acc[support > 0].mean() if (support > 0).any() else 0, color="k", ls="--", lw=1, label="mean class accuracy"
    )
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


# -- training curves ------------------------------------------------------------------------------
PSEUDO_LABEL_METRICS = {
    "train/pl_mask_rate": "mask rate (share of unlabelled clips used)",
    "train/pl_acc": "pseudo-label accuracy (all, vs hidden labels)",
    "train/pl_acc_confident": "pseudo-label accuracy (confident ones)",
    "train/pl_threshold": "threshold",
}


def read_metrics_csv(path: str) -> dict[str, tuple[list[int], list[float]]]:
    """Scalars of a Lightning ``CSVLogger`` ``metrics.csv``: ``{name: (steps, values)}``."""
    import csv

    out: dict[str, tuple[list[int], list[float]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for k, v in row.items():
                if k in ("step", "epoch") or v in ("", None):
                    continue
                steps, values = out.setdefault(k, ([], []))
                steps.append(step)
                values.append(float(v))
    return out


def read_tensorboard_scalars(log_dir: str) -> dict[str, tuple[list[int], list[float]]]:
    """Scalars of the TensorBoard event files in ``log_dir``: ``{name: (steps, values)}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(log_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return {
        tag: ([e.step for e in acc.Scalars(tag)], [e.value for e in acc.Scalars(tag)]) for tag in acc.Tags()["scalars"]
    }


def read_scalars(log_dir: str) -> dict[str, tuple[list[int], list[float]]]:
    """Logged scalars of a run folder: its ``metrics.csv`` (CSVLogger) or TensorBoard events."""
    import glob
    import os

    csvs = sorted(glob.glob(os.path.join(log_dir, "**", "metrics.csv"), recursive=True))
    if csvs:
        return read_metrics_csv(csvs[-1])
    if glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True):
        return read_tensorboard_scalars(log_dir)
    raise FileNotFoundError(f"no metrics.csv or TensorBoard events under {log_dir}")


def _smooth(values: Sequence[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) < window:
        return v
    kernel = np.ones(window) / window
    # Valid part of the moving average, padded at the start with the running mean.
    head = np.cumsum(v[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(v, kernel, mode="valid")])


def plot_pseudo_label_curves(
    scalars: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    path: str | None = None,
    title: str = "pseudo-label quality",
    smooth: int = 5,
):
    """Mask rate and pseudo-label accuracy (and threshold) over training steps.

    ``scalars`` maps metric names to ``(steps, values)``, as :func:`read_scalars` or the
    :class:`~ssvar.callbacks.PseudoLabelCurves` callback give them; the ``train/pl_*`` metrics
    present are drawn (thin: raw, thick: moving average over ``smooth`` points), accuracy of the
    supervised batch too when logged, as a reference.
    """
    fig, ax = plt.subplots(figsize=(9, 4.2))
    drawn = 0
    extra = {"train/acc1_labeled": "training accuracy (labelled batch)"}
    colours = ["#4c72b0", "#dd8452", "#55a868", "#8c8c8c", "#c44e52"]
    for (key, label), c in zip({**PSEUDO_LABEL_METRICS, **extra}.items(), colours):
        if key not in scalars or not len(scalars[key][0]):
            continue
        steps, values = scalars[key]
        ls = "--" if key in ("train/pl_threshold", "train/acc1_labeled") else "-"
        ax.plot(steps, values, color=c, lw=0.8, alpha=0.35, ls=ls)
        ax.plot(steps, _smooth(values, smooth), color=c, lw=2, ls=ls, label=label)
        drawn += 1
    if not drawn:
        ax.text(
            0.5,
            0.5,
            "no pseudo-label metrics logged\n(a supervised-only method?)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("training step")
    ax.set_ylabel("fraction")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def plot_pseudo_label_reliability(
    history: Sequence[tuple[int, torch.Tensor | np.ndarray]],
    path: str | None = None,
    threshold: float | None = None,
    title: str = "pseudo-label reliability",
    max_curves: int = 5,
):
    """Reliability diagram of the pseudo-labels over training.

    ``history`` is a list of ``(step, sums)`` with ``sums`` the ``[3, bins]`` count / correct /
    summed-confidence table of :class:`~ssvar.components.calibration.CalibrationBins` for one
    epoch. Left: accuracy against mean confidence per bin for up to ``max_curves`` epochs spread
    over training (light = early, dark = late), the diagonal, and the threshold if given. Right:
    expected calibration error and the share of pseudo-labels above the threshold per epoch.
    """
    from ssvar.components.calibration import reliability

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [1.1, 1]})
    ax.plot([0, 1], [0, 1], color="#8c8c8c", ls=":", lw=1, label="perfect calibration")
    if threshold is not None:
        ax.axvline(threshold, color="#c44e52", ls="--", lw=1, label=f"threshold {threshold:g}")
    hist = [
        (int(s), reliability(torch.as_tensor(np.asarray(t)))) for s, t in history if float(np.asarray(t)[0].sum()) > 0
    ]
    if hist:
        picks = sorted({round(i) for i in np.linspace(0, len(hist) - 1, min(max_curves, len(hist)))})
        cmap = matplotlib.colormaps["viridis"]
        for j, i in enumerate(picks):
            step, r = hist[i]
            ok = r["count"] > 0
            c = cmap(0.15 + 0.7 * j / max(1, len(picks) - 1))
            ax.plot(r["confidence"][ok].numpy(), r["accuracy"][ok].numpy(), "o-", color=c, lw=1.6, ms=4,
                    label=f"step {step} (n={int(r['count'].sum())}, ECE {float(r['ece']):.2f})")
        steps = [s for s, _ in hist]
        ax2.plot(steps, [float(r["ece"]) for _, r in hist], "o-", color="#4c72b0", label="expected calibration error")
        if threshold is not None:
            # Bins only know their counts: take the bin holding the threshold and every bin above it
            # (bins starting at the threshold would be none for a threshold inside the top bin).
            nbins = len(hist[0][1]["count"])
            low = math.floor(threshold * nbins + 1e-9) / nbins if threshold < 1 else (nbins - 1) / nbins
            share = []
            for _, r in hist:
                edges = np.linspace(0, 1, len(r["count"]) + 1)[:-1]
                share.append(float(r["count"][torch.as_tensor(edges >= low - 1e-9)].sum() / r["count"].sum()))
            label = f"share with confidence >= {low:g} (threshold's bin up)"
            ax2.plot(steps, share, "s--", color="#dd8452", label=label)
        ax2.legend(fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no pseudo-labels with known hidden labels", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("pseudo-label confidence (bin mean)")
    ax.set_ylabel("pseudo-label accuracy (hidden labels)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlabel("training step (end of epoch)")
    ax2.set_title("calibration over training")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


# -- feature embeddings -----------------------------------------------------------------------------
def plot_tsne(
    features,
    labels,
    class_names: Sequence[str],
    path: str | None = None,
    title: str = "t-SNE of features",
    *,
    perplexity: float = 30.0,
    seed: int = 0,
    normalize: bool = False,
    ax=None,
):
    """2-D t-SNE (scikit-learn) of ``features`` ``[N, D]`` coloured by ``labels`` ``[N]``.

    The perplexity is capped for small sets (it must stay below N); PCA initialisation and a
    fixed ``seed`` make the picture reproducible; sets up to 300 points use exact t-SNE.
    ``normalize`` L2-normalises the features first (the geometry contrastive losses shape).
    Draws on ``ax`` when given (side-by-side panels), else on a new figure; saved as PNG when
    ``path`` is given; returns the figure (pass it to :func:`log_figure`, which closes it).
    """
    from sklearn.manifold import TSNE

    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float32)
    y = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels).astype(int)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be [N, D] and labels [N], got {x.shape} and {y.shape}")
    if len(x) < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {len(x)}")
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    perp = float(min(perplexity, max(1.0, (len(x) - 1) / 3)))
    # Exact gradients for small sets: faster there than Barnes-Hut's threads on a busy CPU.
    method = "exact" if len(x) <= 300 else "barnes_hut"
    emb = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed, method=method).fit_transform(x)
    names = list(class_names)
    classes = sorted(set(y.tolist()))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(7.5, 6))
    else:
        fig = ax.figure
    for c in classes:
        sel = y == c
        name = names[c] if 0 <= c < len(names) else str(c)
        ax.scatter(emb[sel, 0], emb[sel, 1], s=22, color=cmap(c % cmap.N), label=name, alpha=0.85, edgecolors="none")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{title} (n={len(x)}, perplexity {perp:.0f})")
    if len(classes) <= 30:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False, markerscale=1.5)
    if own:
        fig.tight_layout()
    if path:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
