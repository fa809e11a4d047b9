"""Train the U-Net for road segmentation: CPU or GPU, one process or many (torchrun), resumable.

    python train/fit.py --dataset synthetic --out runs/demo/full --base-width 16 --epochs 8
    python train/fit.py --dataset camvid --data-path ../shared/data/camvid --img-size 352 480 \
        --base-width 16 --epochs 60 --out runs/camvid/full
    torchrun --nproc_per_node 8 train/fit.py --dataset cityscapes --data-path /data/cityscapes \
        --img-size 512 1024 --batch-size 8 --epochs 200 --out runs/cityscapes/full   # per-GPU batch
    python train/fit.py ... --out runs/camvid/full --resume        # continue after an interruption

Writes into ``--out``: ``last.pt`` (every epoch and every ``--save-every`` iterations, with the
optimiser, scheduler, scaler and RNG state), ``best.pt`` (best validation road IoU),
``metrics.jsonl`` (one line per epoch), ``curves.png``, ``train_report.json`` and TensorBoard
events when tensorboard is installed. Under torchrun only rank 0 writes.

Determinism: data order and augmentation are functions of (seed, epoch, sample index) only, so a
run resumed after a kill ends with the same weights as an uninterrupted one, and N processes with
batch B compute the same steps as one process with batch N*B (exactly with GroupNorm; with
BatchNorm each process normalises its own B samples unless --sync-bn on CUDA).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from roadseg.models.architectures import add_model_arguments, model_from_args
from roadseg.models.checkpoint import (
    CheckpointError,
    file_sha256,
    load_checkpoint,
    load_model,
    make_checkpoint,
    save_checkpoint,
)
from roadseg.models.complexity import count_params_and_macs
from roadseg.models.core.cli import ToolError, non_negative_float, non_negative_int, positive_float, positive_int, run
from roadseg.models.core.fileio import atomic_write_bytes, atomic_write_json, json_text, require_output_folder
from roadseg.models.core.model_metadata import IMAGENET_MEAN, IMAGENET_STD
from roadseg.models.core.road_labels import DATASETS, ROAD
from roadseg.models.core.road_metrics import format_table, road_metrics
from roadseg.models.core.zoo import resolve_model
from roadseg.models.quantization import is_quantized
from roadseg.train import distributed
from roadseg.train.distillation import make_distill_loss
from roadseg.train.engine import StepContext, make_scheduler, train_one_epoch
from roadseg.train.evaluate import evaluate, select_device
from roadseg.train.paired_transforms import AUGMENTATIONS, EvalTransform, train_transform
from roadseg.train.road_datasets import (
    DEFAULT_SYNTHETIC_PATH,
    add_split_arguments,
    build_dataset,
    collate_keep_sizes,
    ensure_synthetic,
    resolve_splits,
)
from roadseg.train.sampling import EpochBatchSampler, KeyedAugmentation

# Flags a resumed run may change: where and how it runs, not what it computes.
RESUME_MAY_CHANGE = {"resume", "overwrite", "out", "workers", "device", "save_every", "json", "data_path"}

# Tests set this to make the trainer SIGKILL itself right after the given optimiser step.
KILL_AFTER_STEP_ENV = "ROADSEG_FAULT_KILL_AFTER_STEP"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a road-segmentation U-Net.", add_help=add_help,
                                prog="train/fit.py")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, default="synthetic")
    data.add_argument("--data-path", type=Path, default=None,
                      help="dataset folder (default for synthetic: data/synthetic, generated if missing)")
    add_split_arguments(data)
    data.add_argument("--img-size", type=int, nargs=2, metavar=("H", "W"), default=[256, 512],
                      help="training crop and evaluation input size (multiples of 2**depth)")
    data.add_argument("--scale-range", type=float, nargs=2, default=[0.5, 2.0], metavar=("MIN", "MAX"),
                      help="random scale relative to --img-size")
    data.add_argument("--workers", type=non_negative_int, default=2)
    data.add_argument("--augment", choices=AUGMENTATIONS, default="basic",
                      help="basic: scale, crop, flip, colour; strong: also blur, grey, noise, haze, stronger colour")
    model = p.add_argument_group("model")
    add_model_arguments(model)
    model.add_argument("--init-from", type=Path, default=None, metavar="CKPT",
                       help="start from this checkpoint's architecture and weights (e.g. pretrained on synthetic "
                            "scenes, or a zoo name such as camvid-road: fine-tune it on your data); the model flags "
                            "are then ignored")
    model.add_argument("--teacher", type=Path, default=None, metavar="CKPT",
                       help="distil from this trained model (a checkpoint or a zoo name): CE on labels + "
                            "--distill-weight x KL to its logits")
    model.add_argument("--distill-weight", type=non_negative_float, default=1.0)
    model.add_argument("--distill-temperature", type=positive_float, default=2.0)
    optim = p.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=positive_int, default=10)
    optim.add_argument("--iters", type=positive_int, default=None, help="stop after this many iterations instead")
    optim.add_argument("--batch-size", type=positive_int, default=8, help="per process")
    optim.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    optim.add_argument("--lr", type=positive_float, default=2e-3)
    optim.add_argument("--weight-decay", type=float, default=1e-4)
    optim.add_argument("--momentum", type=float, default=0.9, help="SGD only")
    optim.add_argument("--schedule", choices=("poly", "cosine"), default="poly")
    optim.add_argument("--warmup-iters", type=int, default=100)
    optim.add_argument("--dice-weight", type=float, default=0.0, help="add this times soft road Dice to CE")
    run_group = p.add_argument_group("run")
    run_group.add_argument("--out", type=Path, required=True, help="output folder")
    run_group.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    run_group.add_argument("--overwrite", action="store_true",
                           help="train anew into an --out that holds a finished model (its files are replaced)")
    run_group.add_argument("--save-every", type=non_negative_int, default=0,
                           help="also write last.pt every N iterations")
    run_group.add_argument("--eval-every", type=positive_int, default=1,
                           help="validate every N epochs (and at the end)")
    run_group.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run_group.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto",
                           help="mixed precision on CUDA (auto: bf16 where supported, else fp16); CPU is fp32")
    run_group.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (CUDA)")
    run_group.add_argument("--seed", type=non_negative_int, default=0)
    run_group.add_argument("--json", type=Path, default=None, help="also write the final report here")
    return p


def check_args(args: argparse.Namespace) -> None:
    resolve_splits(args)
    if not 0 < args.scale_range[0] <= args.scale_range[1]:
        raise ToolError(f"--scale-range {args.scale_range}: expected 0 < MIN <= MAX")


def amp_dtype_for(device: torch.device, amp: str) -> torch.dtype | None:
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def plain_args(args: argparse.Namespace) -> dict:
    """The command line as plain data (never a pickled Namespace)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def save_curves(path: Path, history: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    evaluated = [h for h in history if h.get("val")]
    ax_iou.plot([h["epoch"] for h in evaluated], [100 * h["val"]["road_iou"] for h in evaluated], marker="o",
                color="tab:green")
    ax_iou.set(xlabel="epoch", ylabel="road IoU (%)", title="validation road IoU")
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def open_tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional dependency
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


class Trainer:
    """Holds the run's state; ``fit`` runs it. Kept small: the loop itself is train_one_epoch.

    Other stages reuse it to fine-tune: pass ``model`` (e.g. a pruned network; the model flags
    are then ignored), ``loss_fn`` (e.g. distillation, see ``train_one_epoch``) and ``meta``
    entries that override the checkpoint's (stage, parent hash, ...).
    """

    def __init__(self, args: argparse.Namespace, model: torch.nn.Module | None = None,
                 loss_fn=None, meta: dict | None = None):
        self.args, self.loss_fn, self.meta_overrides = args, loss_fn, meta or {}
        self.device = select_device(args.device)
        self.world = distributed.init_distributed(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.world.local_rank)
        torch.manual_seed(args.seed)
        random.seed(args.seed)
        np.random.seed(args.seed)

        size = tuple(args.img_size)
        self.model = model if model is not None else model_from_args(args)
        try:
            self.model.check_input_size(*size)
        except ValueError as err:
            raise ToolError(f"--img-size: {err}") from None
        self.complexity = count_params_and_macs(self.model, size)

        if args.dataset == "synthetic" and args.data_path is None:
            # one process generates the default set, the others wait for it
            if self.world.is_main:
                ensure_synthetic(DEFAULT_SYNTHETIC_PATH)
            distributed.barrier()
        train_base = build_dataset(args.dataset, args.data_path, args.train_split)
        self.val_set = build_dataset(args.dataset, args.data_path, args.val_split, EvalTransform(size))
        augment = train_transform(size, scale_range=tuple(args.scale_range), augment=args.augment)
        self.train_set = KeyedAugmentation(train_base, augment, args.seed)
        self.sampler = EpochBatchSampler(len(train_base), args.batch_size, self.world.size, self.world.rank,
                                         seed=args.seed)
        if self.sampler.iters_per_epoch == 0:
            raise ToolError(f"--batch-size {args.batch_size} x {self.world.size} process(es) is larger than the "
                            f"{len(train_base)} training images")
        self.iters_per_epoch = self.sampler.iters_per_epoch
        self.total_iters = args.iters or args.epochs * self.iters_per_epoch
        self.epochs = -(-self.total_iters // self.iters_per_epoch)

        self.model.to(self.device)
        self.channels_last = self.device.type == "cuda"
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.world.size > 1 and args.sync_bn and self.device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if args.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum,
                                             weight_decay=args.weight_decay, nesterov=True)
        self.scheduler = make_scheduler(self.optimizer, self.total_iters, args.warmup_iters, args.schedule)
        self.amp_dtype = amp_dtype_for(self.device, args.amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.step, self.best_iou, self.history = 0, -1.0, []
        self.ddp = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None) if self.world.size > 1 else self.model)

    # checkpoints ----------------------------------------------------------------------------------
    def meta(self, metrics: dict) -> dict:
        return {"stage": "train", "parent_sha256": None, "dataset": self.args.dataset,
                "input_size": list(self.args.img_size), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                "road_label": ROAD, "metrics": metrics, "complexity": self.complexity,
                "recipe": plain_args(self.args), **self.meta_overrides}

    def train_state(self) -> dict:
        return {"step": self.step, "epoch": self.step // self.iters_per_epoch,
                "iters_per_epoch": self.iters_per_epoch, "total_iters": self.total_iters,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng_state(), "best_iou": self.best_iou,
                "history": self.history, "world_size": self.world.size, "batch_size": self.args.batch_size}

    def save(self, name: str, metrics: dict, with_state: bool) -> None:
        if self.world.is_main:
            ckpt = make_checkpoint(self.model, self.meta(metrics), self.train_state() if with_state else None)
            save_checkpoint(self.args.out / name, ckpt)

    def resume(self) -> None:
        path = self.args.out / "last.pt"
        # CPU: RNG states must stay CPU byte tensors; load_state_dict moves weights where they belong
        ckpt = load_checkpoint(path, map_location="cpu")
        if "train_state" not in ckpt:
            raise CheckpointError(f"{path}: has no training state to resume from")
        if ckpt["arch"] != self.model.arch():
            diff = sorted(k for k in set(ckpt["arch"]) | set(self.model.arch())
                          if ckpt["arch"].get(k) != self.model.arch().get(k))
            raise CheckpointError(f"{path}: was trained with a different architecture (differs in {', '.join(diff)}); "
                                  "resume with the same model flags or choose another --out")
        recorded = ckpt["meta"].get("recipe") or {}
        now = plain_args(self.args)
        changed = sorted(k for k in recorded.keys() & now.keys()
                         if k not in RESUME_MAY_CHANGE and recorded[k] != now[k])
        if changed:
            diffs = ", ".join(f"--{k.replace('_', '-')} {recorded[k]} -> {now[k]}" for k in changed)
            raise CheckpointError(f"{path}: was started with other settings ({diffs}); resume with the same flags, "
                                  "or start a new run in another --out")
        state = ckpt["train_state"]
        if (state["iters_per_epoch"], state["total_iters"]) != (self.iters_per_epoch, self.total_iters):
            raise CheckpointError(
                f"{path}: was a run of {state['total_iters']} iterations x {state['iters_per_epoch']} per epoch, "
                f"these flags give {self.total_iters} x {self.iters_per_epoch}; resume with the same data, "
                "batch size, process count and epochs")
        if ("modelopt_state" in ckpt) != is_quantized(self.model):
            kind = "an INT8 QAT run (resume it with compress/qat.py)" if "modelopt_state" in ckpt else "a float run"
            raise CheckpointError(f"{path}: holds {kind}; this run's model is "
                                  f"{'quantized' if is_quantized(self.model) else 'float'}; choose another --out")
        try:
            self.model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as err:
            raise CheckpointError(f"{path}: weights do not fit this run's model: "
                                  f"{str(err).strip().splitlines()[0]}") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.step, self.best_iou, self.history = state["step"], state["best_iou"], state["history"]

    # loop -----------------------------------------------------------------------------------------
    def validate(self) -> dict:
        # Under DDP each process updated its own BatchNorm running statistics; validate (and
        # save) rank 0's on every rank so the summed confusion matrix is of one model.
        distributed.broadcast_buffers(self.model)
        indices = range(self.world.rank, len(self.val_set), self.world.size)  # no padding: exact counts
        loader = DataLoader(Subset(self.val_set, indices), batch_size=self.args.batch_size,
                            num_workers=self.args.workers, collate_fn=collate_keep_sizes,
                            pin_memory=self.device.type == "cuda")
        cm, _ = evaluate(self.model, loader, self.device, amp_dtype=self.amp_dtype)
        if cm.sum() == 0:
            raise ToolError(f"--val-split {self.args.val_split}: no labelled pixel in its {len(self.val_set)} images "
                            "(every label pixel is ignore); road IoU cannot be measured")
        return road_metrics(cm)

    def on_step(self, step: int) -> None:
        self.step = step
        every = self.args.save_every
        if every and step % every == 0 and step % self.iters_per_epoch and step < self.total_iters:
            self.save("last.pt", {}, with_state=True)
        if step == int(os.environ.get(KILL_AFTER_STEP_ENV, -1)):
            os.kill(os.getpid(), signal.SIGKILL)  # fault injection for the resume test: no clean-up at all

    def fit(self) -> dict:
        args, out = self.args, self.args.out
        writer = open_tensorboard(out) if self.world.is_main else None
        ctx = StepContext(self.device, self.world, self.amp_dtype, args.dice_weight, self.channels_last)
        loader = DataLoader(self.train_set, sampler=self.sampler, batch_size=args.batch_size,
                            num_workers=args.workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=args.workers > 0, drop_last=False)
        start_time = time.perf_counter()
        while self.step < self.total_iters:
            epoch, start_iter = divmod(self.step, self.iters_per_epoch)
            stop_iter = min(self.iters_per_epoch, self.total_iters - epoch * self.iters_per_epoch)
            self.sampler.set_epoch(epoch, start_iter, stop_iter)
            stats = train_one_epoch(self.ddp, loader, self.optimizer,
                                    self.scheduler, self.scaler, ctx, epoch=epoch, first_step=self.step,
                                    on_step=self.on_step, loss_fn=self.loss_fn)
            self.step = stats["step"]
            last = self.step >= self.total_iters
            record = {"epoch": epoch, "step": self.step, "train_loss": stats["loss"], "lr": stats["lr"],
                      "img_per_s": stats["img_per_s"], "epoch_seconds": stats["seconds"],
                      "resumed_mid_epoch": start_iter > 0}
            if (epoch + 1) % args.eval_every == 0 or last:
                record["val"] = self.validate()
            self.history.append(record)
            if self.world.is_main:
                self.checkpoint_epoch(record)
                self.log(record, writer)
        elapsed = time.perf_counter() - start_time
        if self.world.is_main and self.history:  # also after a resume that had nothing left to do
            self.write_logs()
        if writer is not None:
            writer.close()
        return self.finish(elapsed)

    def checkpoint_epoch(self, record: dict) -> None:
        val = record.get("val")
        # best.pt before last.pt: if killed in between, resuming redoes this epoch and rewrites best.pt
        if val and val["road_iou"] > self.best_iou:
            self.best_iou = val["road_iou"]
            self.save("best.pt", {"val": val, "epoch": record["epoch"]}, with_state=False)
        self.save("last.pt", {"val": val, "epoch": record["epoch"]} if val else {}, with_state=True)
        self.write_logs()

    def write_logs(self) -> None:
        # metrics.jsonl is rewritten from the history held in last.pt, so the two never disagree
        text = "".join(json_text(h, indent=None) + "\n" for h in self.history)
        atomic_write_bytes(self.args.out / "metrics.jsonl", text.encode())
        save_curves(self.args.out / "curves.png", self.history)

    def log(self, record: dict, writer) -> None:
        val = record.get("val")
        line = (f"epoch {record['epoch']:>3}  step {record['step']:>6}  loss {record['train_loss']:.4f}  "
                f"lr {record['lr']:.2e}  {record['img_per_s']:.1f} img/s")
        if val:
            line += f"  val road IoU {100 * val['road_iou']:.2f}  (best {100 * self.best_iou:.2f})"
        print(line, flush=True)
        if writer is not None:
            writer.add_scalar("train/loss", record["train_loss"], record["step"])
            writer.add_scalar("train/lr", record["lr"], record["step"])
            if val:
                for key in ("road_iou", "precision", "recall"):
                    writer.add_scalar(f"val/{key}", val[key], record["step"])

    def finish(self, elapsed: float) -> dict:
        final = next((h["val"] for h in reversed(self.history) if h.get("val")), None)
        best = max((h for h in self.history if h.get("val")), key=lambda h: h["val"]["road_iou"], default=None)
        report = {"dataset": self.args.dataset, "input_size": list(self.args.img_size),
                  "iterations": self.total_iters, "epochs": self.epochs, "world_size": self.world.size,
                  "global_batch": self.args.batch_size * self.world.size, "device": str(self.device),
                  "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "fp32",
                  "train_seconds_this_session": elapsed, "complexity": self.complexity,
                  "final_val": final, "best_val": best["val"] if best else None,
                  "best_epoch": best["epoch"] if best else None,
                  "best_ckpt": str(self.args.out / "best.pt") if (self.args.out / "best.pt").exists() else None,
                  "recipe": plain_args(self.args)}
        if self.world.is_main:
            atomic_write_json(self.args.out / "train_report.json", report)
            if self.args.json:
                atomic_write_json(self.args.json, report)
            rows = [(f"final (epoch {self.history[-1]['epoch']})", final)] if final else []
            rows += [(f"best (epoch {best['epoch']})", best["val"])] if best else []
            if rows:
                print(format_table(rows))
            print(f"{self.complexity['params']:,} parameters, {self.complexity['gmacs']:.2f} GMACs at "
                  f"{self.args.img_size[0]}x{self.args.img_size[1]}; trained {elapsed / 60:.1f} min; "
                  f"best checkpoint {self.args.out / 'best.pt'}", file=sys.stderr)
        return report


def run_training(args: argparse.Namespace, model: torch.nn.Module | None = None, loss_fn=None,
                 meta: dict | None = None) -> tuple[dict, torch.nn.Module]:
    """Train (or resume with ``args.resume``) into ``args.out``; returns (report, trained model)."""
    check_args(args)
    require_output_folder(args.out)
    finished = [name for name in ("best.pt", "train_report.json") if (args.out / name).exists()]
    if finished and not (args.out / "last.pt").exists() and not args.overwrite:
        raise ToolError(f"--out {args.out}: already holds a trained model ({', '.join(finished)}); choose another "
                        "--out, or pass --overwrite to train a new one there")
    if (args.out / "last.pt").exists() and not args.resume:
        raise ToolError(f"--out {args.out}: already holds a run (last.pt); pass --resume to continue it "
                        "or choose another --out")
    if args.resume and not (args.out / "last.pt").exists():
        raise ToolError(f"--resume: no {args.out / 'last.pt'} to continue from")
    trainer = Trainer(args, model, loss_fn, meta)
    if args.resume:
        trainer.resume()
        if trainer.world.is_main:
            print(f"resuming {args.out / 'last.pt'} at iteration {trainer.step}/{trainer.total_iters}",
                  file=sys.stderr)
    return trainer.fit(), trainer.model


def main(args: argparse.Namespace) -> int:
    model = loss_fn = None
    meta = {}
    for flag in ("init_from", "teacher"):  # a zoo name is its shipped checkpoint, hash checked
        if getattr(args, flag) is not None:
            setattr(args, flag, resolve_model(getattr(args, flag), "checkpoint"))
    if args.init_from is not None:
        model, parent = load_model(args.init_from)
        meta = {"parent_sha256": file_sha256(args.init_from), "init_from": str(args.init_from),
                "init_from_recipe": parent["meta"].get("recipe")}
    if args.teacher is not None:
        teacher, _ = load_model(args.teacher)
        loss_fn = make_distill_loss(teacher, "kl", args.distill_weight, args.distill_temperature)
        meta["teacher_sha256"] = file_sha256(args.teacher)
    try:
        run_training(args, model, loss_fn, meta)
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    run(main, get_args_parser())
