"""Strong-view RandAugment with ops left out (``randaugment_exclude``)."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from ssvar.data.datamodule import LABEL_CHANGING_OPS
from ssvar.data.transforms import (
    RANDAUGMENT_OPS,
    VIDEO_RANDAUGMENT_OPS,
    AugmentConfig,
    RestrictedRandAugment,
    VideoRandAugment,
    strong_transform,
)


def _clip(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g)


def test_only_identity_left_is_the_identity():
    # Everything but Identity excluded: whatever RandAugment draws, the clip must come back unchanged.
    cfg = AugmentConfig(randaugment_exclude=tuple(op for op in RANDAUGMENT_OPS if op != "Identity"))
    t = strong_transform(cfg)
    assert isinstance(t, RestrictedRandAugment)
    for seed in range(20):
        torch.manual_seed(seed)
        x = _clip(seed)
        assert torch.equal(t(x), x)


def test_excluded_ops_are_never_drawn_but_the_rest_are():
    exclude = ("Solarize", "Equalize", "AutoContrast")
    t = RestrictedRandAugment(num_ops=2, magnitude=9, exclude=exclude)
    assert set(t._AUGMENTATION_SPACE) == set(RANDAUGMENT_OPS) - set(exclude)
    # The class table itself is untouched: a plain RandAugment still has every op.
    from torchvision.transforms import v2

    assert set(v2.RandAugment._AUGMENTATION_SPACE) == set(RANDAUGMENT_OPS)
    # Solarize alone vs. Solarize excluded: a high-contrast clip is changed only when allowed.
    solarize_only = RestrictedRandAugment(
        num_ops=1, magnitude=9, exclude=tuple(op for op in RANDAUGMENT_OPS if op != "Solarize")
    )
    x = torch.full((2, 3, 8, 8), 250, dtype=torch.uint8)
    assert not torch.equal(solarize_only(x), x)


def test_restricted_transform_pickles():
    import pickle

    t = RestrictedRandAugment(num_ops=2, magnitude=9, exclude=("Solarize",))
    t2 = pickle.loads(pickle.dumps(t))
    assert t2.exclude == ("Solarize",) and "Solarize" not in t2._AUGMENTATION_SPACE


def test_default_strong_view_is_torchvision_randaugment():
    t = strong_transform(AugmentConfig())
    assert type(t).__name__ == "RandAugment" and not isinstance(t, RestrictedRandAugment)


def test_bad_exclusions_fail_loudly():
    with pytest.raises(ValueError, match="unknown RandAugment op"):
        AugmentConfig(randaugment_exclude=("Solarise",))
    with pytest.raises(ValueError, match="leaves no RandAugment op"):
        AugmentConfig(randaugment_exclude=RANDAUGMENT_OPS)


def test_datamodule_passes_the_exclusion_through(tmp_path):
    from ssvar.data import SyntheticActionsDataModule

    dm = SyntheticActionsDataModule(root=str(tmp_path), randaugment_exclude=["Solarize"])
    assert dm.augment.randaugment_exclude == ("Solarize",)


def test_synthetic_actions_leaves_out_the_recolouring_ops_by_default(tmp_path):
    from ssvar.data import FolderDataModule, SyntheticActionsDataModule

    assert SyntheticActionsDataModule(root=str(tmp_path)).augment.randaugment_exclude == (
        "Solarize",
        "Equalize",
        "AutoContrast",
        "Invert",
    )
    assert SyntheticActionsDataModule(root=str(tmp_path), randaugment_exclude=[]).augment.randaugment_exclude == ()
    assert (
        FolderDataModule(root=str(tmp_path), labeled_per_class=1).augment.randaugment_exclude == ()
    )  # real videos: every op


# ---------------------------------------------------------------- MMAction2's Imgaug('default')
def test_video_randaugment_ranges_at_level_9_match_mmaction2():
    """MMAction2 ``ImgAug.default_transforms`` (level 9 of 10): shear 17.19 * 0.9 deg, translate
    0.2 * 0.9, rotate 30 * 0.9 deg, posterize int(4 * 0.9) bits, solarize 256 * 0.9, enhance
    1.8 * 0.9 + 0.1, cutout 0.2 * 0.9 of the side; 2 ops out of 15 with Invert and Cutout."""
    m = VideoRandAugment.magnitudes(9)
    assert m["ShearX"] == m["ShearY"] == pytest.approx(15.471)
    assert m["TranslateX"] == m["TranslateY"] == pytest.approx(0.18)
    assert m["Rotate"] == pytest.approx(27.0)
    assert m["Posterize"] == 3
    assert m["Solarize"] == pytest.approx(230.4)
    for op in ("Color", "Contrast", "Brightness", "Sharpness"):
        assert m[op] == pytest.approx(1.72)
    assert m["Cutout"] == pytest.approx(0.18)
    assert len(VIDEO_RANDAUGMENT_OPS) == 15 and {"Invert", "Cutout", "AutoContrast", "Equalize"} <= set(
        VIDEO_RANDAUGMENT_OPS
    )
    ra = strong_transform(AugmentConfig(randaugment="mmaction2"))
    assert isinstance(ra, VideoRandAugment) and ra.num_ops == 2 and ra.magnitude == 9


def _mm_clip(t=4, value=None):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (1, 3, 32, 32), generator=g, dtype=torch.uint8).expand(t, -1, -1, -1).clone()
    if value is not None:
        x[:] = value
    return tv_tensors.Video(x)


def test_video_randaugment_ops_do_what_the_table_says():
    ra = VideoRandAugment(num_ops=1, magnitude=9)
    x = _mm_clip()
    assert torch.equal(ra.apply(x, "Posterize"), x & 0b11100000)  # 3 bits kept
    assert torch.equal(ra.apply(x, "Solarize"), torch.where(x >= 230.4, 255 - x, x))
    assert torch.equal(ra.apply(x, "Invert"), 255 - x)
    assert (ra.apply(_mm_clip(value=100), "Brightness") == 172).all()  # x1.72
    torch.manual_seed(1)
    cut = ra.apply(_mm_clip(value=0), "Cutout")
    rows, cols = (cut[0, 0] == 128).any(1).sum(), (cut[0, 0] == 128).any(0).sum()
    assert 1 <= rows <= 6 and 1 <= cols <= 6 and (cut == 128).sum() > 0  # round(0.18 * 32) = 6, clipped at borders
    # one draw for the whole clip: every frame gets the same ops and parameters
    for seed in range(10):
        torch.manual_seed(seed)
        out = VideoRandAugment(num_ops=2, magnitude=9)(_mm_clip())
        assert all(torch.equal(out[0], out[t]) for t in range(1, 4))


def test_video_randaugment_exclude_keeps_its_meaning():
    # SyntheticActions leaves out the recolouring ops, Invert included; shared names map 1:1.
    ra = strong_transform(AugmentConfig(randaugment="mmaction2", randaugment_exclude=LABEL_CHANGING_OPS))
    assert set(ra.ops) == set(VIDEO_RANDAUGMENT_OPS) - {"Solarize", "Equalize", "AutoContrast", "Invert"}
    # Invert/Cutout are not torchvision ops: excluding them there is a no-op, not an error.
    tv = strong_transform(AugmentConfig(randaugment_exclude=LABEL_CHANGING_OPS))
    assert set(tv._AUGMENTATION_SPACE) == set(RANDAUGMENT_OPS) - {"Solarize", "Equalize", "AutoContrast"}
    with pytest.raises(ValueError, match="level of 0..10"):
        AugmentConfig(randaugment="mmaction2", randaugment_magnitude=11)
    with pytest.raises(ValueError, match="leaves no"):
        AugmentConfig(randaugment="mmaction2", randaugment_exclude=VIDEO_RANDAUGMENT_OPS)
