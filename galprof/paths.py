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
