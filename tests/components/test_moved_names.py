"""Parts that moved keep their old names: PreciseBN (now in ssvar.callbacks) under its old import
paths and config class paths, and the loss functions that left the method files."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import yaml
from jsonargparse import ArgumentParser

from ssvar import callbacks

CONFIGS = Path(__file__).resolve().parents[2] / "ssvar" / "configs"


def test_precise_bn_is_a_callback_with_its_old_import_paths():
    from ssvar import components
    from ssvar.components import precise_bn

    assert issubclass(callbacks.PreciseBN, L.Callback)
    assert components.PreciseBN is precise_bn.PreciseBN is callbacks.PreciseBN
    assert components.recompute_bn_stats is precise_bn.recompute_bn_stats is callbacks.recompute_bn_stats


@pytest.mark.parametrize(
    "class_path", ["ssvar.callbacks.PreciseBN", "ssvar.components.PreciseBN", "ssvar.components.precise_bn.PreciseBN"]
)
def test_every_precise_bn_class_path_resolves_in_a_config(class_path):
    # As LightningCLI reads trainer.callbacks: a class_path + init_args of type Callback.
    parser = ArgumentParser()
    parser.add_argument("--callback", type=L.Callback)
    cfg = parser.parse_object(
        {"callback": {"class_path": class_path, "init_args": {"num_batches": 3, "every_n_epochs": 2}}}
    )
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in jsonargparse 4.49
    cb = instantiate(cfg).callback
    assert isinstance(cb, callbacks.PreciseBN) and (cb.num_batches, cb.every_n_epochs) == (3, 2)


def test_shipped_configs_name_the_callbacks_module():
    paths = [c["class_path"] for p in sorted(CONFIGS.glob("*.yaml"))
             for c in (yaml.safe_load(p.read_text()).get("trainer") or {}).get("callbacks") or []
             if c["class_path"].endswith("PreciseBN")]
    assert paths and set(paths) == {"ssvar.callbacks.PreciseBN"}


def test_method_losses_are_importable_parts():
    from ssvar.components import distillation_loss, feature_alignment_loss, temporal_slices, token_mix_loss
    from ssvar.methods import timebalance

    # TimeBalance's module keeps the name it used to define (user code may import it from there).
    assert timebalance.distillation_loss is distillation_loss
    assert callable(feature_alignment_loss) and callable(temporal_slices) and callable(token_mix_loss)
