"""PyTorch -> ONNX export of our models (dynamic batch, height and width).

Uses the TorchScript-based exporter (``dynamo=False``): it needs no onnxscript, and it is the one
that exports fake-quantized (QAT) models, so every stage exports through one path.

    from export.onnx_export import export_onnx
    export_onnx(model, "model.onnx", input_size=(352, 480), metadata={"roadseg.arch": "..."})
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import torch

from models.fileio import atomic_write_bytes

DEFAULT_OPSET = 17


def onnx_bytes(model: torch.nn.Module, input_size: tuple[int, int], opset: int = DEFAULT_OPSET,
               dynamic: bool = True, in_channels: int = 3) -> bytes:
    model = model.eval()
    device = next(model.parameters()).device
    example = torch.zeros(1, in_channels, *input_size, device=device)
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": axes, "logits": axes} if dynamic else None)
    return buffer.getvalue()


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, input_size: tuple[int, int],
                opset: int = DEFAULT_OPSET, dynamic: bool = True, metadata: dict[str, str] | None = None) -> Path:
    data = onnx_bytes(model, input_size, opset, dynamic)
    if metadata:
        import onnx

        proto = onnx.load_from_string(data)
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        data = proto.SerializeToString()
    return atomic_write_bytes(path, data)
