"""The one checkpoint format every stage shares (see DESIGN.md), and rebuilding models from it.

A checkpoint is plain data that loads with ``torch.load(path, weights_only=True)``:

    {"format": "roadseg-checkpoint", "version": 1,
     "arch": {"name": "unet", ...every width...},   # enough to rebuild without the creating code
     "state_dict": {...},
     "meta": {"stage": ..., "parent_sha256": ..., "dataset": ..., "input_size": [H, W], ...},
     "train_state": {...},                          # only where training can resume
     "modelopt_state": {...}}                       # only for INT8 QAT (stage "qat"; see models.quantization)

    from roadseg.models.checkpoint import load_model
    model, ckpt = load_model("runs/demo/full/best.pt")

Writes are atomic (temporary file, fsync, rename): an interrupted save leaves the previous file.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from roadseg.models.core.cli import ToolError
from roadseg.models.core.fileio import atomic_write_bytes, file_sha256  # noqa: F401 (file_sha256: re-exported)
from roadseg.models.core.model_metadata import MetadataError, check_arch
from roadseg.models.mobile_unet import MobileUNet
from roadseg.models.peers import PEERS
from roadseg.models.quantization import is_quantized, modelopt_state, restore_quantized
from roadseg.models.unet import UNet

FORMAT = "roadseg-checkpoint"
VERSION = 1
STAGES = ("init", "train", "pruned", "qat")
ARCHITECTURES: dict[str, type[nn.Module]] = {UNet.name: UNet, MobileUNet.name: MobileUNet, **PEERS}

# Plain-data types a checkpoint may hold; anything else would need pickling of code. Exact
# types, because subclasses of str (torch.__version__ is one) pickle as objects.
_PLAIN_SCALARS = (str, int, float, bool, type(None), torch.dtype)
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


class CheckpointError(ToolError):
    """A checkpoint file that cannot be used; the message names the file and the reason."""


def _check_plain(obj: Any, where: str) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}, expected str or int")
            _check_plain(value, f"{where}.{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
    elif type(obj) not in _PLAIN_SCALARS and type(obj) is not torch.Tensor:
        raise TypeError(f"{where} is a {type(obj).__name__}; checkpoints hold plain data only")


def versions() -> dict[str, str]:
    """Versions of the libraries that shaped a checkpoint (those that are imported)."""
    import sys

    found = {"torch": str(torch.__version__)}
    for module in ("torchvision", "torch_pruning", "modelopt"):
        if module in sys.modules:
            found[module] = str(getattr(sys.modules[module], "__version__", "unknown"))
    return found


def make_checkpoint(model: nn.Module, meta: dict, train_state: dict | None = None) -> dict:
    if not hasattr(model, "arch"):
        raise TypeError(f"{type(model).__name__} has no arch(); only models from models/ can be saved")
    meta = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(), **meta}
    if meta.get("stage") not in STAGES:
        raise ValueError(f"meta['stage'] must be one of {STAGES}, got {meta.get('stage')!r}")
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "arch": model.arch(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    if is_quantized(model):
        ckpt["modelopt_state"] = modelopt_state(model)
    if train_state is not None:
        ckpt["train_state"] = train_state
    return ckpt


def save_checkpoint(path: str | os.PathLike, ckpt: dict) -> Path:
    """Validate that ``ckpt`` is plain data and write it atomically."""
    for key in ("format", "version", "arch", "state_dict", "meta"):
        if key not in ckpt:
            raise ValueError(f"checkpoint for {path} lacks {key!r}")
    _check_plain(ckpt, "checkpoint")
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate a checkpoint; any problem raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as file:
        if file.read(4) != _ZIP_MAGIC:
            raise CheckpointError(f"{path}: not a {FORMAT} file (not a torch.save archive)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes are not the user's business
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch explains at length; its one specific line names the object that was refused.
        detail = next((line.strip() for line in str(err).splitlines() if "WeightsUnpickler error" in line), "")
        raise CheckpointError(
            f"{path}: holds pickled Python objects, refused by weights_only=True loading "
            f"(our checkpoints hold plain data only). {detail.split('. Please use')[0]}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt): {first_line}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a {FORMAT} file (expected a dict with format={FORMAT!r}; "
            "was it written by another tool?)"
        )
    version = ckpt.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this code reads ({VERSION}); "
            "update the toolchain"
        )
    for key in ("arch", "state_dict", "meta"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint lacks its {key!r} section")
    return ckpt


# A checkpoint's arch is data from a file: it is built first without memory (on the meta device) and
# refused when it is malformed or larger than any road model (the full U-Net has 31M parameters).
MAX_PARAMETERS = 200_000_000


def build_model(arch: dict, where: str = "checkpoint") -> nn.Module:
    """Rebuild an (untrained) network from a checkpoint's ``arch`` alone."""
    if not isinstance(arch, dict):
        raise CheckpointError(f"{where}: arch must be a dict, got {type(arch).__name__}")
    arch = dict(arch)
    name = arch.pop("name", None)
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise CheckpointError(f"{where}: unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    try:
        check_arch(arch, where)  # sizes that would make even the shape-only build loop for ever
    except MetadataError as err:
        raise CheckpointError(str(err)) from None
    try:
        with torch.device("meta"):
            shape_only = ARCHITECTURES[name](**arch)
    except Exception as err:  # any malformed value from the file: negative depth, widths of the wrong type, ...
        message = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{where}: architecture {name!r} cannot be built from its arch: {message}") from None
    params = sum(p.numel() for p in shape_only.parameters())
    if params > MAX_PARAMETERS:
        raise CheckpointError(f"{where}: arch describes {params:,} parameters, over the {MAX_PARAMETERS:,} limit "
                              "of any road model here; the file is damaged or not ours")
    return ARCHITECTURES[name](**arch)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint and load its weights; returns (model in eval mode, checkpoint)."""
    ckpt = load_checkpoint(path, map_location)
    model = build_model(ckpt["arch"], str(path))
    if "modelopt_state" in ckpt:  # a QAT checkpoint: re-insert the fake quantizers first
        model = restore_quantized(model, ckpt["modelopt_state"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit its architecture: {first_line}") from None
    return model.eval(), ckpt
