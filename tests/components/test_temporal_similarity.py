"""TemporalSimilarityReweighter (TimeBalance): the similarity matrix and the two statistics against
loops and closed forms, the three normalisations, the cached scores (lookup, state dict), the
fallback for unreadable videos, and a 2-process gloo run whose scores equal one process's on the
whole data (the scores are summed across ranks)."""

from __future__ import annotations

import math

import pytest
import torch
from ddp import run_ddp

from ssvar.components import TemporalSimilarityReweighter
from ssvar.components.temporal_similarity import temporal_similarity_matrix


def _loop_matrix(f: torch.Tensor) -> torch.Tensor:
    n, k, _ = f.shape
    out = torch.empty(n, k, k)
    for i in range(n):
        for a in range(k):
            for b in range(k):
                out[i, a, b] = (f[i, a] @ f[i, b]) / (f[i, a].norm() * f[i, b].norm())
    return out


def test_matrix_is_the_cosine_of_every_pair_of_timestamps():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(3, 4, 5, generator=g)
    assert torch.allclose(temporal_similarity_matrix(f), _loop_matrix(f), atol=1e-6)
    # Closed forms: orthogonal timestamps -> identity; one repeated feature -> all ones.
    assert torch.allclose(temporal_similarity_matrix(torch.eye(4)[None]), torch.eye(4)[None])
    assert torch.allclose(temporal_similarity_matrix(torch.ones(1, 3, 2) * 7), torch.ones(1, 3, 3))
    with pytest.raises(ValueError, match=r"\[N, K, D\]"):
        temporal_similarity_matrix(torch.zeros(4, 5))


@pytest.mark.parametrize("statistic", ["offdiag_mean", "adjacent_mean"])
def test_raw_score_averages_the_teachers_matrices_then_takes_the_statistic(statistic):
    g = torch.Generator().manual_seed(1)
    feats = [torch.randn(2, 4, 6, generator=g), torch.randn(2, 4, 6, generator=g)]
    c = (_loop_matrix(feats[0]) + _loop_matrix(feats[1])) / 2
    if statistic == "offdiag_mean":
        want = torch.stack([sum(c[i, a, b] for a in range(4) for b in range(4) if a != b) / 12 for i in range(2)])
    else:
        want = torch.stack([sum(c[i, a, a + 1] for a in range(3)) / 3 for i in range(2)])
    rw = TemporalSimilarityReweighter(num_clips=4, statistic=statistic)
    assert torch.allclose(rw.raw_score(feats), want, atol=1e-6)


def test_raw_score_closed_forms():
    rw = TemporalSimilarityReweighter(num_clips=4)
    static = torch.ones(1, 4, 4)  # the same feature at every timestamp
    changing = torch.eye(4)[None]  # a new orthogonal feature at every timestamp
    assert rw.raw_score([static]).item() == pytest.approx(1.0)
    assert rw.raw_score([changing]).item() == pytest.approx(0.0)
    # Two teachers, one sees a static video and one a changing one: the mean matrix scores 1/2.
    assert rw.raw_score([static, changing]).item() == pytest.approx(0.5)
    # Two timestamps at 60 degrees: cosine 1/2 off the diagonal.
    pair = torch.tensor([[[1.0, 0.0], [0.5, math.sqrt(3) / 2]]])
    assert TemporalSimilarityReweighter(num_clips=2, statistic="adjacent_mean").raw_score(
        [pair]
    ).item() == pytest.approx(0.5)


def test_normalizations():
    raw = {"labeled": torch.tensor([0.2, 0.6]), "unlabeled": torch.tensor([0.4, 1.0, 0.2])}
    mm = TemporalSimilarityReweighter(2, normalization="minmax").normalize(raw)
    assert torch.allclose(mm["labeled"], torch.tensor([0.0, 0.5])) and torch.allclose(
        mm["unlabeled"], torch.tensor([0.25, 1.0, 0.0])
    )
    rank = TemporalSimilarityReweighter(2, normalization="rank").normalize(raw)
    # One scale over both sets: 0.2 and 0.2 tie (ranks 0 and 1 in some order), then 0.4, 0.6, 1.0.
    assert sorted([rank["labeled"][0].item(), rank["unlabeled"][2].item()]) == [0.0, 0.25]
    assert rank["unlabeled"][0] == 0.5 and rank["labeled"][1] == 0.75 and rank["unlabeled"][1] == 1.0
    none = TemporalSimilarityReweighter(2, normalization="none").normalize({"labeled": torch.tensor([-0.1, 0.3, 1.2])})
    assert torch.allclose(none["labeled"], torch.tensor([0.0, 0.3, 1.0]))


def test_scores_are_looked_up_by_sample_index_and_travel_in_the_state_dict():
    rw = TemporalSimilarityReweighter(num_clips=2)
    assert not rw.ready
    with pytest.raises(RuntimeError, match="not computed yet"):
        rw("labeled", torch.tensor([0]))
    rw.set_scores({"labeled": torch.tensor([0.1, 0.2, 0.3]), "unlabeled": torch.tensor([0.9])})
    assert rw.ready and torch.equal(rw("labeled", torch.tensor([2, 0])), torch.tensor([0.3, 0.1]))
    with pytest.raises(KeyError, match="'other'"):
        rw.set_scores({"other": torch.zeros(1)})
    again = TemporalSimilarityReweighter(num_clips=2)
    again.load_state_dict(rw.state_dict())  # the buffers start empty and take the stored size
    assert again.ready and torch.equal(again.score_labeled, rw.score_labeled)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_clips"):
        TemporalSimilarityReweighter(num_clips=1)
    with pytest.raises(ValueError, match="statistic"):
        TemporalSimilarityReweighter(statistic="max")
    rw = TemporalSimilarityReweighter(num_clips=3, sets=("labeled",))
    with pytest.raises(ValueError, match=r"\[B, 3, C, T, H, W\]"):
        rw.compute([_teacher], {"labeled": ([{"video": torch.zeros(1, 2, 3, 2, 4, 4), "index": torch.tensor([0])}], 1)})
    with pytest.raises(KeyError, match="no loader"):
        rw.compute([_teacher], {})


# ---------------------------------------------------------------- compute, one process and two
N_LAB, N_UNL, K = 5, 7, 3


def _teacher(x: torch.Tensor) -> torch.Tensor:
    """A fixed feature extractor [B, C, T, H, W] -> [B, D]: per-channel, per-row means."""
    return x.float().mean(dim=(2, 4)).flatten(1)


def _videos(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (n, 1, 3, 2, 4, 4), generator=g)
    change = torch.randint(0, 256, (n, K, 3, 2, 4, 4), generator=g)
    mix = torch.linspace(0, 1, n).view(n, 1, 1, 1, 1, 1)  # from static to fully changing videos
    return (base * (1 - mix) + change * mix).to(torch.uint8)


def _batches(videos: torch.Tensor, indices: list[int], bad: set[int] = frozenset(), batch_size: int = 2) -> list[dict]:
    """Loader batches of the given sample indices; a ``bad`` index is a substitute row (its
    decode failed), as the data module hands it."""
    out = []
    for s in range(0, len(indices), batch_size):
        idx = torch.tensor(indices[s:s + batch_size])
        fail = torch.tensor([int(i in bad) for i in idx.tolist()])
        out.append({"video": videos[idx], "index": idx, "decode_failures": fail})
    return out


def _loaders(rank: int = 0, world: int = 1, bad_unl: set[int] = frozenset()) -> dict:
    """Each rank's shard as a DistributedSampler deals it (rank, rank + world, ...)."""
    lab, unl = _videos(N_LAB, 0), _videos(N_UNL, 1)
    return {
        "labeled": (_batches(lab, list(range(rank, N_LAB, world))), N_LAB),
        "unlabeled": (_batches(unl, list(range(rank, N_UNL, world)), bad_unl), N_UNL),
    }


def test_compute_scores_every_video_once_and_normalises_jointly():
    rw = TemporalSimilarityReweighter(num_clips=K)
    s = rw.compute([_teacher, _teacher], _loaders())
    lab, unl = _videos(N_LAB, 0), _videos(N_UNL, 1)
    raw = {
        n: rw.raw_score([_teacher(v.flatten(0, 1)).view(len(v), K, -1)])
        for n, v in (("labeled", lab), ("unlabeled", unl))
    }
    want = rw.normalize(raw)
    assert torch.allclose(s["labeled"], want["labeled"]) and torch.allclose(s["unlabeled"], want["unlabeled"])
    assert torch.equal(rw.score_unlabeled, s["unlabeled"]) and rw.unscored == {"labeled": 0, "unlabeled": 0}
    assert s["labeled"][0] > s["labeled"][-1]  # the static end of the range scores above the changing one
    twice = _loaders()
    twice["labeled"][0].append(twice["labeled"][0][0])
    with pytest.raises(RuntimeError, match="scored more than once"):
        rw.compute([_teacher], twice)


def _ddp_scores(rank: int, world: int, bad_unl: set[int]) -> dict:
    rw = TemporalSimilarityReweighter(num_clips=K)
    scores = rw.compute([_teacher, _teacher], _loaders(rank, world, bad_unl))
    return {"scores": scores, "unscored": rw.unscored}


@pytest.mark.ddp
def test_two_processes_give_every_rank_the_single_process_scores():
    """Each rank embeds its shard; the all-reduce puts every video's score on every rank: equal
    to one process on the whole data, the fallback of an unreadable video (on rank 1) included."""
    bad = {3}  # unlabelled index 3: rank 1's shard under world 2
    r0, r1 = run_ddp(_ddp_scores, 2, bad)
    single = TemporalSimilarityReweighter(num_clips=K)
    want = single.compute([_teacher, _teacher], _loaders(bad_unl=bad))
    assert single.unscored == {"labeled": 0, "unlabeled": 1}
    for r in (r0, r1):
        assert r["unscored"] == single.unscored
        for name in ("labeled", "unlabeled"):
            assert torch.equal(r["scores"][name], want[name]), name
    # Not trivially equal: the shards alone would leave the other rank's videos unscored.
    alone = TemporalSimilarityReweighter(num_clips=K)
    alone.compute([_teacher, _teacher], _loaders(0, 2, bad))
    assert alone.unscored["labeled"] == N_LAB // 2
