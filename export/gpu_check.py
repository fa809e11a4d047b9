"""One GPU check: what a machine with an NVIDIA GPU can run of roadseg, in a few minutes, without the network.

    python export/gpu_check.py --out runs/gpu_check        # make gpu-check
    python export/gpu_check.py --out runs/gpu_check --train-iters 100

It writes one JSON (``--out/gpu_check.json``, or ``--json``): every check with ``passed``, ``failed`` or
``skipped``, its reason, seconds and figures, plus ``not_tested`` (each check it could not run, and why) and the
versions it ran with. Exit 0 when no check failed (skips are allowed and named), 2 with one line otherwise.
On a machine without an NVIDIA GPU (or with ``CUDA_VISIBLE_DEVICES`` hiding every GPU) it stops at once, before
importing torch: one line on stderr, a non-zero exit, and the JSON saying ``skipped`` with reason ``no GPU: ...``.

The checks, in order; all work files lie under ``--out/work`` (recreated each run), data is generated:

1. ``cuda-train``: roadseg.train.fit for ``--train-iters`` iterations on a tiny synthetic set on CUDA, with AMP
   (bf16 where supported, else fp16) and channels_last, as ``roadseg train --device cuda`` runs; finite losses.
2. ``pytorch-gpu[trained]`` and ``pytorch-gpu[zoo:NAME]``: GPU inference in PyTorch (FP32, and FP16 autocast with
   channels_last) against the CPU result on the same frames: class agreement and road IoU. The zoo models are
   those in ``models/zoo/manifest.json`` with a checkpoint (``roadseg.models.core.zoo.resolve_model``, hash
   checked); an empty zoo is skipped with a note.
3. ``export``: the trained checkpoint to ``model_fp32.onnx`` (roadseg export, parity gate), ``model_fp16.onnx``
   (export/to_fp16.py) and ``model_int8_trt.onnx`` (roadseg quantize --target tensorrt, Q/DQ).
4. ``engine-fp16``, ``engine-int8`` (where ``import tensorrt`` works): native engines via export/to_tensorrt.py,
   FP16 from the FP32 ONNX on TensorRT 10.x (builder flag) or from ``model_fp16.onnx`` on 11.x (strong typing),
   INT8 from the Q/DQ file; built twice (the second must be the cached engine); run by deploy's TensorRT backend
   against onnxruntime CPU FP32 on the same frames.
5. ``ort-cuda`` and ``ort-trt-fp16[...]``, ``ort-trt-int8`` (where onnxruntime has those providers): onnxruntime's
   CUDA EP, and its TensorRT EP with roadseg's provider options (deploy/backends.py); two sessions, the first
   builds into the engine cache (under ``--out/work/cache``), the second must load it.
6. ``deploy[...]``: ``roadseg run`` of a short generated drive video with its labels, on the CPU (the reference)
   and on every GPU variant that passed: road IoU against the CPU run's, FPS.
7. ``bench``: ``roadseg bench`` of every file made here, one interleaved run.

``--rehearse-on-cpu`` runs the same steps with the CPU standing in for the GPU (training and PyTorch on the CPU,
onnxruntime's CPU provider in place of its GPU ones; TensorRT as far as it is importable): it tests this script's
plumbing on any machine and proves nothing about a GPU. Its JSON says ``"rehearsal": true``.

Thresholds for every GPU-vs-CPU comparison: ``--min-agreement`` percent of pixels whose class agrees (98) and
``--max-iou-delta`` road IoU points (1.0); PyTorch FP32 on the GPU must agree with the CPU to 99.5%.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from roadseg.models.core.cli import ToolError, non_negative_float, positive_int, run
from roadseg.models.core.fileio import atomic_write_json

FORMAT = "roadseg-gpu-check/1"
CHECKS = ("data", "cuda-train", "pytorch-gpu", "export", "engine-fp16", "engine-int8", "ort-cuda", "ort-trt-fp16",
          "ort-trt-int8", "deploy", "bench")
MARKER = ".roadseg-gpu-check"  # --out/work holds it: the only folder this script ever deletes
TORCH_FP32_MIN_AGREEMENT = 99.5
IMG_SIZE = (64, 128)  # the trained model's input; small, so every build and run takes seconds
DRIVE_SIZE = (128, 256)
TRAIN_FRAMES = 96


class Skipped(Exception):
    """The check cannot run on this machine; the message says why."""


class Failed(Exception):
    """The check ran and failed; the message says why, ``figures`` what was measured."""

    def __init__(self, message: str, figures: dict | None = None):
        super().__init__(message)
        self.figures = figures or {}


@dataclass
class Check:
    name: str
    status: str  # passed | failed | skipped
    reason: str = ""
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)


def one_line(text) -> str:
    return " ".join(str(text).split())


def file_name(name: str) -> str:
    """A check's name as a file name: ``ort-trt-fp16[model_fp16.onnx]`` -> ``ort-trt-fp16-model_fp16.onnx``."""
    return "-".join(part for part in re.split(r"[^A-Za-z0-9_.]+", name) if part)


class Recorder:
    """Runs checks one by one: an exception ends that check (failed, or skipped), never the whole run."""

    def __init__(self, log: Callable[[str], None] = print):
        self.checks: list[Check] = []
        self.log = log

    def run(self, name: str, fn: Callable[[], dict], *args, **kwargs) -> dict | None:
        start = time.perf_counter()
        try:
            figures = fn(*args, **kwargs) or {}
        except Skipped as why:
            check = Check(name, "skipped", one_line(why))
        except Failed as why:
            check = Check(name, "failed", one_line(why), figures=why.figures)
        except Exception as err:  # a check's own error, CUDA's or a stage's: recorded, the next check runs
            last = traceback.extract_tb(err.__traceback__)[-1]
            check = Check(name, "failed", f"{type(err).__name__}: {one_line(err)} "
                                          f"({Path(last.filename).name}:{last.lineno})")
        else:
            check = Check(name, "passed", figures=figures)
        check.seconds = round(time.perf_counter() - start, 2)
        self.checks.append(check)
        self.log(f"[{check.status:>7}] {name} ({check.seconds:.1f} s)" + (f": {check.reason}" if check.reason else ""))
        return check.figures if check.status == "passed" else None

    def skip(self, name: str, reason: str) -> None:
        self.checks.append(Check(name, "skipped", reason))
        self.log(f"[skipped] {name}: {reason}")

    def status(self, name: str) -> str | None:
        return next((c.status for c in self.checks if c.name == name), None)


def summarize(checks: list[Check]) -> dict:
    counts = {status: sum(c.status == status for c in checks) for status in ("passed", "failed", "skipped")}
    return {"counts": counts, "status": "failed" if counts["failed"] else "passed",
            "not_tested": [{"check": c.name, "reason": c.reason} for c in checks if c.status == "skipped"],
            "failed": [{"check": c.name, "reason": c.reason} for c in checks if c.status == "failed"]}


# is there a GPU? (no torch: the answer on a CPU machine must come at once) ---------------------------------------
def detect_gpu(environ: dict | None = None, which=shutil.which, exists=os.path.exists,
               listdir=os.listdir) -> tuple[bool, str]:
    """(found, what): an NVIDIA GPU this process may use, from CUDA_VISIBLE_DEVICES, nvidia-smi, the driver's
    /proc entries and Jetson's release file. torch.cuda decides later what torch can use."""
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return False, f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    smi = which("nvidia-smi")
    if smi:
        try:
            listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
            gpus = [line.strip() for line in listed.stdout.splitlines() if line.startswith("GPU ")]
            if gpus:
                return True, "; ".join(gpus)
            smi_said = one_line(listed.stderr or listed.stdout)[:200] or f"exit {listed.returncode}"
        except (OSError, subprocess.SubprocessError) as err:
            smi_said = one_line(err)
    else:
        smi_said = "nvidia-smi not found"
    try:
        if listdir("/proc/driver/nvidia/gpus"):
            return True, "NVIDIA driver lists a GPU in /proc/driver/nvidia/gpus"
    except OSError:
        pass
    if exists("/etc/nv_tegra_release"):
        return True, "NVIDIA Jetson (L4T, /etc/nv_tegra_release)"
    return False, f"no NVIDIA GPU found ({smi_said}; no /proc/driver/nvidia/gpus; not a Jetson)"


# command line ----------------------------------------------------------------------------------------------------
def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Check what this GPU machine can run: CUDA training, GPU inference, "
                                            "TensorRT and onnxruntime engines, deploy, bench. One JSON.",
                                add_help=add_help, prog="export/gpu_check.py")
    p.add_argument("--out", type=Path, default=Path("runs/gpu_check"),
                   help="writes gpu_check.json here; work files under OUT/work (recreated each run)")
    p.add_argument("--json", type=Path, default=None, help="write the JSON here instead of OUT/gpu_check.json")
    p.add_argument("--train-iters", type=positive_int, default=300, help="CUDA training iterations")
    p.add_argument("--frames", type=positive_int, default=16, help="frames compared GPU against CPU")
    p.add_argument("--drive-frames", type=positive_int, default=60, help="frames of the generated drive video")
    p.add_argument("--min-agreement", type=float, default=98.0, help="percent of pixels whose class agrees")
    p.add_argument("--max-iou-delta", type=non_negative_float, default=1.0, help="road IoU points")
    p.add_argument("--stage-timeout", type=positive_int, default=600, help="seconds for each subprocess")
    p.add_argument("--rehearse-on-cpu", action="store_true",
                   help="run every step with the CPU standing in for the GPU, to test this script (proves nothing "
                        "about a GPU; the JSON says rehearsal)")
    return p


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    json_path = args.json or args.out / "gpu_check.json"
    report = {"format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "host": platform.node(), "platform": platform.platform(), "python": platform.python_version()}
    found, what = (True, "none: a rehearsal on the CPU") if args.rehearse_on_cpu else detect_gpu()
    report["rehearsal"] = bool(args.rehearse_on_cpu)
    if not found:
        report.update(status="skipped", reason=f"no GPU: {what}", gpu=None, checks=[],
                      not_tested=[{"check": name, "reason": "no GPU"} for name in CHECKS],
                      seconds=round(time.perf_counter() - started, 3))
        atomic_write_json(json_path, report)
        raise ToolError(f"no GPU: {what}; nothing to check on this machine (wrote {json_path})")
    report["gpu"] = what
    recorder = Recorder()
    context = GpuCheck(args, recorder)
    try:
        context.run_all()
    finally:
        report["versions"] = context.versions
        report["checks"] = [vars(check) for check in recorder.checks]
        report.update(summarize(recorder.checks), seconds=round(time.perf_counter() - started, 1))
        atomic_write_json(json_path, report)
    counts = report["counts"]
    print(f"gpu check: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped "
          f"in {report['seconds']:.0f} s; wrote {json_path}")
    if counts["failed"]:
        names = ", ".join(f["check"] for f in report["failed"])
        raise ToolError(f"{counts['failed']} GPU check(s) failed: {names} (reasons and figures in {json_path})")
    return 0


# the checks ------------------------------------------------------------------------------------------------------
def fraction_ok(parity: dict, min_agreement: float, max_iou_delta: float) -> str | None:
    """Why a GPU-vs-CPU comparison fails its thresholds, or None."""
    problems = []
    if not parity["agreement_percent"] >= min_agreement:
        problems.append(f"class agreement {parity['agreement_percent']:.3f}% < {min_agreement}%")
    delta = parity["road_iou_delta_points"]
    if not (isinstance(delta, float) and math.isfinite(delta)) or abs(delta) > max_iou_delta:
        problems.append(f"|road IoU delta| {abs(delta):.3f} points > {max_iou_delta}")
    return "; ".join(problems) or None


def engine_onnx_for_fp16(tensorrt_major: int) -> str:
    """Which export a native FP16 engine is built from: TensorRT 10.x sets BuilderFlag.FP16 on the FP32 file,
    11.x (strongly typed) needs the FP16 graph."""
    return "model_fp32.onnx" if tensorrt_major == 10 else "model_fp16.onnx"


class GpuCheck:
    """The state the checks share: folders, the trained checkpoint, the exported files, the frames."""

    def __init__(self, args: argparse.Namespace, recorder: Recorder):
        self.args, self.recorder = args, recorder
        self.work = args.out / "work"
        self.versions: dict = {}
        self.ckpt: Path | None = None
        self.onnx: dict[str, Path] = {}
        self.gpu_models: dict[str, tuple[Path, list[str]]] = {}  # deploy variant -> (model file, run flags)
        self.rehearsal = bool(getattr(args, "rehearse_on_cpu", False))
        self.device = "cpu" if self.rehearsal else "cuda"

    # plumbing -------------------------------------------------------------------------------------------------
    def fresh_work_folder(self) -> None:
        if self.work.exists():
            if not (self.work / MARKER).exists():
                raise ToolError(f"{self.work}: exists and was not made by this script; choose another --out")
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        (self.work / MARKER).write_text("made by export/gpu_check.py; deleted and recreated on each run\n")
        (self.work / "logs").mkdir()

    def stage(self, name: str, module: str, *argv, env: dict | None = None) -> subprocess.CompletedProcess:
        """``python -m module argv`` as a user runs a stage; its output in work/logs/NAME.log; Failed on non-zero."""
        command = [sys.executable, "-m", module, *map(str, argv)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=self.args.stage_timeout,
                                    env={**os.environ, **(env or {})})
        except subprocess.TimeoutExpired:
            raise Failed(f"{module} ran past --stage-timeout {self.args.stage_timeout} s") from None
        log = self.work / "logs" / f"{file_name(name)}.log"
        log.write_text(f"$ {' '.join(command)}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}")
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            raise Failed(f"{module} exited {result.returncode}: {lines[-1] if lines else 'no message'} (log: {log})")
        return result

    def frames(self, info, count: int | None = None) -> list:
        from roadseg.deploy.labelled_frames import load_labelled_frames

        return load_labelled_frames("synthetic", self.data, "val", count or self.args.frames, info)

    # the run --------------------------------------------------------------------------------------------------
    def run_all(self) -> None:
        self.fresh_work_folder()
        self.data, self.drive = self.work / "synthetic", self.work / "drive"
        self.environment()
        record = self.recorder.run
        record("data", self.make_data)
        if self.torch_cuda is None:
            record("cuda-train", lambda: self.train())
        else:
            self.recorder.skip("cuda-train", self.torch_cuda)
        if self.ckpt is not None:
            record("pytorch-gpu[trained]", self.torch_gpu_vs_cpu, self.ckpt)
        else:
            self.recorder.skip("pytorch-gpu[trained]", "no trained checkpoint (cuda-train did not pass)")
        self.zoo_checks()
        if self.ckpt is not None:
            record("export", self.export)
        else:
            self.recorder.skip("export", "no trained checkpoint to export (cuda-train did not pass)")
        self.engine_checks()
        self.ort_checks()
        self.deploy_checks()
        self.bench()

    def environment(self) -> None:
        versions = self.versions
        try:
            import torch

            versions["torch"] = torch.__version__
            versions["torch_cuda"] = torch.version.cuda
            if self.rehearsal:
                self.torch_cuda = None
            elif torch.cuda.is_available():
                versions["cuda_device"] = torch.cuda.get_device_name(0)
                versions["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
                versions["bf16"] = bool(torch.cuda.is_bf16_supported())
                self.torch_cuda = None
            else:
                self.torch_cuda = (f"torch {torch.__version__} cannot use the GPU (torch.cuda.is_available() is "
                                   f"False; built for CUDA {torch.version.cuda})")
        except ImportError as err:
            self.torch_cuda = f"torch is not installed ({err}); pip install -e '.[train]'"
        try:
            import onnxruntime as ort

            versions["onnxruntime"] = ort.__version__
            versions["onnxruntime_providers"] = ort.get_available_providers()
        except ImportError as err:
            versions["onnxruntime"] = f"not installed ({err})"
        try:
            from roadseg.models.core.tensorrt_glue import import_tensorrt, tensorrt_major

            trt = import_tensorrt()
            versions["tensorrt"] = trt.__version__
            self.tensorrt_major, self.tensorrt_missing = tensorrt_major(trt.__version__), None
        except ToolError as err:
            self.tensorrt_major, self.tensorrt_missing = None, one_line(err)
            versions["tensorrt"] = f"not usable: {self.tensorrt_missing}"

    def make_data(self) -> dict:
        from roadseg.train.synthetic import write_dataset

        write_dataset(self.data, num_train=TRAIN_FRAMES, num_val=self.args.frames, height=IMG_SIZE[0] * 2,
                      width=IMG_SIZE[1] * 2, seed=11)
        self.stage("synth-drive", "roadseg.train.synthetic.cli", "--drive", "--out", self.drive, "--num",
                   self.args.drive_frames, "--size", *DRIVE_SIZE, "--seed", 12)
        return {"train_frames": TRAIN_FRAMES, "val_frames": self.args.frames, "drive_frames": self.args.drive_frames}

    # 1. training ----------------------------------------------------------------------------------------------
    def train(self) -> dict:
        import torch

        from roadseg.train import distributed
        from roadseg.train.fit import get_args_parser as train_parser
        from roadseg.train.fit import run_training

        out = self.work / "train"
        args = train_parser().parse_args([
            "--dataset", "synthetic", "--data-path", str(self.data), "--img-size", *map(str, IMG_SIZE),
            "--base-width", "8", "--iters", str(self.args.train_iters), "--batch-size", "8", "--lr", "3e-3",
            "--warmup-iters", "20", "--eval-every", "5", "--workers", "2", "--device", self.device, "--amp", "auto",
            "--out", str(out)])
        start = time.perf_counter()
        try:
            report, model = run_training(args)
        finally:
            distributed.cleanup()
        seconds = time.perf_counter() - start
        model = getattr(model, "module", model)
        weights = [p for p in model.parameters() if p.dim() == 4]
        losses = [json.loads(line).get("train_loss") for line in (out / "metrics.jsonl").read_text().splitlines()
                  if line.strip()]
        figures = {"iterations": report["iterations"], "device": report["device"], "amp": report["amp"],
                   "channels_last": all(w.is_contiguous(memory_format=torch.channels_last) for w in weights),
                   "train_losses": losses, "seconds": round(seconds, 1),
                   "val_road_iou": (report.get("final_val") or {}).get("road_iou"),
                   "max_memory_mib": None if self.rehearsal else round(torch.cuda.max_memory_allocated() / 2**20, 1)}
        problems = []
        if not report["device"].startswith(self.device):
            problems.append(f"trained on {report['device']}, not {self.device}")
        if not self.rehearsal and report["amp"] not in ("bfloat16", "float16"):
            problems.append(f"AMP was {report['amp']}")
        if not self.rehearsal and not figures["channels_last"]:
            problems.append("the weights are not channels_last")
        if not losses or not all(isinstance(v, float) and math.isfinite(v) for v in losses):
            problems.append(f"losses not finite: {losses}")
        if problems:
            raise Failed("; ".join(problems), figures)
        self.ckpt = out / "best.pt" if (out / "best.pt").exists() else out / "last.pt"
        return figures

    # 2. PyTorch on the GPU --------------------------------------------------------------------------------------
    def torch_gpu_vs_cpu(self, ckpt: Path) -> dict:
        if self.torch_cuda is not None:
            raise Skipped(self.torch_cuda)
        import torch

        from roadseg.export.parity import compare
        from roadseg.models.checkpoint import load_model
        from roadseg.models.core.model_metadata import from_checkpoint

        model, loaded = load_model(ckpt)
        info = from_checkpoint(loaded)
        frames = self.frames(info)
        cpu = model.float().eval()
        with torch.inference_mode():
            reference = {id(b): cpu(torch.from_numpy(b)).numpy() for b, _ in frames}
        device = self.device
        gpu = load_model(ckpt)[0].eval().to(device).to(memory_format=torch.channels_last)
        half_type = torch.float16 if device == "cuda" else torch.bfloat16  # a rehearsal autocasts the CPU's way

        def on_gpu(batch, half: bool):
            with torch.inference_mode(), torch.autocast(device, dtype=half_type, enabled=half):
                x = torch.from_numpy(batch).to(device).contiguous(memory_format=torch.channels_last)
                return gpu(x).float().cpu().numpy()

        fp32 = compare(lambda b: reference[id(b)], lambda b: on_gpu(b, False), frames)
        fp16 = compare(lambda b: reference[id(b)], lambda b: on_gpu(b, True), frames)
        figures = {"checkpoint": str(ckpt), "frames": len(frames), "input_size": list(info.input_size),
                   "fp32": fp32, "fp16_autocast_channels_last": fp16}
        problems = [f"FP32: {why}" for why in [fraction_ok(fp32, TORCH_FP32_MIN_AGREEMENT, self.args.max_iou_delta)]
                    if why]
        problems += [f"FP16 autocast: {why}" for why in [fraction_ok(fp16, self.args.min_agreement,
                                                                      self.args.max_iou_delta)] if why]
        if problems:
            raise Failed("; ".join(problems), figures)
        return figures

    def zoo_checks(self) -> None:
        from roadseg.models.core.zoo import ZooError, current_zoo_dir, read_manifest, resolve_model

        try:
            manifest = read_manifest()
        except ZooError as err:
            self.recorder.skip("pytorch-gpu[zoo]", f"the zoo ships no models here ({one_line(err)})")
            return
        names = [name for name, entry in sorted(manifest["models"].items()) if "checkpoint" in entry.get("files", {})]
        if not names:
            self.recorder.skip("pytorch-gpu[zoo]",
                               f"{current_zoo_dir() / 'manifest.json'} lists no model with a checkpoint")
            return
        for name in names:
            def check(name=name):
                try:
                    path = resolve_model(name, "checkpoint")
                except ZooError as err:
                    raise Failed(str(err)) from None
                return self.torch_gpu_vs_cpu(path)

            self.recorder.run(f"pytorch-gpu[zoo:{name}]", check)

    # 3. exports -------------------------------------------------------------------------------------------------
    def export(self) -> dict:
        out = self.work / "onnx"
        data = ["--dataset", "synthetic", "--data-path", self.data]
        self.stage("export-fp32", "roadseg.export.to_onnx", "--ckpt", self.ckpt, "--out", out, *data,
                   "--parity-images", 4)
        self.onnx["fp32"] = out / "model_fp32.onnx"
        figures = {"fp32": json.loads((out / "model_fp32_report.json").read_text())["parity"]}
        problems = []
        try:
            self.stage("export-fp16", "roadseg.export.to_fp16", "--model", self.onnx["fp32"], *data,
                       "--parity-images", 8, "--calib-images", 8)
            self.onnx["fp16"] = out / "model_fp16.onnx"
            report = json.loads((out / "model_fp16_report.json").read_text())
            figures["fp16"] = {**report["parity"], "tool": report["conversion"]["tool"]}
        except Failed as why:
            problems.append(f"FP16: {why}")
        try:
            self.stage("export-int8", "roadseg.export.quantize_onnx", "--model", self.onnx["fp32"], "--target",
                       "tensorrt", *data, "--parity-images", 8, "--calib-images", 32, "--runs", 5, "--rounds", 1)
            self.onnx["int8"] = out / "model_int8_trt.onnx"
            figures["int8"] = json.loads((out / "model_int8_trt_report.json").read_text())["parity"]
        except Failed as why:
            problems.append(f"INT8 Q/DQ: {why}")
        if problems:
            raise Failed("; ".join(problems), figures)
        return figures

    def reference(self):
        """onnxruntime CPU on the FP32 file: every GPU result is compared with it, on the same frames."""
        from roadseg.deploy.backends import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(self.onnx["fp32"], providers=["CPUExecutionProvider"])
        frames = self.frames(backend.info)
        logits = {id(b): backend.infer(b) for b, _ in frames}
        return frames, (lambda b: logits[id(b)])

    def compare_with_cpu(self, infer, figures: dict) -> dict:
        from roadseg.export.parity import compare

        frames, reference = self.reference()
        parity = compare(reference, infer, frames)
        figures = {**figures, "against_cpu": parity}
        why = fraction_ok(parity, self.args.min_agreement, self.args.max_iou_delta)
        if why:
            raise Failed(why, figures)
        return figures

    # 4. native TensorRT engines ---------------------------------------------------------------------------------
    def engine_checks(self) -> None:
        variants = {"engine-fp16": ("fp16", engine_onnx_for_fp16(self.tensorrt_major or 10)),
                    "engine-int8": ("int8", "model_int8_trt.onnx")}
        for name, (precision, onnx_name) in variants.items():
            if self.tensorrt_missing:
                self.recorder.skip(name, self.tensorrt_missing)
            elif self.recorder.status("export") is None:
                self.recorder.skip(name, "nothing exported (no trained checkpoint)")
            else:
                self.recorder.run(name, self.engine, name, precision, self.work / "onnx" / onnx_name)

    def engine(self, name: str, precision: str, onnx_path: Path) -> dict:
        if not onnx_path.is_file():
            raise Skipped(f"{onnx_path.name} was not exported (see the export check)")
        from roadseg.deploy.tensorrt_backend import TensorRTBackend

        out = self.work / "trt"
        flags = ["--model", onnx_path, "--precision", precision, "--out", out]
        start = time.perf_counter()
        self.stage(f"{name}-build", "roadseg.export.to_tensorrt", *flags)
        build_seconds = time.perf_counter() - start
        again = self.stage(f"{name}-rebuild", "roadseg.export.to_tensorrt", *flags)
        engines = sorted(out.glob(f"{onnx_path.stem}.*.engine"), key=lambda p: p.stat().st_mtime)
        manifest = json.loads(engines[-1].with_suffix(".json").read_text())
        figures = {"onnx": onnx_path.name, "engine": str(engines[-1]), "tensorrt": manifest["components"]
                   ["tensorrt_version"], "build_seconds": round(build_seconds, 1),
                   "engine_bytes": manifest["engine_bytes"], "cached_on_second_build": "reusing cached engine"
                   in again.stdout}
        with TensorRTBackend(engines[-1]) as backend:
            figures = self.compare_with_cpu(backend.infer, {**figures, "backend": backend.describe()})
        if not figures["cached_on_second_build"]:
            raise Failed("the second build did not reuse the cached engine", figures)
        self.gpu_models[name] = (engines[-1], [])
        return figures

    # 5. onnxruntime's GPU providers ------------------------------------------------------------------------------
    def ort_checks(self) -> None:
        providers = self.versions.get("onnxruntime_providers") or []
        variants = {"ort-cuda": ("fp32", ["CUDAExecutionProvider", "CPUExecutionProvider"]),
                    "ort-trt-fp16[model_fp32.onnx]": ("fp32", None), "ort-trt-fp16[model_fp16.onnx]": ("fp16", None),
                    "ort-trt-int8": ("int8", None)}
        for name, (kind, chosen) in variants.items():
            chosen = chosen or ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
            if self.rehearsal:
                chosen = ["CPUExecutionProvider"]  # standing in for the GPU providers
            if chosen[0] not in providers:
                self.recorder.skip(name, f"onnxruntime {self.versions.get('onnxruntime')} has no {chosen[0]} "
                                         f"(providers: {', '.join(providers) or 'none'}); pip install onnxruntime-gpu")
            elif kind not in self.onnx:
                self.recorder.skip(name, f"no {kind} ONNX was exported (see the export check)")
            else:
                self.recorder.run(name, self.ort, name, self.onnx[kind], chosen)

    def ort(self, name: str, onnx_path: Path, providers: list[str]) -> dict:
        from roadseg.deploy.backends import OnnxRuntimeBackend

        os.environ["XDG_CACHE_HOME"] = str(self.work / "cache")  # this process only: the EP's caches land here
        _, reference = self.reference()
        probe = self.frames(OnnxRuntimeBackend(onnx_path, providers=["CPUExecutionProvider"]).info, 1)[0][0]
        timings = []
        for _ in range(2):  # the first session builds (at its first run: dynamic shapes), the second loads
            start = time.perf_counter()
            backend = OnnxRuntimeBackend(onnx_path, providers=providers)
            backend.infer(probe)
            timings.append(round(time.perf_counter() - start, 2))
        described = backend.describe()
        figures = {"onnx": onnx_path.name, "provider": described["provider"], "backend": described,
                   "first_session_and_run_seconds": timings[0], "second_session_and_run_seconds": timings[1]}
        if described["provider"] != providers[0]:
            raise Failed(f"onnxruntime fell back to {described['provider']}", figures)
        if providers[0] == "TensorrtExecutionProvider":
            cached = sorted(p.name for p in Path(described["tensorrt_ep"]["engine_cache"]).iterdir())
            figures["engine_cache_files"] = cached
            if not any(name.endswith(".engine") for name in cached):
                raise Failed("no engine in the TensorRT EP's engine cache after the first run", figures)
        figures = self.compare_with_cpu(backend.infer, figures)
        self.gpu_models[name] = (onnx_path, ["--providers", *providers])
        return figures

    # 6. deploy on a video -----------------------------------------------------------------------------------------
    def run_video(self, name: str, model: Path, flags: list[str]) -> dict:
        summary = self.work / "deploy" / f"{file_name(name)}.json"
        summary.parent.mkdir(exist_ok=True)
        self.stage(f"deploy-{name}", "roadseg.deploy.run", "--model", model, "--source", self.drive / "drive.mp4",
                   "--gt", self.drive, "--warmup", 5, "--json", summary, *flags,
                   env={"XDG_CACHE_HOME": str(self.work / "cache")})
        report = json.loads(summary.read_text())
        road = report.get("road") or {}
        return {"frames": report.get("frames"), "road_iou": road.get("road_iou"),
                "model_fps": (report.get("model_only") or {}).get("fps"),
                "end_to_end_fps": (report.get("end_to_end") or {}).get("fps"), "backend": report.get("backend")}

    def deploy_checks(self) -> None:
        if "fp32" not in self.onnx or not (self.drive / "drive.mp4").is_file():
            self.recorder.skip("deploy", "no FP32 ONNX or no drive video (see the export and data checks)")
            return
        cpu = self.recorder.run("deploy[cpu]", self.run_video, "cpu", self.onnx["fp32"],
                                ["--providers", "CPUExecutionProvider"])
        if not self.gpu_models:
            self.recorder.skip("deploy[gpu]", "no GPU variant passed its check (engines, onnxruntime providers)")
            return
        for name, (model, flags) in self.gpu_models.items():
            def check(name=name, model=model, flags=flags):
                if cpu is None:
                    raise Skipped("the CPU reference run failed")
                figures = self.run_video(name, model, flags)
                if figures["road_iou"] is None or cpu["road_iou"] is None:
                    raise Failed("no road IoU in the run summary", figures)
                figures["road_iou_delta_points_vs_cpu"] = 100 * (figures["road_iou"] - cpu["road_iou"])
                if abs(figures["road_iou_delta_points_vs_cpu"]) > self.args.max_iou_delta:
                    raise Failed(f"|road IoU delta| vs the CPU run {abs(figures['road_iou_delta_points_vs_cpu']):.3f} "
                                 f"points > {self.args.max_iou_delta}", figures)
                return figures

            self.recorder.run(f"deploy[{name}]", check)

    # 7. bench -------------------------------------------------------------------------------------------------------
    def bench(self) -> None:
        models = [str(path) for path in self.onnx.values()]
        models += [str(model) for model, _ in self.gpu_models.values() if model.suffix == ".engine"]
        if not models:
            self.recorder.skip("bench", "nothing was exported")
            return

        def check():
            out = self.work / "bench"
            self.stage("bench", "roadseg.deploy.benchmark", "--model", *models, "--sizes",
                       f"{IMG_SIZE[0]}x{IMG_SIZE[1]}", "--dataset", "synthetic", "--data-path", self.data,
                       "--runs", 20, "--rounds", 2, "--out", out, env={"XDG_CACHE_HOME": str(self.work / "cache")})
            rows = json.loads((out / "benchmark.json").read_text())["rows"]
            return {"rows": [{key: row.get(key) for key in ("name", "backend", "provider", "precision", "size",
                                                            "p50_ms", "fps", "road_iou")} for row in rows]}

        self.recorder.run("bench", check)


if __name__ == "__main__":
    run(main, get_args_parser())
