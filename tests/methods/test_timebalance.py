"""TimeBalance: sparse + dense clips from one decode, the pretraining losses (references, switches,
2-process gloo == single process), strict weight hand-off between the three stages, the
temporal-similarity score on controlled inputs and its cache, and tiny fits of every stage."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ddp import averaged_grads, mean_over_ranks, run_ddp, shard
from synth import tiny_datamodule, tiny_trainer

from ssvar.components import FrozenTeacher, TemporalSimilarityReweighter, load_weights
from ssvar.components.contrastive import global_local_contrastive, local_local_contrastive
from ssvar.data.dataset import VideoDataset
from ssvar.data.index import VideoIndex, VideoRecord
from ssvar.data.transforms import AugmentConfig
from ssvar.methods import Supervised, TimeBalance, TimeBalancePretrain
from ssvar.models import Tiny3D

PRE = dict(num_frames=4, sparse_stride=2, num_dense_clips=2, dense_stride=1, proj_dim=8, proj_hidden_dim=8)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synth"))


# ---------------------------------------------------------------- data: one decode
def test_sparse_and_dense_clips_come_from_one_decode(video_factory):
    from helpers import clip_indices_of

    path = video_factory("v.mp4", num_frames=80)
    model = TimeBalancePretrain(Tiny3D(width=4), num_classes=2, num_frames=16, sparse_stride=4, num_dense_clips=4,
                                augmentation="weak")  # RandAugment would change the index colours
    views = model.views()
    assert views["labeled"] == {}
    ds = VideoDataset(str(path).rsplit("/", 1)[0], VideoIndex([VideoRecord("v.mp4", 0)], ["a"]), views["unlabeled"],
                      augment=AugmentConfig(crop_size=16, area_range=(0.5, 1.0)), short_side=16, labeled=False)
    calls = []
    real = ds.decoder.decode
    ds.decoder.decode = lambda *a, **k: calls.append(1) or real(*a, **k)
    torch.manual_seed(0)
    s = ds[0]
    assert len(calls) == 1
    assert s["sparse"].shape == s["sparse_aug"].shape == (3, 16, 16, 16)
    assert s["dense"].shape == s["dense_aug"].shape == (4, 3, 16, 16, 16)
    sparse = np.array(clip_indices_of(s["sparse"]))
    assert (np.diff(sparse) == 4).all() and clip_indices_of(s["sparse_aug"]) == sparse.tolist()
    for j in range(4):  # dense clip j: 16 consecutive frames from the sparse clip's frame 4j
        for key in ("dense", "dense_aug"):
            assert clip_indices_of(s[key][j]) == list(range(sparse[4 * j], sparse[4 * j] + 16))


def test_dense_clips_draw_independent_crops(tmp_path):
    from helpers import write_video

    # Distinct content everywhere in the frame: two crops of the same frame differ.
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    write_video(tmp_path / "v.mp4", 40, 48, 48, content=lambda i, h, w: img)
    model = TimeBalancePretrain(Tiny3D(width=4), num_classes=2, num_frames=8, sparse_stride=4, num_dense_clips=4)
    ds = VideoDataset(str(tmp_path), VideoIndex([VideoRecord("v.mp4", 0)], ["a"]), model.views()["unlabeled"],
                      augment=AugmentConfig(crop_size=16, area_range=(0.1, 0.3)), short_side=48, labeled=False)
    torch.manual_seed(1)
    d = ds[0]["dense"].float()
    assert not torch.equal(d[0], d[1]) and not torch.equal(d[1], d[2])


def test_view_spec_offsets_validation():
    from ssvar.data.dataset import ViewSpec
    from ssvar.data.sampling import tiling_offsets

    assert tiling_offsets(16, 4, 4, 16, 1) == (-22.5, -6.5, 9.5, 25.5)
    with pytest.raises(ValueError, match="multiple of num_clips"):
        tiling_offsets(6, 4, 4, 4)
    with pytest.raises(ValueError, match="same_as"):
        ViewSpec("weak", same_as="x", independent_clips=True)
    with pytest.raises(ValueError, match="augmented independently"):
        VideoDataset(
            "root",
            VideoIndex([VideoRecord("v.mp4", 0)], ["a"]),
            {"a": ViewSpec("weak", offsets=(0, 4), independent_clips=True), "b": ViewSpec("strong", same_as="a")},
        )


# ---------------------------------------------------------------- losses: references
def _ref_local_local(z1, z2, t):
    losses = []
    for b in range(z1.shape[0]):
        z = F.normalize(torch.cat([z1[b], z2[b]]), dim=1)
        n = z.shape[0]
        for i in range(n):
            others = [j for j in range(n) if j != i]
            sims = torch.stack([z[i] @ z[j] / t for j in others])
            losses.append(-(z[i] @ z[(i + n // 2) % n] / t - torch.logsumexp(sims, 0)))
    return torch.stack(losses).mean()


def _ref_global_local(g, d, t):
    losses = []
    for b in range(g.shape[0]):
        gb, db = F.normalize(g[b], dim=1), F.normalize(d[b], dim=1)
        s = gb @ db.t() / t
        for i in range(s.shape[0]):
            losses.append(0.5 * (-(s[i, i] - torch.logsumexp(s[i], 0)) - (s[i, i] - torch.logsumexp(s[:, i], 0))))
    return torch.stack(losses).mean()


def test_temporal_losses_match_references():
    g = torch.Generator().manual_seed(0)
    z1, z2 = (
        torch.randn(3, 4, 5, generator=g, dtype=torch.float64),
        torch.randn(3, 4, 5, generator=g, dtype=torch.float64),
    )
    assert torch.allclose(local_local_contrastive(z1, z2, 0.1), _ref_local_local(z1, z2, 0.1))
    assert torch.allclose(global_local_contrastive(z1, z2, 0.1), _ref_global_local(z1, z2, 0.1))
    # Distinct times are pushed apart: aligned, time-distinct embeddings cost less than random ones.
    e = torch.eye(4, dtype=torch.float64).expand(3, 4, 4)
    assert local_local_contrastive(e, e, 0.1) < local_local_contrastive(z1, z2, 0.1)
    assert global_local_contrastive(e, e, 0.1) < global_local_contrastive(z1, z2, 0.1)
    with pytest.raises(ValueError, match="K >= 2"):
        local_local_contrastive(torch.randn(2, 1, 3), torch.randn(2, 1, 3), 0.1)


@pytest.mark.parametrize("weights,terms,dense", [
    ((1, 0, 0), {"instance"}, True),  # invariant teacher
    ((0, 1, 1), {"local_local", "global_local"}, True),  # distinctive teacher
    ((1, 1, 1), {"instance", "local_local", "global_local"}, True),  # student init (TCLR)
])
def test_loss_switches(weights, terms, dense):
    torch.manual_seed(0)
    m = TimeBalancePretrain(Tiny3D(width=4), num_classes=2, instance_weight=weights[0], local_local_weight=weights[1],
                            global_local_weight=weights[2], **PRE)
    assert ("dense" in m.views()["unlabeled"]) == dense
    views = _views(4)
    losses = m.pretext_losses(views)
    assert set(losses) == terms and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in m.backbone.parameters())
    no_dense = TimeBalancePretrain(Tiny3D(width=4), num_classes=2, dense_instance_weight=0.0, local_local_weight=0,
                                   global_local_weight=0, **PRE)
    assert set(no_dense.views()["unlabeled"]) == {"sparse", "sparse_aug"}


def test_bad_configuration_names_the_argument():
    with pytest.raises(ValueError, match="all loss weights"):
        TimeBalancePretrain(Tiny3D(width=4), 2, instance_weight=0, local_local_weight=0, global_local_weight=0)
    with pytest.raises(ValueError, match="num_dense_clips"):
        TimeBalancePretrain(Tiny3D(width=4), 2, num_frames=6, num_dense_clips=4)
    with pytest.raises(ValueError, match="distill_loss"):
        TimeBalance(Tiny3D(width=4), 2, distill_loss="l1")


def _views(b, dtype=torch.float32, seed=5):
    g = torch.Generator().manual_seed(seed)
    k, t, hw = PRE["num_dense_clips"], PRE["num_frames"] * PRE["sparse_stride"] // PRE["num_dense_clips"], 16

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    return {"sparse": r(b, 3, 4, hw, hw), "sparse_aug": r(b, 3, 4, hw, hw),
            "dense": r(b, k, 3, t, hw, hw), "dense_aug": r(b, k, 3, t, hw, hw)}


# ---------------------------------------------------------------- 2-process gloo
WORLD, LOCAL_B = 2, 3


def _pretrain_model():
    torch.manual_seed(3)
    # eval mode: BatchNorm uses running statistics, so per-rank chunks equal the global batch.
    return TimeBalancePretrain(Tiny3D(width=4), num_classes=2, **PRE).double().eval()


def _worker(rank, world):
    m = _pretrain_model()
    views = shard(_views(world * LOCAL_B, torch.float64), rank, world)
    losses = m.pretext_losses(views)
    sum(losses.values()).backward()
    return {**mean_over_ranks(losses), **averaged_grads(m)}  # what DDP does


@pytest.mark.ddp
def test_pretraining_losses_ddp_equal_single_process():
    dist = run_ddp(_worker, WORLD)[0]
    m = _pretrain_model()
    losses = m.pretext_losses(_views(WORLD * LOCAL_B, torch.float64))
    sum(losses.values()).backward()
    assert set(losses) == {"instance", "local_local", "global_local"}
    for k, v in losses.items():
        assert torch.allclose(dist[k], v.detach(), atol=1e-10), k
    # Negatives crossed ranks: a local-only instance loss would differ from the global one.
    for n, p in m.named_parameters():
        ref = p.grad if p.grad is not None else torch.zeros_like(p)
        assert torch.allclose(dist[n], ref, atol=1e-9, rtol=1e-7), n
    local_only = _pretrain_model()
    half = {k: v[:LOCAL_B] for k, v in _views(WORLD * LOCAL_B, torch.float64).items()}
    assert not torch.allclose(local_only.pretext_losses(half)["instance"], losses["instance"].detach())


# ---------------------------------------------------------------- temporal similarity score
def test_repeating_clips_score_higher_than_changing_content():
    torch.manual_seed(0)
    teachers = [Tiny3D(width=4).eval(), Tiny3D(width=4).eval()]
    k = 4
    clip = torch.randn(1, 3, 4, 16, 16)
    static = clip.expand(k, -1, -1, -1, -1).unsqueeze(0) + 0.01 * torch.randn(1, k, 3, 4, 16, 16)  # repeats over time
    changing = torch.randn(1, k, 3, 4, 16, 16)  # new content in every clip
    half = 0.5 * static + 0.5 * changing
    batch = {"video": torch.cat([static, half, changing]), "index": torch.tensor([0, 1, 2])}
    raw = TemporalSimilarityReweighter(num_clips=k, normalization="none")
    s = raw.compute(
        teachers, {"labeled": ([batch], 3), "unlabeled": ([{"video": static, "index": torch.tensor([0])}], 1)}
    )
    assert s["labeled"][0] > s["labeled"][1] > s["labeled"][2]
    assert s["labeled"][0] > 0.99  # identical clips: cosine 1 between every pair of timestamps
    mm = TemporalSimilarityReweighter(num_clips=k)  # min-max over all videos of both sets
    s = mm.compute(
        teachers, {"labeled": ([batch], 3), "unlabeled": ([{"video": changing, "index": torch.tensor([0])}], 1)}
    )
    assert s["labeled"][0] == pytest.approx(1.0) and s["labeled"][0] > s["labeled"][1] > s["labeled"][2]
    assert min(s["labeled"].min(), s["unlabeled"].min()) == pytest.approx(0.0)
    # The cache is persistent: a fresh reweighter loads the scores from the state dict.
    fresh = TemporalSimilarityReweighter(num_clips=k)
    assert not fresh.ready
    fresh.load_state_dict(mm.state_dict())
    assert fresh.ready and torch.equal(fresh("labeled", torch.tensor([2, 0])), s["labeled"][[2, 0]])
    rank = TemporalSimilarityReweighter(num_clips=k, normalization="rank", statistic="adjacent_mean")
    s = rank.compute(
        teachers, {"labeled": ([batch], 3), "unlabeled": ([{"video": half, "index": torch.tensor([0])}], 1)}
    )
    assert s["labeled"].tolist() == pytest.approx([1.0, 1 / 3, 0.0])


def test_frozen_teacher_stays_in_eval_without_gradients():
    t = FrozenTeacher(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5)))
    t.train()
    assert not t.training and not t.model.training
    x = torch.randn(3, 2, requires_grad=True)
    assert not t(x).requires_grad and torch.equal(t(x), t(x))


# ---------------------------------------------------------------- three stages, checkpoints by path
class _Snapshot(L.Callback):
    """The module's state when training starts (after the initial weights were loaded)."""

    def on_train_start(self, trainer, module):
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}


def _saved(path, prefix):
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _assert_loaded(snapshot, module_prefix, saved):
    assert saved
    for k, v in saved.items():
        assert torch.equal(snapshot[module_prefix + k], v), module_prefix + k


def test_three_stages_hand_off_weights_by_path(tmp_path, synth_root):
    L.seed_everything(0)
    dm = lambda **kw: tiny_datamodule(synth_root, num_frames=4, stride=1, **kw)  # noqa: E731
    # Stage 1: pretraining on the unlabelled pool (all train videos), three loss settings.
    pre = {}
    for name, w in (("inv", (1, 0, 0)), ("dist", (0, 1, 1)), ("tclr", (1, 1, 1))):
        m = TimeBalancePretrain(Tiny3D(width=4), num_classes=4, instance_weight=w[0], local_local_weight=w[1],
                                global_local_weight=w[2], optimizer="adamw", lr=1e-3, **PRE)
        trainer = tiny_trainer(tmp_path / name, max_steps=2)
        trainer.fit(m, datamodule=dm(labeled_in_unlabeled=True))
        assert "train/loss" in trainer.callback_metrics
        pre[name] = str(tmp_path / f"pre_{name}.ckpt")
        trainer.save_checkpoint(pre[name])
    # Stage 2: Supervised fine-tuning initialised from stage 1; the loaded weights equal the saved ones.
    ft = {}
    for name in ("inv", "dist"):
        m = Supervised(Tiny3D(width=4), num_classes=4, init_backbone_from=pre[name])
        snap = _Snapshot()
        trainer = tiny_trainer(tmp_path / f"ft_{name}", max_steps=2, callbacks=[snap])
        trainer.fit(m, datamodule=dm())
        _assert_loaded(snap.state, "backbone.", _saved(pre[name], "backbone."))
        ft[name] = str(tmp_path / f"ft_{name}.ckpt")
        trainer.save_checkpoint(ft[name])
    # Stage 3: student from TCLR, teachers from stage 2, frozen through training.
    m = TimeBalance(
        Tiny3D(width=4),
        num_classes=4,
        invariant_teacher=ft["inv"],
        distinctive_teacher=ft["dist"],
        init_backbone_from=pre["tclr"],
        reweighter=TemporalSimilarityReweighter(num_clips=3),
        score_batch_size=2,
    )
    snap = _Snapshot()
    trainer = tiny_trainer(tmp_path / "tb", max_steps=2, callbacks=[snap], limit_test_batches=1)
    trainer.fit(m, datamodule=dm())
    _assert_loaded(snap.state, "backbone.", _saved(pre["tclr"], "backbone."))
    for name, prefix in (("inv", "teacher_inv.model."), ("dist", "teacher_dist.model."),):
        _assert_loaded(snap.state, prefix, _saved(ft[name], ""))  # backbone.* and head.*
        # Unchanged after training, BatchNorm running statistics included: eval mode, no updates.
        _assert_loaded(m.state_dict(), prefix, _saved(ft[name], ""))
    for key in (
        "train/loss_supervised",
        "train/loss_distill_labeled",
        "train/loss_distill_unlabeled",
        "train/pl_acc",
        "train/score_s_mean",
    ):
        assert key in trainer.callback_metrics, key
    s = torch.cat([m.reweighter.score_labeled, m.reweighter.score_unlabeled])
    sp = trainer.datamodule.splits
    assert len(m.reweighter.score_labeled) == len(sp.labeled) and len(m.reweighter.score_unlabeled) == len(sp.unlabeled)
    assert s.min() == 0.0 and s.max() == 1.0
    trainer.test(m, datamodule=dm())
    # The scores travel in the checkpoint: a resumed run does not recompute them.
    trainer.save_checkpoint(tmp_path / "tb.ckpt")
    again = TimeBalance(Tiny3D(width=4), num_classes=4)
    again.load_state_dict(torch.load(tmp_path / "tb.ckpt", weights_only=False)["state_dict"])
    assert again.reweighter.ready and torch.equal(again.reweighter.score_unlabeled, m.reweighter.score_unlabeled)


def test_mismatched_checkpoints_fail_loudly(tmp_path):
    small = Supervised(Tiny3D(width=4), num_classes=3)
    path = str(tmp_path / "w.ckpt")
    torch.save({"state_dict": small.state_dict()}, path)
    with pytest.raises(RuntimeError, match="shape mismatches"):
        load_weights(Tiny3D(width=8), path, "backbone.")
    with pytest.raises(KeyError, match="starts with 'encoder.'"):
        load_weights(Tiny3D(width=4), path, "encoder.")
    with pytest.raises(RuntimeError, match="unexpected"):
        load_weights(Tiny3D(width=4), path, "")  # head.* keys are not the backbone's
    with pytest.raises(FileNotFoundError):
        load_weights(Tiny3D(width=4), str(tmp_path / "nope.ckpt"), "backbone.")
    m = TimeBalance(Tiny3D(width=4), num_classes=3, invariant_teacher=path)
    with pytest.raises(ValueError, match="distinctive_teacher"):
        m.load_initial_weights()
    assert load_weights(Tiny3D(width=4), path, "backbone.") > 0


@pytest.mark.slow
def test_shipped_synthetic_stages_chain_through_the_cli(tmp_path, monkeypatch):
    """The six CPU configs of examples/timebalance_synthetic.sh, in order, 1 step each: every
    stage finds the previous stage's ``last.ckpt`` at the path its config names."""
    from pathlib import Path

    from synth import TINY

    from ssvar.cli import run_cli

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(tmp_path)  # the configs' relative run folders land here
    data = ["--data.init_args.root", str(tmp_path / "synth")]
    for k, v in TINY.items():
        data += [f"--data.init_args.{k}", str(v)]
    data += [
        "--data.init_args.labeled_per_class",
        "1",
        "--data.init_args.batch_size",
        "2",
        "--data.init_args.num_workers",
        "0",
        "--data.init_args.crop_size",
        "24",
        "--data.init_args.short_side",
        "28",
        "--data.init_args.test_fraction",
        "0.34",
    ]
    stages = [f"timebalance-pretrain-{v}_tiny3d_synthetic.yaml" for v in ("inv", "dist", "tclr")]
    stages += [f"timebalance-finetune-{v}_tiny3d_synthetic.yaml" for v in ("inv", "dist")] + [
        "timebalance_tiny3d_synthetic.yaml"
    ]
    for name in stages:
        run_cli(["fit", "--config", str(repo / "examples" / "configs" / name), *data, "--trainer.max_steps", "1",
                 "--trainer.enable_progress_bar", "false", "--trainer.logger", "false", "--test_after_fit", "false",
                 "--model.init_args.backbone.init_args.width", "4"])
    runs = tmp_path / "runs" / "timebalance_synthetic"
    assert all((runs / d / "last.ckpt").is_file() for d in
               ("pretrain_inv", "pretrain_dist", "pretrain_tclr", "finetune_inv", "finetune_dist", "timebalance"))
    student = torch.load(runs / "timebalance" / "last.ckpt", weights_only=False)["state_dict"]
    inv = torch.load(runs / "finetune_inv" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(
        torch.equal(student["teacher_inv.model." + k], v)
        for k, v in inv.items()
        if k.startswith(("backbone.", "head."))
    )
    assert student["reweighter.score_unlabeled"].numel() > 0


def test_stage3_survives_an_unreadable_unlabelled_video(tiny_tree, tmp_path, caplog):
    """A corrupt file in the unlabelled pool gets the pool's mean score, is counted and logged,
    and stage 3 trains (it used to stop with 'videos were not scored exactly once')."""
    from helpers import write_text

    from ssvar.data import FolderDataModule

    dm = FolderDataModule(str(tiny_tree), labeled_per_class=1, test_fraction=0.34, batch_size=2, num_workers=0,
                          num_frames=4, stride=1, crop_size=24, short_side=28, test_clips=1, test_crops=1)
    sp = dm.splits
    labeled = {r.path for r in sp.labeled.records}
    pos, rec = next((j, r) for j, r in enumerate(sp.unlabeled.records) if r.path not in labeled)
    write_text(tiny_tree / rec.path)
    teachers = []
    for name in ("inv", "dist"):
        path = str(tmp_path / f"{name}.ckpt")
        torch.save({"state_dict": Supervised(Tiny3D(width=4), num_classes=3).state_dict()}, path)
        teachers.append(path)
    m = TimeBalance(Tiny3D(width=4), num_classes=3, invariant_teacher=teachers[0], distinctive_teacher=teachers[1],
                    reweighter=TemporalSimilarityReweighter(num_clips=2), score_batch_size=2)
    trainer = tiny_trainer(tmp_path / "tb", max_steps=2)
    with caplog.at_level("WARNING"):
        trainer.fit(m, datamodule=dm)
    assert trainer.global_step == 2
    assert m.reweighter.unscored == {"labeled": 0, "unlabeled": 1}
    assert trainer.callback_metrics["data/unscored_videos"] == 1
    assert "1 of" in caplog.text and "could not be decoded" in caplog.text
    others = torch.cat(
        [m.reweighter.score_labeled, m.reweighter.score_unlabeled[torch.arange(len(sp.unlabeled)) != pos]]
    )
    assert torch.isclose(m.reweighter.score_unlabeled[pos], others.mean())


def test_unscored_videos_get_the_mean_of_the_normalised_scores():
    torch.manual_seed(0)
    teachers = [
        lambda x: x.mean(dim=(2, 3, 4))[:, :, None].expand(-1, -1, 4).flatten(1) + torch.randn(len(x), 12) * 0.1
    ]
    video = torch.randint(0, 255, (3, 2, 3, 2, 4, 4), dtype=torch.uint8)
    batch = {"video": video, "index": torch.tensor([0, 1, 2]), "decode_failures": torch.tensor([0, 0, 1])}
    rw = TemporalSimilarityReweighter(num_clips=2, sets=("labeled",))
    s = rw.compute(teachers, {"labeled": ([batch], 4)}, prepare=lambda x: x.float())
    assert rw.unscored == {"labeled": 2}  # index 2 is a substitute row, index 3 never came
    assert sorted(s["labeled"][:2].tolist()) == [0.0, 1.0]
    assert torch.allclose(s["labeled"][2:], torch.tensor([0.5, 0.5]))


def test_precise_bn_leaves_frozen_teachers_alone(tmp_path, synth_root):
    """PreciseBN re-estimates the student's BatchNorm statistics; the frozen teachers never run
    in training mode, so theirs stay exactly as loaded (they were reset to 0 / 1 before)."""
    from ssvar.components import PreciseBN

    torch.manual_seed(0)
    paths = []
    for name in ("inv", "dist"):
        t = Supervised(Tiny3D(width=4), num_classes=4)
        for m in t.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
        paths.append(str(tmp_path / f"{name}.ckpt"))
        torch.save({"state_dict": t.state_dict()}, paths[-1])
    m = TimeBalance(Tiny3D(width=4), num_classes=4, invariant_teacher=paths[0], distinctive_teacher=paths[1],
                    reweighter=TemporalSimilarityReweighter(num_clips=2), score_batch_size=2)
    snap, cb = _Snapshot(), PreciseBN(num_batches=2, every_n_epochs=1)
    trainer = tiny_trainer(tmp_path / "tb", max_epochs=1, max_steps=-1, limit_train_batches=2, callbacks=[snap, cb])
    trainer.fit(m, datamodule=tiny_datamodule(synth_root, num_frames=4, stride=1))
    assert cb.last_batches_used == 2
    teacher_bn = [k for k in snap.state if k.startswith("teacher_") and k.endswith(("running_mean", "running_var"))]
    assert teacher_bn
    for k in teacher_bn:
        assert torch.equal(m.state_dict()[k], snap.state[k]), k
    # The student's statistics were re-estimated: a cumulative average, momentum restored.
    bn = m.backbone.stages[0][1]
    assert not torch.equal(bn.running_mean, snap.state["backbone.stages.0.1.running_mean"]) and bn.momentum == 0.1
