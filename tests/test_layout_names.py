"""Scripts run as ``python train/fit.py`` put their folder first on sys.path, so a module there
named like a library (``datasets.py``, ``onnx.py``) would shadow it for every import."""

from __future__ import annotations

import importlib.metadata
import sys

from tests.conftest import REPO_ROOT

PACKAGES = ("models", "train", "compress", "export", "deploy")


def test_no_module_shadows_a_library_or_its_package():
    installed = set(importlib.metadata.packages_distributions()) | set(sys.stdlib_module_names)
    installed.discard("roadseg")
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            assert path.stem not in installed, f"{path} shadows the library module {path.stem!r}"
            assert path.stem != path.parent.name, f"{path} shadows its own package"
