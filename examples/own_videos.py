# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Your own folder of videos
#
# Generated from `examples/own_videos.py` (`jupytext --to ipynb examples/own_videos.py`); CI runs
# the script with `SSVAR_QUICK=1`.
#
# All ssvar needs is a folder per class:
#
# ```
# my_videos/
#   fight/     a.mp4  b.avi  ...
#   noFight/   c.mp4  ...
# ```
#
# Set `SSVAR_VIDEO_DIR=/path/to/my_videos` before starting the notebook (for example the
# surveillance clips `../shared/data/surv_fight`, with its `groups.csv` in `SSVAR_GROUPS_CSV`).
# Without it, the notebook writes a tiny folder of synthetic videos (a square rising or falling) so
# that it runs anywhere. Steps: check the files, make a label split, train FixMatch through a config
# file (the same one `ssvar fit --config` takes), look at the test figures, predict a folder.

# %%
import os

import av
import numpy as np
import yaml

from ssvar.cli import main as ssvar
from ssvar.cli import run_cli

QUICK = os.environ.get("SSVAR_QUICK") == "1"  # tiny settings for CI
OUT = os.path.abspath("runs/own_videos")
os.makedirs(OUT, exist_ok=True)


def show(path):
    """Show a PNG inline in a notebook; print its path when run as a script."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display

        if get_ipython() is not None:
            return display(Image(filename=path))
    except ImportError:
        pass
    print("figure:", path)


# %% [markdown]
# ## 1. The folder
#
# Without `SSVAR_VIDEO_DIR`, we write two classes of short H.264 clips with PyAV: a bright square
# moving up (`rising`) or down (`falling`) over a noisy background. Vertical motion survives the
# default horizontal-flip augmentation; classes that differ by left/right motion would need
# `hflip: 0`.


# %%
def write_clip(path, direction, rng, frames=24, size=48):
    """A square moving up (direction -1) or down (+1) with wrap-around, on a noisy background."""
    background = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
    colour = rng.integers(150, 256, 3)
    side, speed = size // 4, int(rng.integers(2, 4))
    x, y = int(rng.integers(0, size * 3 // 4)), int(rng.integers(0, size))
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            img = background.copy()
            rows = (np.arange(side) + y + direction * speed * t) % size
            img[rows, x : x + side] = colour
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode(None))


VIDEO_DIR = os.environ.get("SSVAR_VIDEO_DIR")
GROUPS_CSV = os.environ.get("SSVAR_GROUPS_CSV")
if VIDEO_DIR is None:
    VIDEO_DIR = f"{OUT}/videos"
    rng = np.random.default_rng(0)
    for name, direction in (("rising", -1), ("falling", 1)):
        os.makedirs(f"{VIDEO_DIR}/{name}", exist_ok=True)
        for i in range(6 if QUICK else 16):
            write_clip(f"{VIDEO_DIR}/{name}/{name}_{i:02d}.mp4", direction, rng)
print(VIDEO_DIR, sorted(os.listdir(VIDEO_DIR)))

# %% [markdown]
# ## 2. Check the videos
#
# `ssvar check-videos` decodes every file and lists unreadable, truncated or too-short ones (exit
# status 1 if any). Training would skip broken files anyway (and count them in
# `data/decode_failures`), but it is better to know first.

# %%
status = ssvar(["check-videos", VIDEO_DIR, "--workers", "1" if QUICK else "2"])
print("exit status", status)

# %% [markdown]
# ## 3. A label split
#
# A few labelled videos per class, drawn class-balanced with a seeded RNG; a held-out test list; all
# other videos are the unlabelled pool. With a groups file (`path,group` columns: clips cut from the
# same source video share a group) the test split is group-disjoint, so no source leaks into both.

# %%
per_class = 2 if QUICK else 4
labeled_list, test_list = f"{OUT}/labeled.txt", f"{OUT}/test.txt"
args = ["splits", "make", "--root", VIDEO_DIR, "--per-class", str(per_class), "--test-fraction", "0.3",
        "--out", labeled_list, "--test-out", test_list]
assert 0 == ssvar(args + (["--groups", GROUPS_CSV] if GROUPS_CSV else []))

# %% [markdown]
# ## 4. Train FixMatch from a config file
#
# The config is what `ssvar fit --config own.yaml` reads; from Python, `run_cli` takes the same
# arguments. `ssvar fit --config own.yaml --print_config` shows every setting with its default.
# Pseudo-labels come from an EMA teacher (our CPU default in `examples/configs/methods/fixmatch.yaml`).
# The two callbacks (also in `examples/configs/trainer/plots.yaml`) draw the pseudo-label curves at
# the end of fit and a t-SNE of the test features at the end of test.

# %%
config = {
    "seed_everything": 0,
    "trainer": {
        "accelerator": "cpu", "devices": 1, "default_root_dir": OUT, "log_every_n_steps": 1,
        "max_epochs": 1 if QUICK else 8, "max_steps": 2 if QUICK else -1,
        "check_val_every_n_epoch": 1 if QUICK else 8, "limit_val_batches": 1 if QUICK else 1.0,
        "enable_progress_bar": not QUICK,
        "callbacks": [
            {"class_path": "ssvar.callbacks.PseudoLabelCurves"}, {"class_path": "ssvar.callbacks.FeatureTSNE"}
        ],
    },
    "model": {
        "class_path": "ssvar.methods.FixMatch",
        "init_args": {
            "backbone": {"class_path": "ssvar.models.Tiny3D", "init_args": {"width": 8 if QUICK else 16}},
            "threshold": 0.9, "lr": 0.05, "dropout": 0.2,
            "teacher": {
                "class_path": "ssvar.components.EMATeacher", "init_args": {"decay": 0.95, "schedule": "rampup"}
            },
        },
    },
    "data": {
        "class_path": "ssvar.data.FolderDataModule",
        "init_args": {
            "root": VIDEO_DIR, "labeled_list": labeled_list, "test_list": test_list,
            "batch_size": 2 if QUICK else 4, "num_workers": 0 if QUICK else 2,
            "num_frames": 4 if QUICK else 8, "stride": 2, "crop_size": 32 if QUICK else 64,
            "test_clips": 2, "test_crops": 1 if QUICK else 3,
        },
    },
    "test_after_fit": True,
}
with open(f"{OUT}/own.yaml", "w") as f:
    yaml.safe_dump(config, f, sort_keys=False)
cli = run_cli(["fit", "--config", f"{OUT}/own.yaml"])

# %% [markdown]
# ## 5. Test figures
#
# `test_after_fit` tested the checkpoint with `test_clips x test_crops` views per video. The confusion
# matrix and per-class accuracy are saved next to the logs (TensorBoard: `tensorboard --logdir runs/own_videos`).

# %%
print({k: round(float(v), 3) for k, v in cli.trainer.callback_metrics.items() if k.startswith("test/")})
for path in cli.model.test_figure_paths:
    show(path)
for name in ("pseudo_label_curves.png", "test_tsne.png"):
    if os.path.exists(os.path.join(cli.trainer.log_dir, name)):
        show(os.path.join(cli.trainer.log_dir, name))

# %% [markdown]
# ## 6. Predict a folder
#
# `ssvar predict-videos` takes files and folders; the checkpoint carries the method, backbone, class names
# and clip settings, so nothing else is needed:
# `ssvar predict-videos --ckpt CKPT my_videos/fight --top-k 2 --format table` (or `--format json`).

# %%
ckpt = cli.trainer.checkpoint_callback.best_model_path
first_class = sorted(d for d in os.listdir(VIDEO_DIR) if os.path.isdir(os.path.join(VIDEO_DIR, d)))[0]
assert 0 == ssvar(["predict-videos", "--ckpt", ckpt, os.path.join(VIDEO_DIR, first_class), "--top-k", "2"])
