"""Parameter and MAC counts of a model at a given input size.

Counting is delegated to torch-pruning's ``count_ops_and_params`` (imported lazily, so that
loading a checkpoint never needs torch_pruning). MACs follow the usual convention of that
counter (convolutions, transposed convolutions, norms and activations). A fake-quantized (QAT)
model is counted as its float twin: the counter does not recognise ModelOpt's quantized layers,
and the arithmetic is the same.

    from roadseg.models.complexity import count_params_and_macs
    stats = count_params_and_macs(model, (352, 480))   # {"params": ..., "macs": ..., "gmacs": ...}
"""

from __future__ import annotations

import torch
from torch import nn

from roadseg.models.checkpoint import build_model
from roadseg.models.quantization import is_quantized


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_params_and_macs(model: nn.Module, input_size: tuple[int, int], in_channels: int | None = None) -> dict:
    import torch_pruning as tp

    if is_quantized(model):
        model = build_model(model.arch()).to(next(model.parameters()).device)
    in_channels = in_channels or getattr(model, "in_channels", 3)
    device = next(model.parameters()).device
    example = torch.zeros(1, in_channels, *input_size, device=device)
    was_training = model.training
    model.eval()  # the counter runs a forward pass; keep BatchNorm statistics untouched
    try:
        with torch.no_grad():
            macs, params = tp.utils.count_ops_and_params(model, example)
    finally:
        model.train(was_training)
    return {"params": int(params), "macs": int(macs), "gmacs": macs / 1e9, "input_size": list(input_size)}
