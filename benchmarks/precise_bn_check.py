"""Do a trained model's BatchNorm statistics cost accuracy? Evaluate a checkpoint as trained, then
again after re-estimating the statistics with Precise-BN on weak training views.

A method whose student also runs strong (RandAugment) views in training mode, as FixMatch does,
stores running BatchNorm statistics that partly describe those strong views; evaluation runs on
plain clips. This script measures what that costs: validation and test accuracy of the checkpoint
with its own statistics, then with statistics recomputed (:func:`ssvar.callbacks.recompute_bn_stats`:
the method's ``precise_bn_forward``, i.e. the weak views of labelled and unlabelled training
batches, no labels read, no weight changed) on ``--num-batches`` training batches.

Pass the run's own config and overrides after ``--``, so the data split and views are the run's:

    python benchmarks/precise_bn_check.py --ckpt runs/diag_bn/.../last.ckpt --num-batches 50 -- \\
        --config examples/configs/demo.yaml --config examples/configs/methods/fixmatch.yaml \\
        --data.init_args.labeled_per_class 4 --data.init_args.val_fraction 0.1 --data.init_args.seed 0
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path[:1]:
    sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="the trained checkpoint")
    p.add_argument("--num-batches", type=int, default=50, help="training batches for Precise-BN")
    p.add_argument("--out", help="JSON output")
    args = p.parse_args(own)
    if not rest:
        p.error("give the run's config and overrides after --")

    import lightning as L
    import torch
    from lightning.pytorch.utilities import CombinedLoader

    from ssvar.callbacks import recompute_bn_stats
    from ssvar.cli import run_cli

    torch.set_num_threads(1)
    cli = run_cli([*rest, "--data.init_args.num_workers=0"], run=False)
    model, dm = cli.model, cli.datamodule
    state = torch.load(args.ckpt, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(state)
    # the test figures go to a scratch folder (without a logger they would land in the working directory)
    scratch = tempfile.mkdtemp(prefix="precise_bn_check_")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=scratch)

    def evaluate() -> dict[str, float]:
        out = {}
        for run in (trainer.validate, trainer.test):
            (metrics,) = run(model, datamodule=dm, verbose=False)
            out.update({k: float(v) for k, v in metrics.items() if "acc1" in k or "mean_class" in k})
        return out

    before = evaluate()
    dm.setup("fit")
    loaders = dm.train_dataloader()
    if isinstance(loaders, (dict, list, tuple)):
        loaders = CombinedLoader(loaders, mode="min_size")
    iter(loaders)  # CombinedLoader needs its iterator before len / batches
    used = recompute_bn_stats(model, loaders, args.num_batches)
    after = evaluate()
    result = {"ckpt": args.ckpt, "num_batches_used": used, "as_trained": before, "precise_bn": after,
              "args": rest}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
