#!/usr/bin/env bash
# The recipe of the cityscapes-road and cityscapes-road-fast zoo names: the CamVid zoo's recipe
# (make_zoo.sh) at Cityscapes' scale, for a machine with NVIDIA GPUs. NOT RUN YET: no GPU was
# available to this project, so these names are recipe-only entries in models/zoo/manifest.json.
#
#   bash train/results/cityscapes_zoo.sh /data/cityscapes runs/cityscapes_zoo [GPUS]
#
# Cityscapes' val cities (Frankfurt, Lindau, Muenster) are in no training frame, so its val split is
# already a held-out-place score; it picks best.pt. Road = label id 7 (the official label table).
set -euo pipefail
CS=${1:?usage: cityscapes_zoo.sh CITYSCAPES_DIR RUNS_DIR [GPUS]}
RUNS=${2:?usage: cityscapes_zoo.sh CITYSCAPES_DIR RUNS_DIR [GPUS]}
GPUS=${3:-8}
RS=${RS:-.venv/bin/roadseg}
DATA="--dataset cityscapes --data-path $CS"
RECIPE="--img-size 512 1024 --batch-size 4 --epochs 120 --lr 2e-3 --warmup-iters 500 --dice-weight 0.5
  --scale-range 0.75 1.5 --sync-bn --workers 8 --eval-every 4"
DDP="torchrun --nproc_per_node $GPUS --no-python $RS"
resume() { [ -f "$1/last.pt" ] && echo --resume || true; }

# the teacher: the full U-Net (base width 16), resumable
[ -f $RUNS/teacher/train_report.json ] || $DDP train $DATA $RECIPE --base-width 16 --out $RUNS/teacher \
  $(resume $RUNS/teacher)
# cityscapes-road: the teacher pruned by 45% of its channels in two steps, KL-distilled from it (one GPU)
[ -f $RUNS/road/prune_report.json ] || $RS prune --ckpt $RUNS/teacher/best.pt $DATA --ratio 0.45 --steps 2 \
  --epochs-per-step 10 --final-epochs 60 --distill kl --lr 1e-3 --batch-size 16 --workers 8 --device cuda \
  --out $RUNS/road
# cityscapes-road-fast: MobileUNet (head at 1/4, ReLU) distilled from the teacher
[ -f $RUNS/fast/train_report.json ] || $DDP train $DATA $RECIPE --arch mobile_unet --head-stride 4 --act relu \
  --teacher $RUNS/teacher/best.pt --out $RUNS/fast $(resume $RUNS/fast)

for name in road fast; do
  [ -f $RUNS/$name/model_fp32.onnx ] || $RS export --ckpt $RUNS/$name/best.pt $DATA --split val --out $RUNS/$name
  $RS eval --ckpt $RUNS/$name/best.pt $DATA --split val --json $RUNS/$name/val.json --overwrite
done
$RS publish --name cityscapes-road --ckpt $RUNS/road/best.pt --onnx $RUNS/road/model_fp32.onnx \
  --data "Cityscapes fine train split; Cityscapes licence (non-commercial research)" --eval val=$RUNS/road/val.json
$RS publish --name cityscapes-road-fast --ckpt $RUNS/fast/best.pt --onnx $RUNS/fast/model_fp32.onnx \
  --data "Cityscapes fine train split; Cityscapes licence (non-commercial research)" --eval val=$RUNS/fast/val.json
