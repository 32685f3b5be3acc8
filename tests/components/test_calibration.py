"""Pseudo-label calibration bins, the reliability summary and its figure."""

from __future__ import annotations

import math

import torch

from ssvar.components.calibration import CalibrationBins, reliability
from ssvar.plots import plot_pseudo_label_reliability


def test_bins_count_correct_and_confidence():
    bins = CalibrationBins(4)
    conf = torch.tensor([0.10, 0.30, 0.35, 0.90, 1.00, 0.95])
    correct = torch.tensor([0, 1, 0, 1, 1, 0])
    known = torch.tensor([1, 1, 1, 1, 1, 0])  # the last one has no hidden label
    bins.update(conf, correct, known)
    count, right, summed = bins.sums
    assert count.tolist() == [1, 2, 0, 2]  # 1.00 lands in the last bin
    assert right.tolist() == [0, 1, 0, 2]
    assert torch.allclose(summed, torch.tensor([0.10, 0.65, 0.0, 1.90]))
    bins.reset()
    assert bins.sums.sum() == 0


def test_ece_closed_form():
    # bin 0: 2 labels, mean confidence 0.2, accuracy 0.5; bin 1: 2 labels, confidence 0.9, accuracy 1.0
    sums = torch.tensor([[2.0, 2.0], [1.0, 2.0], [0.4, 1.8]])
    r = reliability(sums)
    assert torch.allclose(r["accuracy"], torch.tensor([0.5, 1.0], dtype=torch.float64))
    assert torch.allclose(r["confidence"], torch.tensor([0.2, 0.9], dtype=torch.float64))
    assert math.isclose(float(r["ece"]), 0.5 * 0.3 + 0.5 * 0.1, rel_tol=1e-6)


def test_empty_bins_are_nan_and_do_not_count():
    r = reliability(torch.tensor([[0.0, 4.0], [0.0, 4.0], [0.0, 3.8]]))
    assert math.isnan(float(r["accuracy"][0])) and math.isclose(float(r["ece"]), 1 - 0.95, rel_tol=1e-6)
    assert math.isnan(float(reliability(torch.zeros(3, 2))["ece"]))


def test_flat_reliability_is_visible_in_the_figure(tmp_path):
    # confident pseudo-labels no more accurate than unconfident ones: every bin at 40 %
    counts = torch.full((10,), 10.0)
    centres = torch.arange(10) / 10 + 0.05
    flat = torch.stack([counts, 0.4 * counts, centres * counts])
    out = tmp_path / "rel.png"
    fig = plot_pseudo_label_reliability([(10, flat), (20, flat)], str(out), threshold=0.8)
    assert out.stat().st_size > 0
    ax = fig.axes[0]
    curve = [line for line in ax.get_lines() if line.get_label().startswith("step 20")][0]
    assert torch.allclose(
        torch.tensor(curve.get_ydata(), dtype=torch.float64), torch.full((10,), 0.4, dtype=torch.float64)
    )


def test_share_above_threshold_counts_the_bin_that_holds_the_threshold(tmp_path):
    # threshold 0.95 lies inside the top bin [0.9, 1.0): the clips there must count (it read 0 before)
    counts = torch.tensor([0.0] * 8 + [3.0, 1.0])
    centres = torch.arange(10) / 10 + 0.05
    sums = torch.stack([counts, counts, centres * counts])
    fig = plot_pseudo_label_reliability([(10, sums)], str(tmp_path / "rel.png"), threshold=0.95)
    share = [line for line in fig.axes[1].get_lines() if line.get_label().startswith("share")][0]
    assert share.get_label().startswith("share with confidence >= 0.9")
    assert list(share.get_ydata()) == [0.25]
    fig = plot_pseudo_label_reliability([(10, sums)], str(tmp_path / "rel.png"), threshold=0.8)
    share = [line for line in fig.axes[1].get_lines() if line.get_label().startswith("share")][0]
    assert list(share.get_ydata()) == [1.0]
