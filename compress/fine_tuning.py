"""Fine-tuning a compressed model (pruning and QAT share it): train/fit.py's settings for the
fine-tuning phase, typed, from the stage's own arguments. Distillation toward the uncompressed
teacher is ``roadseg.train.distillation``.

    loss_fn = make_distill_loss(teacher, "kl", weight=1.0, temperature=2.0)
    run_training(fine_tune_args(args, out, epochs), student, loss_fn)   # train.fit's resumable loop
"""

from __future__ import annotations

import argparse
from pathlib import Path

from roadseg.train.fit import get_args_parser as fit_args_parser

# Settings of the parent's training recipe that its fine-tuning keeps (the same augmentation and loss).
INHERITED = ("augment", "dice_weight")


def fine_tune_args(args, out: Path, epochs: int, parent_recipe: dict | None = None) -> argparse.Namespace:
    """train/fit.py's settings for fine-tuning at ``args.input_size`` into ``out`` (mild scale jitter,
    no warm-up, the parent recipe's augmentation and Dice weight): fit's defaults with typed values set
    on them; a re-run resumes an interrupted phase."""
    fit = fit_args_parser().parse_args(["--out", str(out)])
    fit.dataset, fit.data_path = args.dataset, args.data_path
    fit.img_size = list(args.input_size)
    fit.epochs, fit.batch_size, fit.lr = epochs, args.batch_size, args.lr
    fit.warmup_iters, fit.workers, fit.device, fit.seed = 0, args.workers, args.device, args.seed
    fit.scale_range = [0.75, 1.5]
    for name in INHERITED:
        if name in (parent_recipe or {}):
            setattr(fit, name, parent_recipe[name])
    for split in ("train_split", "val_split", "holdout_drive"):  # the compressed model sees the data it trained on
        if hasattr(args, split):
            setattr(fit, split, getattr(args, split))
    fit.resume = (out / "last.pt").exists()
    return fit
