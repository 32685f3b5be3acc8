"""Two CPU processes (gloo): every rank sees disjoint samples each step, and the global order
equals the single-process sampler's."""

from __future__ import annotations

import json

import pytest
from synth import RecordIndices, tiny_datamodule, tiny_trainer

from ssvar.data.datamodule import ResampledDistributedSampler
from ssvar.methods import Supervised
from ssvar.models import Tiny3D


@pytest.mark.ddp
def test_two_process_fit_sees_disjoint_samples(tmp_path):
    root = tmp_path / "synth"
    dm = tiny_datamodule(str(root), labeled_per_class=2, batch_size=2)
    dm.prepare_data()
    model = Supervised(Tiny3D(width=4), num_classes=dm.num_classes)
    trainer = tiny_trainer(tmp_path, devices=2, strategy="ddp_spawn", callbacks=[RecordIndices(str(tmp_path))])
    trainer.fit(model, datamodule=dm)
    rows = [[json.loads(x) for x in (tmp_path / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert len(rows[0]) == len(rows[1]) == 3
    n_lab = len(dm.splits.labeled)
    # The same global order a single process with both ranks' samples would draw.
    steps_per_epoch = len(dm.splits.unlabeled) // (2 * 2)  # world 2 x batch 2
    single = ResampledDistributedSampler(list(range(n_lab)), 2 * 2 * steps_per_epoch, 1, 0, dm.seed)
    for step in range(3):
        epoch, pos = divmod(step, steps_per_epoch)
        single.set_epoch(epoch)
        expected = [i for i, _seed in single][pos * 4 : (pos + 1) * 4]
        a, b = rows[0][step]["labeled"], rows[1][step]["labeled"]
        assert [x for pair in zip(a, b) for x in pair] == expected
