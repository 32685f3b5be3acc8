"""A tiny SyntheticActions set shared by the method, data module and CLI tests."""

from __future__ import annotations

TINY = dict(num_classes=4, videos_per_class=6, video_frames=16, resolution=32)


def tiny_datamodule(root: str, **overrides):
    from ssvar.data import SyntheticActionsDataModule

    kw = dict(
        root=root,
        **TINY,
        labeled_per_class=1,
        test_fraction=0.34,
        batch_size=2,
        num_workers=0,
        num_frames=4,
        stride=2,
        crop_size=24,
        short_side=28,
        test_clips=2,
        test_crops=1,
    )
    kw.update(overrides)
    return SyntheticActionsDataModule(**kw)
