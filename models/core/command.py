"""The ``roadseg`` command: one subcommand per stage of the chain, each built from that stage's own
``get_args_parser()`` and ``main()`` (the scripts also run on their own, ``python train/fit.py``).

    roadseg --help                 # the subcommands, one line each (imports nothing heavy)
    roadseg train --help           # every flag with its default, and an example
    roadseg train --dataset camvid --data-path ../shared/data/camvid --out runs/camvid/full

A stage's module (and torch with it) is imported only when its subcommand runs, so ``roadseg
--help`` and the torch-free subcommands (``run``, ``predict``, ``bench``) start fast and work in the
run-time install (``pip install 'roadseg[deploy]'``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NamedTuple

from roadseg.models.core.cli import run


class Command(NamedTuple):
    module: str
    summary: str
    example: str


# In the order of the chain. Only names here: the modules are imported when their command runs.
COMMANDS: dict[str, Command] = {
    "synth": Command("roadseg.train.synthetic.cli", "write a synthetic road dataset (Cityscapes layout) or drive video",
                     "roadseg synth --out data/synthetic --num 160 --num-val 40 --size 256 512"),
    "init": Command("roadseg.models.init_checkpoint", "write an untrained checkpoint of any architecture",
                    "roadseg init --arch lraspp_mobilenet_v3_large --img-size 176 240 --out runs/peer"),
    "train": Command("roadseg.train.fit", "train a model (CPU or GPU, torchrun for several), resumable",
                     "roadseg train --dataset camvid --data-path ../shared/data/camvid --holdout-drive 0006R0 "
                     "--img-size 176 240 --out runs/camvid/full"),
    "eval": Command("roadseg.train.evaluate", "road IoU/precision/recall of a checkpoint or of predicted masks",
                    "roadseg eval --ckpt runs/camvid/full/best.pt --dataset camvid --data-path ../shared/data/camvid"),
    "prune": Command("roadseg.compress.prune", "structured channel pruning (torch-pruning) with fine-tuning",
                     "roadseg prune --ckpt runs/camvid/full/best.pt --dataset camvid "
                     "--data-path ../shared/data/camvid --ratio 0.5 --distill kl --out runs/camvid/pruned"),
    "qat": Command("roadseg.compress.qat", "INT8 quantization-aware training (ModelOpt)",
                   "roadseg qat --ckpt runs/camvid/pruned/best.pt --dataset camvid "
                   "--data-path ../shared/data/camvid --out runs/camvid/qat"),
    "export": Command("roadseg.export.to_onnx", "export a checkpoint to ONNX behind the parity gate",
                      "roadseg export --ckpt runs/camvid/pruned/best.pt --dataset camvid "
                      "--data-path ../shared/data/camvid --out runs/camvid/onnx"),
    "quantize": Command("roadseg.export.quantize_onnx", "post-training INT8 of an ONNX file, parity-gated",
                        "roadseg quantize --model runs/camvid/onnx/model_fp32.onnx --target onnxruntime "
                        "--dataset camvid --data-path ../shared/data/camvid"),
    "fp16": Command("roadseg.export.to_fp16", "convert an FP32 ONNX to FP16 (ModelOpt AutoCast), parity-gated",
                    "roadseg fp16 --model runs/camvid/onnx/model_fp32.onnx --dataset camvid "
                    "--data-path ../shared/data/camvid"),
    "qdq-check": Command("roadseg.export.qdq_check", "check that a Q/DQ INT8 ONNX follows TensorRT's rules",
                         "roadseg qdq-check runs/camvid/onnx/model_int8_qat.onnx"),
    "engine": Command("roadseg.export.to_tensorrt", "build a TensorRT engine (GPU machines)",
                      "roadseg engine --model runs/camvid/onnx/model_int8_qat.onnx --precision int8 "
                      "--out runs/camvid/trt"),
    "gpu-check": Command("roadseg.export.gpu_check", "check what this GPU machine can run: training, engines, deploy",
                         "roadseg gpu-check --out runs/gpu_check"),
    "publish": Command("roadseg.export.zoo_publish", "put a trained model into the model zoo (models/zoo)",
                       "roadseg publish --name camvid-road --ckpt runs/zoo/road/best.pt "
                       "--onnx runs/zoo/road/model_fp32.onnx --data 'CamVid, research use'"),
    "sweep": Command("roadseg.export.arch_sweep", "time architecture variants and peers, FP32 and INT8",
                     "roadseg sweep --sizes 352x480 --threads 2 --out runs/arch_sweep"),
    "run": Command("roadseg.deploy.run", "road overlay on a camera, video or image folder, with FPS and IoU",
                   "roadseg run --model runs/camvid/onnx/model_fp32.onnx --source clip.mp4 "
                   "--output overlay.mp4"),
    "predict": Command("roadseg.deploy.predict", "road mask PNGs (and overlays) for images, named after them",
                       "roadseg predict --model camvid-road --source street.jpg --output road.png"),
    "bench": Command("roadseg.deploy.benchmark", "one table of models: size, latency, FPS, road IoU",
                     "roadseg bench --model peer.onnx model_fp32.onnx --dataset camvid "
                     "--data-path ../shared/data/camvid --threads 2 --out runs/bench"),
    "report": Command("roadseg.deploy.report", "one HTML/Markdown report over a run folder: table, plots, provenance",
                      "roadseg report runs/demo --frames data/synthetic_drive"),
}


def overview() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: roadseg COMMAND [--help] [ARGS...]", "",
             "Road segmentation for the edge: train, shrink, export and run a road segmenter.", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "roadseg COMMAND --help shows that command's flags, their defaults and an example."]
    return "\n".join(lines)


def command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """The stage's own parser, renamed ``roadseg NAME``, showing defaults and an example; and its main."""
    command = COMMANDS[name]
    try:
        module = importlib.import_module(command.module)
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] == "roadseg":
            raise  # our own module missing is a broken install, not a missing extra
        extra = "deploy" if err.name.split(".")[0] in ("onnxruntime", "cv2") else "train"
        print(f"roadseg {name}: error: needs the Python package {err.name!r}, which is not installed "
              f"(pip install 'roadseg[{extra}]')", file=sys.stderr)
        sys.exit(2)
    parser = module.get_args_parser()
    parser.prog = f"roadseg {name}"
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.epilog = f"example: {command.example}"
    return parser, module.main


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(overview())
        sys.exit(0)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"roadseg: error: unknown command {name!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    parser, stage_main = command_parser(name)
    run(stage_main, parser, rest)


if __name__ == "__main__":
    main()
