"""The model zoo: ready-to-run road models shipped in the repository (``models/zoo/``), by name.

``models/zoo/manifest.json`` (or the one in ``$ROADSEG_ZOO_DIR``, a team's own zoo) lists each
model: its FP32 ONNX file (with roadseg metadata) and its plain-data checkpoint (for fine-tuning),
their sha256, the data it was trained on, its input size and its measured figures;
the model card beside the files (``MODEL_CARD.md``) says how each was made. A name resolves to its file only when the
file's hash matches the manifest, so a damaged or swapped file is refused in one line. Names with
a recipe but no trained files (``cityscapes-*``) say so. A model may also ship its OpenVINO INT8 IR
(``.xml`` + ``.bin``, kind ``openvino_int8``), run by the name with ``-int8`` appended.

    from roadseg.models.core.zoo import resolve_model
    path = resolve_model("camvid-road")          # Path to models/zoo/camvid-road.onnx, hash checked
    path = resolve_model("camvid-road-int8")     # models/zoo/camvid-road-int8.xml (and its .bin), hash checked
    path = resolve_model("runs/x/model.onnx")    # a path is returned as it is
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from roadseg.models.core.cli import ToolError
from roadseg.models.core.fileio import file_sha256

ZOO_DIR = Path(__file__).resolve().parents[1] / "zoo"  # models/zoo, installed as roadseg/models/zoo
ZOO_DIR_ENV = "ROADSEG_ZOO_DIR"  # another zoo folder (a team's own models; the tests' tiny zoo)
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "roadseg-zoo/1"
KINDS = ("onnx", "checkpoint", "openvino_int8")
INT8_SUFFIX = "-int8"  # camvid-road-int8: camvid-road's openvino_int8 file


class ZooError(ToolError):
    """A zoo name that cannot be used; the message names the model, the file and what is wrong."""


def current_zoo_dir() -> Path:
    return Path(os.environ.get(ZOO_DIR_ENV) or ZOO_DIR)


def read_manifest(zoo_dir: Path | None = None) -> dict:
    path = (zoo_dir or current_zoo_dir()) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ZooError(f"{path}: no zoo manifest (the model zoo is not installed)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ZooError(f"{path}: not a readable zoo manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT \
            or not isinstance(manifest.get("models"), dict):
        raise ZooError(f"{path}: expected a JSON object with format {MANIFEST_FORMAT!r} and a 'models' object")
    return manifest


def file_records(entry: dict) -> list[dict]:
    """Every file record (``file``, ``sha256``, ``bytes``) of a manifest entry, an IR's ``.bin`` included."""
    records = list((entry.get("files") or {}).values())
    return records + [record["weights"] for record in records if "weights" in record]


def checked_file(text: str, zoo_dir: Path, record: dict) -> Path:
    """The zoo file of ``record`` (``file``, ``sha256``) when it is there with that hash."""
    file = zoo_dir / record["file"]
    if not file.is_file():
        raise ZooError(f"--model {text}: its file {file} is missing")
    actual = file_sha256(file)
    if actual != record["sha256"]:
        raise ZooError(f"--model {text}: {file} has sha256 {actual[:16]}..., the manifest says "
                       f"{record['sha256'][:16]}...; the file is damaged or was replaced")
    return file


def looks_like_a_name(text: str) -> bool:
    """A zoo name has no folder part and no file suffix (``camvid-road``), unlike a path."""
    return os.sep not in text and "/" not in text and not Path(text).suffix


def resolve_model(text: str | os.PathLike, kind: str = "onnx", zoo_dir: Path | None = None) -> Path:
    """``text`` as a path when it is one; otherwise the zoo model of that name, its hash checked."""
    zoo_dir = zoo_dir or current_zoo_dir()
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(text)
    if path.exists() or not looks_like_a_name(str(text)):
        return path
    try:
        manifest = read_manifest(zoo_dir)
    except ZooError as err:
        raise ZooError(f"--model {text}: no such file, nor a zoo model ({err})") from None
    entry = manifest["models"].get(str(text))
    if entry is None and str(text).endswith(INT8_SUFFIX) and kind == "onnx":
        entry, kind = manifest["models"].get(str(text)[:-len(INT8_SUFFIX)]), "openvino_int8"
    if entry is None:
        raise ZooError(f"--model {text}: no such file, nor a zoo model (zoo: {', '.join(sorted(manifest['models']))})")
    if kind not in entry.get("files", {}):
        recipe = entry.get("recipe")
        hint = f"; it is made by: {recipe}" if recipe else ""
        raise ZooError(f"--model {text}: a zoo name without a trained {kind} file yet ({entry.get('status', '')})"
                       + hint)
    record = entry["files"][kind]
    if "weights" in record:  # an OpenVINO IR: the .bin beside the .xml is checked too
        checked_file(str(text), zoo_dir, record["weights"])
    return checked_file(str(text), zoo_dir, record)
