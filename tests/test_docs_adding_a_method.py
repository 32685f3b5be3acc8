"""docs/adding_a_method.md: its example method runs as written (a real 2-step fit)."""

from __future__ import annotations

import os
import re

import lightning as L
from synth import tiny_datamodule, tiny_trainer

from ssvar.models import Tiny3D

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "adding_a_method.md")


def test_the_example_method_trains(tmp_path):
    text = open(DOC, encoding="utf-8").read()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    ns: dict = {"__name__": "weighted_fixmatch_doc"}
    exec(compile(code, DOC, "exec"), ns)
    L.seed_everything(0)
    model = ns["WeightedFixMatch"](Tiny3D(width=4), num_classes=4, lr=0.05)
    trainer = tiny_trainer(tmp_path, max_steps=2)
    trainer.fit(model, datamodule=tiny_datamodule(str(tmp_path / "synth")))
    m = trainer.callback_metrics
    assert trainer.global_step == 2 and int(model.teacher.num_updates) == 2
    assert {"train/loss_unsupervised", "train/pl_acc", "train/ema_decay"} <= set(m)
