"""Where model files are looked up, so that relative names never depend on the working directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

_PKG_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = _PKG_ROOT / "models"  # the repository's models/ (where models/README.md says to put files)


def shared_models_dir() -> Path:
    """Return the shared test-model folder: ``$PERSON_SEARCH_SHARED_MODELS`` or ``<repo>/../shared/models``.

    It holds read-only pretrained models used as test data (e.g. the OpenVINO int8 YOLO11n);
    it may not exist (a user's clone).
    """
    env = os.environ.get("PERSON_SEARCH_SHARED_MODELS", "")
    return Path(env).expanduser() if env else _PKG_ROOT.parent / "shared" / "models"


def package_share() -> Optional[Path]:
    """Return the colcon install's ``share/person_search`` (ament index), or None outside a ROS workspace."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory("person_search"))
    except Exception:  # noqa: BLE001 - not in a ROS workspace (no ament index, or the package not in it)
        return None


def model_dirs() -> List[Path]:
    """Return the directories searched for a model file, in order, without duplicates.

    1. ``$PERSON_SEARCH_MODELS`` (os.pathsep-separated),
    2. ``$ROS_HOME/person_search/models`` where ROS_HOME is set, and
       ``~/.cache/person_search/models``,
    3. ``share/person_search/models`` of the colcon install (ament index; a normal,
       non-symlink install puts models/README.md there and any files under models/),
    4. the source tree's ``models/`` (running from a checkout),
    5. the shared test-model folder (`shared_models_dir`) where it exists.
    """
    dirs: List[Path] = [Path(p).expanduser() for p in os.environ.get("PERSON_SEARCH_MODELS", "").split(os.pathsep) if p]
    if os.environ.get("ROS_HOME"):
        dirs.append(Path(os.environ["ROS_HOME"]).expanduser() / "person_search" / "models")
    dirs.append(Path.home() / ".cache" / "person_search" / "models")
    share = package_share()
    if share is not None:
        dirs.append(share / "models")
    if MODELS_DIR.is_dir():
        dirs.append(MODELS_DIR)
    shared = shared_models_dir()
    if shared.is_dir():
        dirs.append(shared)
    return list(dict.fromkeys(dirs))


def resolve_model_path(name: str) -> Optional[Path]:
    """Return an existing file for ``name`` (absolute, relative to CWD, or in model_dirs()), else None."""
    if not name:
        return None
    p = Path(name).expanduser()
    if p.is_file():
        return p.resolve()
    if not p.is_absolute():
        for d in model_dirs():
            cand = d / p
            if cand.is_file():
                return cand.resolve()
    return None


def cache_dir(*parts: str) -> Path:
    """Return a writable cache directory (exported ONNX files, TensorRT engines), created on demand."""
    root = Path(os.environ.get("PERSON_SEARCH_CACHE", Path.home() / ".cache" / "person_search"))
    d = root.joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d
