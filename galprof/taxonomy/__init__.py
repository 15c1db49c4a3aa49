"""The interest taxonomy: model labels -> fine interest categories -> high-level groups, and scenes.

The data lives in ``taxonomy.toml`` (labels, categories, groups, thresholds) and ``scenes.toml``
(place-like classes, scene groups, indoor/outdoor cues) beside this module; this module only loads,
validates and applies it. Both files are validated at load; a violation raises
:class:`TaxonomyError` naming the file, the entry and the reason.

Sources are ``"coco"`` (object detector labels, e.g. ``"dog"``) and ``"imagenet"`` (classifier
classes, index 0..999 without the background line; the label is the first synonym, lowercased).
Unknown labels follow ``[settings] unknown_label`` of taxonomy.toml: ``"ignore"`` (the shipped
default: no categories, no scene) or ``"error"`` (raise :class:`TaxonomyError`).

Typical use, for one media item::

    tax = load()
    result = tax.categorize(objects=[("dog", 0.8)], scenes=[("beagle", 0.58, 162)])
    result.groups        # {"Pets/animals": 0.9..., ...}
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from galprof.taxonomy.labels import canonical_label
from galprof.taxonomy.lookup import Taxonomy
from galprof.taxonomy.model import (PAPER_GROUPS, CategoryHit, Entry, ItemCategories, SceneInfo,
                                    TaxonomyError)

HERE = Path(__file__).resolve().parent
DEFAULT_PATH = HERE / "taxonomy.toml"
SCENES_NAME = "scenes.toml"


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise TaxonomyError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise TaxonomyError(f"{path}: not valid TOML ({exc})") from None


@functools.lru_cache(maxsize=8)
def _load_cached(path: Path, scenes_path: Path, stamp: tuple) -> Taxonomy:
    return Taxonomy(_read_toml(path), _read_toml(scenes_path), path, scenes_path)


def load(path: str | Path | None = None, scenes_path: str | Path | None = None) -> Taxonomy:
    """Load and validate the taxonomy (default: the shipped one). Cached per file and mtime.

    ``scenes_path`` defaults to ``scenes.toml`` beside ``path``.
    """
    path = Path(path).resolve() if path is not None else DEFAULT_PATH
    scenes_path = Path(scenes_path).resolve() if scenes_path is not None else path.parent / SCENES_NAME

    def stamp(p: Path):
        try:
            st = p.stat()
            return (st.st_mtime_ns, st.st_size)
        except OSError:
            return None

    return _load_cached(path, scenes_path, (stamp(path), stamp(scenes_path)))


__all__ = [
    "PAPER_GROUPS", "CategoryHit", "Entry", "ItemCategories", "SceneInfo", "Taxonomy",
    "TaxonomyError", "canonical_label", "load",
]
