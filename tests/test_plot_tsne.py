"""ssvar.plots.plot_tsne: a PNG of separated clusters, and clear errors."""

from __future__ import annotations

import pytest
import torch


def test_plot_tsne_writes_a_png_and_draws_on_a_given_axis(tmp_path):
    import matplotlib.pyplot as plt

    from ssvar.plots import plot_tsne

    g = torch.Generator().manual_seed(0)
    centres = torch.eye(8)[:3] * 5
    x = torch.cat([c + 0.3 * torch.randn(12, 8, generator=g) for c in centres])
    y = torch.arange(3).repeat_interleave(12)
    path = tmp_path / "tsne.png"
    fig = plot_tsne(x, y, ["a", "b", "c"], str(path), "three clusters")
    assert path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    assert ax.get_title().startswith("three clusters") and len(ax.collections) == 3  # one scatter per class
    plt.close(fig)
    fig2, axes = plt.subplots(1, 2)
    assert plot_tsne(x.numpy(), y.numpy(), ["a", "b", "c"], None, "left", ax=axes[0]) is fig2
    assert len(axes[0].collections) == 3 and not axes[1].collections
    plt.close(fig2)


def test_plot_tsne_rejects_bad_inputs(tmp_path):
    from ssvar.plots import plot_tsne

    with pytest.raises(ValueError, match="features must be"):
        plot_tsne(torch.randn(10, 4), torch.zeros(9), ["a"], None, "t")
    with pytest.raises(ValueError, match="at least 4"):
        plot_tsne(torch.randn(3, 4), torch.zeros(3), ["a"], None, "t")
