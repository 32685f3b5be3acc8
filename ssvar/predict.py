"""``ssvar predict-videos``: class probabilities of new videos from a checkpoint.

    ssvar predict-videos --ckpt run/checkpoints/last.ckpt clip.mp4 more/ [--top-k 5] [--format table|json]

Each video is cut into ``clips x crops`` views (the test views the model was trained with, saved
in the checkpoint; ``--clips``/``--crops`` change them), the softmax probabilities of the views are
averaged, and the ``top-k`` classes are printed with the class names stored in the checkpoint.

Any method's checkpoint works: the method is rebuilt from the checkpoint's hyperparameters (its
class and every constructor argument, backbone included, are saved when it was trained through
``ssvar fit``) and its :meth:`~ssvar.methods.base.SemiSupervisedModule.inference_model` predicts
(backbone + head; two-network methods such as TG-FixMatch use their primary RGB network only).
A checkpoint trained from Python holds no backbone config: give the model section of a config
with ``--model-config`` (``model: {class_path: ..., init_args: {backbone: ...}}``), or load it in
Python with ``Method.load_from_checkpoint(path, backbone=...)`` and call :func:`predict_videos`.

``ssvar predict --config X.yaml --ckpt_path CKPT`` is LightningCLI's predict on a data module's
test list instead; it writes ``predictions.csv`` in the run folder.

The checkpoint is read with ``torch.load(weights_only=True)`` (:mod:`ssvar.serialization`); a
missing, corrupt or foreign file is a one-line error (exit status 2). The backbone's initial
``checkpoint`` file, if it had one, is not needed: the trained checkpoint holds every weight.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ssvar.data.decode import VideoDecodeError
from ssvar.data.index import VIDEO_EXTENSIONS, VideoIndex, VideoRecord
from ssvar.data.transforms import AugmentConfig, normalize_video

# Used when a checkpoint predates ``ssvar_clip_settings`` (the data module defaults).
DEFAULT_CLIP_SETTINGS = {
    "num_frames": 8,
    "stride": 4,
    "crop_size": 112,
    "short_side": 128,
    "test_clips": 5,
    "test_crops": 3,
}


@dataclass
class Prediction:
    """Top-k classes of one video; ``error`` is set (and ``top`` empty) when it could not be read."""

    video: str
    top: list[tuple[str, float]] = field(default_factory=list)
    views: str = ""
    error: str = ""

    def as_dict(self) -> dict:
        d = {"video": self.video, "views": self.views, "top": [{"class": c, "prob": round(p, 6)} for c, p in self.top]}
        if self.error:
            d["error"] = self.error
        return d


def find_video_files(paths: Sequence[str]) -> list[str]:
    """Files as given, and every video file (by extension) under the given folders, sorted."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for dirpath, dirnames, filenames in os.walk(p, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                out += [
                    os.path.join(dirpath, f)
                    for f in sorted(filenames)
                    if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS
                ]
        else:
            out.append(p)
    return out


def load_model(
    ckpt_path: str, model_config: dict | None = None, backbone: nn.Module | None = None, map_location: str = "cpu"
):
    """Rebuild the method stored in ``ckpt_path`` (in eval mode) with its weights.

    Args:
        ckpt_path: a Lightning checkpoint of any ssvar method.
        model_config: the ``model`` section of a config (``{"class_path", "init_args"}``) for
            checkpoints that hold no backbone config (trained from Python).
        backbone: alternatively, the backbone module itself (same architecture as trained).
    """
    from lightning.pytorch.cli import instantiate_module

    import ssvar.methods  # noqa: F401  (the classes a checkpoint may name must be imported)
    from ssvar.methods.base import SemiSupervisedModule
    from ssvar.models.backbones import restoring_trained_weights
    from ssvar.serialization import read_lightning_checkpoint

    ckpt = read_lightning_checkpoint(ckpt_path, map_location=map_location)
    hp = dict(ckpt.get("hyper_parameters") or {})
    hp.pop("_instantiator", None)
    if model_config is not None:
        hp = {
            "_class_path": model_config["class_path"],
            **(model_config.get("init_args") or {}),
            "num_classes": hp.get("num_classes"),
        }
    class_path = hp.get("_class_path") or ckpt.get("ssvar_method_class")
    if class_path is None:
        raise ValueError(
            f"{ckpt_path} names no method class: pass the training config's model section (--model-config)"
        )
    module_name, cls_name = class_path.rsplit(".", 1)
    cls = getattr(__import__(module_name, fromlist=[cls_name]), cls_name)
    if not (isinstance(cls, type) and issubclass(cls, SemiSupervisedModule)):
        raise ValueError(
            f"{ckpt_path} is a {cls_name} checkpoint, which has no classifier to predict with (self-supervised "
            "pretraining): start a method from it with init_backbone_from, then predict with that method's checkpoint"
        )
    if backbone is not None:
        plain = {k: v for k, v in hp.items() if k != "_class_path" and not isinstance(v, dict)}
        model = cls(backbone=backbone, **plain)
    elif "backbone" not in hp:
        raise ValueError(
            f"{ckpt_path} holds no backbone config (trained from Python?): pass --model-config with the model section "
            "of its training config, or in Python load_model(path, backbone=...)"
        )
    else:
        with restoring_trained_weights():  # the backbone's initial weights file is not needed
            model = instantiate_module(SemiSupervisedModule, hp)
    # Only the inference network must match exactly; parts the rebuilt method lacks (a teacher
    # given as a module in Python) or adds are irrelevant to prediction.
    missing, _ = model.load_state_dict(ckpt["state_dict"], strict=False)
    lost = sorted(set(_inference_keys(model)) & set(missing))
    if lost:
        raise RuntimeError(f"{ckpt_path} does not hold the inference network's weights: missing {lost[:5]}")
    model.class_names = list(ckpt.get("ssvar_class_names") or model.class_names)
    model.clip_settings = dict(ckpt.get("ssvar_clip_settings") or {})
    return model.eval()


def _inference_keys(model) -> list[str]:
    """State-dict keys (in the method's naming) of the tensors its inference network uses."""
    ids = {id(t) for t in model.inference_model().state_dict(keep_vars=True).values()}
    return [k for k, v in model.state_dict(keep_vars=True).items() if id(v) in ids]


@torch.no_grad()
def predict_videos(
    model,
    videos: Sequence[str],
    top_k: int = 5,
    clips: int | None = None,
    crops: int | None = None,
    num_frames: int | None = None,
    stride: int | None = None,
    crop_size: int | None = None,
    short_side: int | None = None,
    decoder: str = "pyav",
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> list[Prediction]:
    """Top-k classes of each video: softmax probabilities averaged over ``clips x crops`` views.

    Clip settings default to the ones the model was trained with (``model.clip_settings``, saved
    in checkpoints), then to the data module defaults. A video that cannot be decoded gets a
    :class:`Prediction` with ``error`` set; the others are still predicted.
    """
    from ssvar.data.dataset import VideoDataset, ViewSpec

    cs = {**DEFAULT_CLIP_SETTINGS, **(getattr(model, "clip_settings", None) or {})}
    given = dict(
        num_frames=num_frames,
        stride=stride,
        crop_size=crop_size,
        short_side=short_side,
        test_clips=clips,
        test_crops=crops,
    )
    cs.update({k: v for k, v in given.items() if v is not None})
    if cs["test_crops"] not in (1, 3):
        raise ValueError(f"crops must be 1 or 3, got {cs['test_crops']}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    names = list(getattr(model, "class_names", None) or [])
    net = model.inference_model().to(device).eval()
    hp = model.hparams
    views = f"{cs['test_clips']}x{cs['test_crops']}"
    index = VideoIndex([VideoRecord(os.path.abspath(v)) for v in videos], names)
    ds = VideoDataset(
        "", index, {"video": ViewSpec("test", clips=cs["test_clips"], crops=cs["test_crops"])},
        num_frames=cs["num_frames"], stride=cs["stride"], augment=AugmentConfig(crop_size=cs["crop_size"]),
        short_side=cs["short_side"], train=False, decoder=decoder,
    )
    it = range(len(videos))
    if progress and len(videos) > 1:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="predicting", unit="video", file=sys.stderr)
    out: list[Prediction] = []
    for i in it:
        try:
            # One video at a time, without the training-time replacement of broken files.
            x = ds._load(i)["video"]
        except VideoDecodeError as e:
            out.append(Prediction(videos[i], views=views, error=str(e)))
            continue
        x = x.unsqueeze(0) if x.dim() == 4 else x  # [V, C, T, H, W]
        logits = net(normalize_video(x.to(device), hp.mean, hp.std))
        probs = logits.softmax(-1).mean(0) if hp.get("test_average", "prob") == "prob" else logits.mean(0).softmax(-1)
        p, j = probs.topk(min(top_k, probs.numel()))
        top = [(names[c] if c < len(names) else str(c), float(q)) for c, q in zip(j.tolist(), p)]
        out.append(Prediction(videos[i], top, views))
    return out


def format_table(preds: Sequence[Prediction]) -> str:
    """One row per (video, rank): video, rank, class, probability."""
    rows = [("video", "rank", "class", "prob")]
    for pr in preds:
        if pr.error:
            rows.append((pr.video, "-", "ERROR", pr.error))
            continue
        for r, (c, p) in enumerate(pr.top, 1):
            rows.append((pr.video if r == 1 else "", str(r), c, f"{p:.3f}"))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c:<{w[2]}}  {d}" for a, b, c, d in rows]
    views = next((p.views for p in preds if p.views), "")
    return "\n".join(lines) + (f"\n(probabilities averaged over {views} clips x crops per video)" if views else "")


def __getattr__(name: str):
    if name == "predict_main":  # the command moved to the CLI layer; kept importable from here
        from ssvar.commands import predict_videos_main

        return predict_videos_main
    raise AttributeError(f"module 'ssvar.predict' has no attribute {name!r}")
