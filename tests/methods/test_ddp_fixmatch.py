"""A 2-process CPU (gloo) DDP fit of FixMatch with an EMA teacher: it completes, every rank sees
disjoint labelled and unlabelled samples at each step, and the teachers stay identical."""

from __future__ import annotations

import json

import pytest
import torch
from synth import RecordIndices, SaveTeacher, tiny_datamodule, tiny_trainer

from ssvar.components import EMATeacher
from ssvar.methods import FixMatch
from ssvar.models import Tiny3D


@pytest.mark.ddp
def test_fixmatch_ddp_two_processes(tmp_path):
    dm = tiny_datamodule(str(tmp_path / "synth"), labeled_per_class=2, batch_size=2)
    dm.prepare_data()
    model = FixMatch(Tiny3D(width=4), num_classes=dm.num_classes, threshold=0.3, teacher=EMATeacher(0.9))
    trainer = tiny_trainer(
        tmp_path, devices=2, strategy="ddp_spawn", callbacks=[RecordIndices(str(tmp_path)), SaveTeacher(str(tmp_path))]
    )
    trainer.fit(model, datamodule=dm)
    rows = [[json.loads(x) for x in (tmp_path / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert len(rows[0]) == len(rows[1]) == 3
    for step in range(3):
        assert not set(rows[0][step]["unlabeled"]) & set(rows[1][step]["unlabeled"])
    # Unlabelled samples over the first epoch are disjoint across ranks (DistributedSampler shards).
    per_epoch = len(dm.splits.unlabeled) // (2 * 2)
    seen = [{i for r in rank[:per_epoch] for i in r["unlabeled"]} for rank in rows]
    assert not seen[0] & seen[1]
    t0, t1 = (torch.load(tmp_path / f"teacher_rank{r}.pt") for r in (0, 1))
    assert t0.keys() == t1.keys()
    for k in t0:
        assert torch.equal(t0[k], t1[k]), k
    assert int(t0["num_updates"]) == 3
