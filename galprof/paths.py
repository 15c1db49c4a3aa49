"""Where galprof keeps its database and models: env overrides first, then the user data dir."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "galprof"


def data_dir() -> Path:
    """The user data directory (GALPROF_HOME overrides it, e.g. in tests)."""
    env = os.environ.get("GALPROF_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP))


def default_db() -> Path:
    env = os.environ.get("GALPROF_DB")
    return Path(env) if env else data_dir() / "galprof.db"


def models_dir() -> Path:
    env = os.environ.get("GALPROF_MODELS")
    return Path(env) if env else data_dir() / "models"


def make_private_dir(folder: Path) -> None:
    """Create `folder` and its missing parents readable by the user only (0700): galprof's
    data directory holds face data, recognised text and the paths of private photos.
    Folders that exist are left as they are."""
    missing = []
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
