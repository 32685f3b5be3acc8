"""Strong-view RandAugment with ops left out (``randaugment_exclude``)."""

from __future__ import annotations

import pytest
import torch

from ssvar.data.transforms import RANDAUGMENT_OPS, AugmentConfig, RestrictedRandAugment, strong_transform


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
    solarize_only = RestrictedRandAugment(num_ops=1, magnitude=9, exclude=tuple(op for op in RANDAUGMENT_OPS if op != "Solarize"))
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

    assert SyntheticActionsDataModule(root=str(tmp_path)).augment.randaugment_exclude == ("Solarize", "Equalize", "AutoContrast")
    assert SyntheticActionsDataModule(root=str(tmp_path), randaugment_exclude=[]).augment.randaugment_exclude == ()
    assert FolderDataModule(root=str(tmp_path), labeled_per_class=1).augment.randaugment_exclude == ()  # real videos: every op
