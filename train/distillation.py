"""Distillation toward a teacher model: cross-entropy on the labels plus KL on softened logits, or
MSE on the features entering the 1x1 head. Training a small model from a large one (``roadseg train
--teacher``) and fine-tuning a compressed one (prune, QAT) share it.

    loss_fn = make_distill_loss(teacher, "kl", weight=1.0, temperature=2.0)
    run_training(args, student, loss_fn)          # roadseg.train.fit's resumable loop
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from roadseg.models.core.road_labels import IGNORE
from roadseg.train.losses import cross_entropy_sum


def logits_and_head_input(model: torch.nn.Module, images: torch.Tensor):
    """The logits and the features entering the 1x1 head (pruning with ``keep_head_input`` keeps
    their width equal to the unpruned model's, so no adapter is needed)."""
    core = getattr(model, "module", model)  # unwrap DistributedDataParallel
    captured = {}
    handle = core.outc.register_forward_hook(lambda _module, inputs, _output: captured.update(x=inputs[0]))
    try:
        logits = model(images)
    finally:
        handle.remove()
    return logits, captured["x"]


def make_distill_loss(teacher: torch.nn.Module, kind: str, weight: float, temperature: float):
    """CE on labels plus ``weight`` x (KL on softened logits | MSE on the head's input features)
    toward the unpruned model."""
    teacher = teacher.eval()
    for param in teacher.parameters():
        param.requires_grad_(False)

    def loss_fn(model, images, masks):
        teacher.to(images.device)
        if kind == "kl":
            logits = model(images)
            with torch.no_grad():
                target = teacher(images).float()
            log_student = F.log_softmax(logits.float() / temperature, dim=1)
            log_teacher = F.log_softmax(target / temperature, dim=1)
            kd = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=1).mean() * temperature**2
        else:
            logits, features = logits_and_head_input(model, images)
            with torch.no_grad():
                _, target_features = logits_and_head_input(teacher, images)
            kd = F.mse_loss(features.float(), target_features.float())
        return cross_entropy_sum(logits, masks), (masks != IGNORE).sum(), weight * kd

    return loss_fn
