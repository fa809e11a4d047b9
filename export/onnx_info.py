"""Reading the roadseg metadata of an .onnx file with the onnx package (no torch, no onnxruntime
session): for the export-side tools that inspect a file before quantizing it or building an engine.
The run time reads the same metadata through its runtime instead (``roadseg.deploy.backends``).

    from roadseg.export.onnx_info import read_onnx_info
    info = read_onnx_info("runs/camvid/onnx/model_fp32.onnx")   # ModelInfo: input size, mean/std, ...
"""

from __future__ import annotations

import onnx

from roadseg.models.core.model_metadata import MetadataError, ModelInfo


def read_onnx_info(path, where: str | None = None) -> ModelInfo:
    """ModelInfo of an .onnx file, read with the onnx package without loading the weights."""
    from google.protobuf.message import DecodeError  # onnx's own dependency

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except OSError as err:
        raise MetadataError(f"{path}: cannot read ({err.strerror or err})") from None
    except DecodeError:
        raise MetadataError(f"{path}: not an ONNX file (protobuf could not parse it)") from None
    return ModelInfo.from_props({p.key: p.value for p in proto.metadata_props}, where or str(path))
