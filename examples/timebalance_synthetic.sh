#!/usr/bin/env bash
# TimeBalance end to end on the embedded SyntheticActions dataset, CPU, three stages of `ssvar fit`.
# Each stage saves <default_root_dir>/last.ckpt (a ModelCheckpoint in its config) and the next stage's
# config names that path: stage 2 loads the stage-1 backbone strictly (init_backbone_from), stage 3
# loads the TCLR student init and both fine-tuned teachers. Run from the repository root:
#   bash examples/timebalance_synthetic.sh            # all stages (about 10-20 minutes on 2 CPU cores)
#   STEPS_SCALE=0.1 bash examples/timebalance_synthetic.sh   # a quick check of the pipeline
set -euo pipefail
C=examples/configs
OUT=runs/timebalance_synthetic
SCALE=${STEPS_SCALE:-1}
steps() { python -c "print(max(2, int($1 * $SCALE)))"; }
SSVAR=${SSVAR:-ssvar}   # or "python -m ssvar.cli"

# Stage 1: self-supervised pretraining on the whole training pool (labels unused), three loss settings.
for v in inv dist tclr; do
  rm -f "$OUT/pretrain_$v/last.ckpt"
  $SSVAR fit --config $C/timebalance-pretrain-${v}_tiny3d_synthetic.yaml --trainer.max_steps "$(steps 150)"
done
# Stage 2: each teacher fine-tuned on the labelled videos (Supervised, initialised from stage 1).
for v in inv dist; do
  rm -f "$OUT/finetune_$v/last.ckpt"
  $SSVAR fit --config $C/timebalance-finetune-${v}_tiny3d_synthetic.yaml --trainer.max_steps "$(steps 200)"
done
# Stage 3: the student distilled from both frozen teachers; tests at the end.
rm -f "$OUT/timebalance/last.ckpt"
$SSVAR fit --config $C/timebalance_tiny3d_synthetic.yaml --trainer.max_steps "$(steps 200)"
echo "student checkpoint: $OUT/timebalance/last.ckpt"
