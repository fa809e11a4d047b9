"""The manifest beside every TensorRT engine: its format and how to read and check it (standard library only).

export/to_tensorrt.py writes it (``<engine stem>.json`` beside ``<engine stem>.engine``) and deploy reads it,
so it lives here rather than in export (build time): deploy must not import export, nor torch.

    {"format": "roadseg-trt-engine/1", "key": sha256 of the components,
     "components": {"tensorrt_version", "gpu_name", "compute_capability", "precision", "profile", ...},
     "model": the roadseg metadata (models.model_metadata.ModelInfo.to_props()),
     "onnx", "engine", "engine_bytes", "engine_sha256", "build_seconds", "created"}

    from roadseg.models.core.engine_manifest import manifest_path, read_manifest
    manifest = read_manifest(manifest_path("runs/demo/trt/model.engine"))   # runs/demo/trt/model.json
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from roadseg.models.core.cli import ToolError
from roadseg.models.core.model_metadata import MetadataError, ModelInfo

MANIFEST_FORMAT = "roadseg-trt-engine/1"
MANIFEST_FIELDS = ("format", "key", "components", "model", "onnx", "engine", "engine_bytes", "engine_sha256",
                   "build_seconds", "created")


def cache_key(components: dict) -> str:
    """The engine cache key: sha256 of the components as canonical JSON."""
    canonical = json.dumps(components, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def manifest_path(engine_path: str | Path) -> Path:
    """``dir/model.engine`` -> ``dir/model.json``."""
    return Path(engine_path).with_suffix(".json")


def manifest_problem(manifest) -> str | None:
    """What is wrong with a manifest, or None when it is sound."""
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return f"format is not {MANIFEST_FORMAT}"
    missing = [name for name in MANIFEST_FIELDS if name not in manifest]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not isinstance(manifest["components"], dict) or manifest["key"] != cache_key(manifest["components"]):
        return "its key does not match its components"
    if not isinstance(manifest["engine_bytes"], int) or not isinstance(manifest["model"], dict):
        return "engine_bytes or model has the wrong type"
    try:
        ModelInfo.from_props(manifest["model"], where="model")
    except MetadataError as err:
        return str(err)
    return None


def read_manifest(path: str | Path) -> dict:
    """The manifest beside an engine; a ToolError naming the file when it is missing or damaged."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ToolError(f"{path}: cannot read engine manifest ({err.strerror or err})") from None
    except ValueError as err:
        raise ToolError(f"{path}: engine manifest is not valid JSON ({err})") from None
    problem = manifest_problem(manifest)
    if problem:
        raise ToolError(f"{path}: damaged engine manifest ({problem}); delete it to rebuild the engine")
    return manifest
