"""One training epoch and the learning-rate schedule, shared by training, pruning fine-tuning and QAT.

``train_one_epoch`` is a small pure loop: forward under autocast, loss normalised by the global
number of valid pixels (see ``roadseg.train.losses``), backward through the (optional) GradScaler,
a scheduler step per iteration, and a check that the loss is finite on every rank.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from roadseg.models.core.cli import ToolError
from roadseg.models.core.road_labels import IGNORE
from roadseg.train.distributed import World, all_reduce_sum
from roadseg.train.losses import cross_entropy_sum, road_dice_loss


class NonFiniteLossError(ToolError):
    """The loss became NaN or infinite; training stops and keeps the last good checkpoint."""


@dataclass
class StepContext:
    device: torch.device
    world: World
    amp_dtype: torch.dtype | None = None
    dice_weight: float = 0.0
    channels_last: bool = False
    progress: bool = True


def make_scheduler(optimizer: torch.optim.Optimizer, total_iters: int, warmup_iters: int,
                   schedule: str = "poly", power: float = 0.9) -> LambdaLR:
    """Linear warm-up, then poly (power 0.9) or cosine decay to zero at ``total_iters``."""
    warmup_iters = min(warmup_iters, max(total_iters - 1, 0))

    def factor(step: int) -> float:
        if step < warmup_iters:
            return (step + 1) / (warmup_iters + 1)
        progress = min((step - warmup_iters) / max(total_iters - warmup_iters, 1), 1.0)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return (1.0 - progress) ** power

    return LambdaLR(optimizer, factor)


def train_one_epoch(model, loader, optimizer, scheduler, scaler, ctx: StepContext, *, epoch: int,
                    first_step: int, on_step: Callable[[int], None] | None = None,
                    loss_fn: Callable | None = None) -> dict:
    """Train for one (possibly partial, when resuming) epoch; returns loss and throughput.

    ``first_step`` is the global iteration of the loader's first batch; ``on_step(step)`` is called
    after every optimiser step with the number of steps done so far.
    ``loss_fn(model, images, masks) -> (loss_sum, valid_pixels, extra_loss)`` replaces the default
    cross-entropy (+ Dice) objective, e.g. for distillation.
    """
    model.train()
    loss_total, batches, images_seen, start = 0.0, 0, 0, time.perf_counter()
    valid_total = 0.0
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=None if ctx.progress and ctx.world.is_main else True,
               leave=False, dynamic_ncols=True)
    step = first_step
    for images, masks in bar:
        images = images.to(ctx.device, non_blocking=True)
        masks = masks.to(ctx.device, non_blocking=True)
        if ctx.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None):
            if loss_fn is None:
                logits = model(images)
                ce_sum, valid = cross_entropy_sum(logits, masks), (masks != IGNORE).sum()
                extra = ctx.dice_weight * road_dice_loss(logits, masks) if ctx.dice_weight else 0.0
            else:
                ce_sum, valid, extra = loss_fn(model, images, masks)
        # One collective per step: the global valid-pixel count, whether any rank's loss (CE or the
        # extra term) diverged, and the global CE sum for logging.
        extra_value = torch.as_tensor(extra, dtype=torch.float64, device=ce_sum.device).detach()
        finite = torch.isfinite(ce_sum.detach()) & torch.isfinite(extra_value)
        stats = all_reduce_sum(torch.stack([valid.detach().double(), (~finite).double(),
                                            ce_sum.detach().double()]))
        if stats[1] > 0:
            raise NonFiniteLossError(f"loss became non-finite at iteration {step} (epoch {epoch}); "
                                     "stopped, the last good checkpoint is kept (try a lower --lr)")
        loss = ce_sum * ctx.world.size / stats[0].clamp(min=1.0) + extra
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        batches += 1
        images_seen += images.shape[0] * ctx.world.size
        # the global mean CE (what one process with the global batch reports) + this rank's extra term
        loss_total += float(stats[2] / stats[0].clamp(min=1.0)) + float(extra_value)
        valid_total += float(stats[0])
        rate = images_seen / max(time.perf_counter() - start, 1e-9)
        bar.set_postfix(loss=f"{loss_total / batches:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}",
                        img_s=f"{rate:.1f}")
        if on_step is not None:
            on_step(step)
    if batches and valid_total == 0:
        raise ToolError(f"epoch {epoch}: no labelled pixel in {images_seen} training images (every label pixel is "
                        "ignore); check the dataset's labels and --dataset")
    seconds = time.perf_counter() - start
    return {"loss": loss_total / max(batches, 1), "batches": batches, "images": images_seen,
            "seconds": seconds, "img_per_s": images_seen / max(seconds, 1e-9),
            "lr": scheduler.get_last_lr()[0], "step": step}
