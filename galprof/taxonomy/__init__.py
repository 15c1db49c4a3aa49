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
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

from galprof.errors import SetupError

HERE = Path(__file__).resolve().parent
DEFAULT_PATH = HERE / "taxonomy.toml"
SCENES_NAME = "scenes.toml"

# The high-level groups of the paper, in report order. The data file must list exactly these:
# the profile and the report key on them.
PAPER_GROUPS = (
    "Outdoors", "Indoors", "Food", "Transport", "Activity", "Sports", "Music/instruments",
    "Appliances", "Children", "Fashion", "Product/service", "Planting", "Pets/animals",
    "Culture events",
)
SOURCES = ("coco", "imagenet")
WHERE = ("indoor", "outdoor", "either")
COCO_PREFIX = "coco:"

Source = Literal["coco", "imagenet"]


class TaxonomyError(SetupError):
    """The taxonomy data is broken, or a label is unknown while unknown_label = "error"."""


@dataclass(frozen=True)
class Entry:
    """One model label as the taxonomy knows it."""

    source: str
    key: str                      # the TOML key: the name, or "name#index" for a repeated name
    name: str                     # the label itself (key without "#index")
    index: int | None             # ImageNet output index; None for COCO
    categories: tuple[str, ...]   # fine categories of this entry (empty if ignored or an alias)
    ignore: bool = False
    see: str | None = None        # alias target: "key" in the same source, or "coco:label"
    threshold: float | None = None
    note: str = ""


@dataclass(frozen=True)
class SceneInfo:
    """Where a classifier class puts a photo."""

    label: str    # ImageNet key
    scene: str    # scene group, e.g. "beach/coast"
    where: str    # "indoor", "outdoor" or "either"
    group: str    # high-level group, e.g. "Outdoors"


@dataclass(frozen=True)
class CategoryHit:
    """A fine category found in one item, how sure, and which labels said so."""

    name: str
    group: str
    confidence: float
    evidence: tuple[str, ...]    # "coco:dog", "imagenet:beagle", ...


@dataclass(frozen=True)
class ItemCategories:
    """The interests of one media item."""

    categories: tuple[CategoryHit, ...] = ()   # most confident first
    groups: dict[str, float] = field(default_factory=dict)   # high-level group -> confidence, most confident first
    scene: str | None = None                   # scene group, if the classifier is sure enough
    scene_group: str | None = None             # the high-level group of that scene
    scene_confidence: float = 0.0
    where: str | None = None                   # "indoor", "outdoor", or None when unclear
    where_votes: dict[str, float] = field(default_factory=dict)   # "indoor"/"outdoor" -> vote

    @property
    def fine(self) -> dict[str, float]:
        return {hit.name: hit.confidence for hit in self.categories}

    def to_dict(self) -> dict:
        """A JSON-ready form (what the store and the profile keep)."""
        return {
            "categories": [
                {"name": h.name, "group": h.group, "confidence": round(h.confidence, 4),
                 "evidence": list(h.evidence)}
                for h in self.categories
            ],
            "groups": {g: round(c, 4) for g, c in self.groups.items()},
            "scene": self.scene,
            "scene_group": self.scene_group,
            "scene_confidence": round(self.scene_confidence, 4),
            "where": self.where,
            "where_votes": {k: round(v, 4) for k, v in self.where_votes.items()},
        }


def canonical_imagenet(label: str) -> str:
    """'golden retriever' from 'golden retriever' or 'Golden retriever, golden'."""
    return label.split(",")[0].strip().lower()


def _noisy_or(values: Iterable[float]) -> float:
    """Independent pieces of evidence: 1 - prod(1 - v)."""
    rest = 1.0
    for v in values:
        rest *= 1.0 - min(max(v, 0.0), 1.0)
    return 1.0 - rest


class Taxonomy:
    """A validated taxonomy. Build it with :func:`load`."""

    def __init__(self, data: dict, scenes: dict, path: Path, scenes_path: Path):
        self.path = path
        self.scenes_path = scenes_path
        self._check = _Checker(path)
        self.version: int = self._check.integer(data, "version")
        self._parse_groups(data)
        self._parse_settings(data)
        self._parse_fine(data)
        self._entries: dict[str, dict[str, Entry]] = {
            "coco": self._parse_entries(data, "coco"),
            "imagenet": self._parse_entries(data, "imagenet"),
        }
        self._index_imagenet()
        self._check_aliases()
        self._check = _Checker(scenes_path)
        self._parse_scenes(scenes)

    # ---- parsing and validation -------------------------------------------------------------

    def _parse_groups(self, data: dict) -> None:
        groups = data.get("groups")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            self._check.fail("'groups' must be a list of group names")
        if tuple(groups) != PAPER_GROUPS:
            unknown = [g for g in groups if g not in PAPER_GROUPS]
            missing = [g for g in PAPER_GROUPS if g not in groups]
            self._check.fail(
                f"'groups' must be the paper's {len(PAPER_GROUPS)} groups in order"
                + (f"; unknown group(s): {unknown}" if unknown else "")
                + (f"; missing: {missing}" if missing else "")
            )
        self.groups: list[str] = list(groups)

    def _parse_settings(self, data: dict) -> None:
        s = self._check.table(data, "settings")
        self.unknown_label: str = self._check.choice(s, "unknown_label", ("ignore", "error"), "settings")
        self.default_coco_threshold = self._check.probability(s, "coco_threshold", "settings")
        self.imagenet_min_prob = self._check.probability(s, "imagenet_min_prob", "settings")
        self.imagenet_top1_min = self._check.probability(s, "imagenet_top1_min", "settings")

    def _parse_fine(self, data: dict) -> None:
        fine = self._check.table(data, "fine")
        for name, group in fine.items():
            self._check.lowercase(name, "fine")
            if group not in self.groups:
                self._check.fail(f"[fine] '{name}': unknown group '{group}' (known: {', '.join(self.groups)})")
        self.fine_categories: dict[str, str] = dict(fine)

    def _parse_entries(self, data: dict, source: str) -> dict[str, Entry]:
        table = self._check.table(data, source)
        allowed = {"categories", "ignore", "see", "threshold", "note", "index"}
        entries = {}
        for key, raw in table.items():
            where = f"[{source}] '{key}'"
            self._check.lowercase(key, source)
            if not isinstance(raw, dict):
                self._check.fail(f"{where}: must be a table like {{ categories = [...] }}")
            extra = set(raw) - allowed
            if extra:
                self._check.fail(f"{where}: unknown field(s) {sorted(extra)}")
            kinds = [k for k in ("categories", "ignore", "see") if k in raw]
            if len(kinds) != 1:
                self._check.fail(f"{where}: needs exactly one of categories / ignore / see (has {kinds or 'none'})")
            categories = raw.get("categories", [])
            if "categories" in raw:
                if not isinstance(categories, list) or not categories:
                    self._check.fail(f"{where}: categories must be a non-empty list")
                for c in categories:
                    if c not in self.fine_categories:
                        self._check.fail(f"{where}: unknown fine category '{c}' (add it to [fine])")
            if not isinstance(raw.get("note", ""), str):
                self._check.fail(f"{where}: note must be a string")
            if "ignore" in raw and raw["ignore"] is not True:
                self._check.fail(f"{where}: ignore must be true (drop it to map the label)")
            see = raw.get("see")
            if see is not None and not isinstance(see, str):
                self._check.fail(f"{where}: see must be a label")
            threshold = raw.get("threshold")
            if threshold is not None:
                if source != "coco":
                    self._check.fail(f"{where}: threshold is for COCO labels only")
                threshold = self._check.probability(raw, "threshold", f"{source}.{key}")
            name, _, suffix = key.partition("#")
            index = raw.get("index")
            if source == "imagenet":
                if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                    self._check.fail(f"{where}: needs index = the class's output index (0-based)")
                if suffix and suffix != str(index):
                    self._check.fail(f"{where}: key suffix #{suffix} differs from index = {index}")
            elif index is not None or suffix:
                self._check.fail(f"{where}: COCO labels have no index")
            entries[key] = Entry(
                source=source, key=key, name=name, index=index, categories=tuple(categories),
                ignore=bool(raw.get("ignore", False)), see=see, threshold=threshold,
                note=str(raw.get("note", "")),
            )
        return entries

    def _index_imagenet(self) -> None:
        self._by_index: dict[int, Entry] = {}
        self._by_name: dict[str, list[Entry]] = {}
        for entry in self._entries["imagenet"].values():
            if entry.index in self._by_index:
                other = self._by_index[entry.index].key
                self._check.fail(f"[imagenet] '{entry.key}': index {entry.index} already used by '{other}'")
            self._by_index[entry.index] = entry
            self._by_name.setdefault(entry.name, []).append(entry)
        for name, same in self._by_name.items():
            if len(same) > 1 and any("#" not in e.key for e in same):
                keys = ", ".join(e.key for e in same)
                self._check.fail(f"[imagenet] '{name}' repeats ({keys}): key each one as 'name#index'")
        if self._by_index and sorted(self._by_index) != list(range(len(self._by_index))):
            gaps = sorted(set(range(max(self._by_index) + 1)) - set(self._by_index))[:5]
            self._check.fail(f"[imagenet] indices must run 0..N-1 without gaps; missing e.g. {gaps}")

    def _resolve_key(self, source: str, target: str) -> Entry | None:
        if target.startswith(COCO_PREFIX):
            return self._entries["coco"].get(target[len(COCO_PREFIX):])
        return self._entries[source].get(target)

    def _check_aliases(self) -> None:
        for source, entries in self._entries.items():
            for entry in entries.values():
                if entry.see is None:
                    continue
                target = self._resolve_key(source, entry.see)
                where = f"[{source}] '{entry.key}'"
                if target is None:
                    self._check.fail(f"{where}: alias target '{entry.see}' does not exist")
                if target.see is not None:
                    self._check.fail(
                        f"{where}: alias target '{entry.see}' is itself an alias of '{target.see}' "
                        "(no chains: point at the final label)"
                    )
                if target is entry:
                    self._check.fail(f"{where}: alias of itself")

    def _parse_scenes(self, scenes: dict) -> None:
        self._check.integer(scenes, "version")
        s = self._check.table(scenes, "settings")
        self.scene_min_prob = self._check.probability(s, "scene_min_prob", "settings")
        self.where_min_vote = self._check.probability(s, "where_min_vote", "settings")
        self.where_margin = self._check.probability(s, "where_margin", "settings")
        self.scene_groups: dict[str, tuple[str, str]] = {}
        for name, raw in self._check.table(scenes, "groups").items():
            self._check.lowercase(name, "groups")
            if not isinstance(raw, dict) or set(raw) != {"where", "group"}:
                self._check.fail(f"[groups] '{name}': needs exactly where = ... and group = ...")
            if raw["where"] not in WHERE:
                self._check.fail(f"[groups] '{name}': where must be one of {', '.join(WHERE)}")
            if raw["group"] not in self.groups:
                self._check.fail(f"[groups] '{name}': unknown group '{raw['group']}'")
            self.scene_groups[name] = (raw["where"], raw["group"])
        self._scenes: dict[str, SceneInfo] = {}
        for key, scene in self._check.table(scenes, "imagenet").items():
            self._check.lowercase(key, "imagenet")
            if key not in self._entries["imagenet"]:
                self._check.fail(f"[imagenet] '{key}': not an ImageNet key of {self.path.name}")
            if scene not in self.scene_groups:
                self._check.fail(f"[imagenet] '{key}': unknown scene group '{scene}' (add it to [groups])")
            where, group = self.scene_groups[scene]
            self._scenes[key] = SceneInfo(label=key, scene=scene, where=where, group=group)
        objects = self._check.table(scenes, "objects")
        self.where_objects: dict[str, dict[str, float]] = {}
        for side in ("indoor", "outdoor"):
            table = self._check.table(objects, side)
            for label in table:
                self._check.lowercase(label, f"objects.{side}")
                if label not in self._entries["coco"]:
                    self._check.fail(f"[objects.{side}] '{label}': not a COCO label of {self.path.name}")
                self._check.probability(table, label, f"objects.{side}")
            self.where_objects[side] = dict(table)

    # ---- look-ups ---------------------------------------------------------------------------

    def labels(self, source: Source) -> list[str]:
        """Every key of a source (for ImageNet in index order)."""
        self._source(source)
        if source == "imagenet":
            return [self._by_index[i].key for i in range(len(self._by_index))]
        return list(self._entries[source])

    def entry(self, source: Source, label: str, index: int | None = None) -> Entry | None:
        """The entry of a label; None if unknown (or a TaxonomyError when unknown_label = "error").

        For ImageNet the index decides, and the label (if given) must match it: a mismatch is
        almost always an off-by-one from the background line, so it raises.
        """
        self._source(source)
        found: Entry | None = None
        if source == "imagenet":
            name = canonical_imagenet(label) if label else ""
            if index is not None:
                found = self._by_index.get(index)
                if found is not None and name and name not in (found.name, found.key):
                    raise TaxonomyError(
                        f"ImageNet index {index} is '{found.name}', not '{name}' "
                        "(labels off by one? the index excludes the background line)"
                    )
            elif name in self._entries["imagenet"]:
                found = self._entries["imagenet"][name]
            else:
                same = self._by_name.get(name, [])
                if len(same) > 1:
                    raise TaxonomyError(
                        f"ImageNet label '{name}' is ambiguous ({', '.join(e.key for e in same)}): pass its index"
                    )
                found = same[0] if same else None
        else:
            found = self._entries["coco"].get(label.strip().lower())
        if found is None and self.unknown_label == "error":
            raise TaxonomyError(f"unknown {source} label '{label}'" + (f" (index {index})" if index is not None else ""))
        return found

    def _final(self, entry: Entry) -> Entry:
        return self._resolve_key(entry.source, entry.see) if entry.see else entry

    def canonical(self, source: Source, label: str, index: int | None = None) -> str | None:
        """The label an alias stands for ('coco:hot dog' for ImageNet 'hotdog'), else the key."""
        entry = self.entry(source, label, index)
        if entry is None:
            return None
        final = self._final(entry)
        return final.key if final.source == source else f"{final.source}:{final.key}"

    def categories(self, source: Source, label: str, index: int | None = None) -> list[str]:
        """Fine categories of a label; [] for ignored labels and (by default) unknown ones."""
        entry = self.entry(source, label, index)
        return list(self._final(entry).categories) if entry is not None else []

    def is_ignored(self, source: Source, label: str, index: int | None = None) -> bool:
        entry = self.entry(source, label, index)
        return entry is not None and self._final(entry).ignore

    def group_of(self, fine_category: str) -> str:
        return self.fine_categories[fine_category]

    def coco_threshold(self, label: str) -> float:
        """Minimum detector score for a COCO label to count (noisy labels have a higher one)."""
        entry = self.entry("coco", label)
        if entry is not None and entry.threshold is not None:
            return entry.threshold
        return self.default_coco_threshold

    def scene(self, index_or_label: int | str) -> SceneInfo | None:
        """The scene an ImageNet class implies (by index or label), or None for non-place classes."""
        if isinstance(index_or_label, int):
            entry = self.entry("imagenet", "", index_or_label)
        else:
            key = index_or_label.strip().lower()
            if key in self._scenes:
                return self._scenes[key]
            entry = self.entry("imagenet", key)
        return self._scenes.get(entry.key) if entry is not None else None

    def _source(self, source: str) -> None:
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")

    # ---- one media item ---------------------------------------------------------------------

    def categorize(
        self,
        objects: Iterable[tuple[str, float]] = (),
        scenes: Iterable[tuple[str, float, int]] = (),
    ) -> ItemCategories:
        """Fine categories, high-level groups, scene and indoor/outdoor of one media item.

        ``objects``: detected COCO objects (label, score). Each must also pass the label's own
        threshold here (stricter than the detector's for noisy labels such as 'dining table').
        ``scenes``: the classifier's top classes (label, probability, index), e.g. its top 5.

        Per fine category, ImageNet classes add up (beagle + foxhound both say "dogs"); the sum
        counts when it reaches ``imagenet_min_prob``, or ``imagenet_top1_min`` for the top-1 class.
        Objects and classifier are independent witnesses: confidences combine as a noisy-or.
        """
        evidence: dict[str, dict[str, float]] = {}   # fine category -> evidence label -> strength

        seen_objects: dict[str, float] = {}
        for label, score in objects:
            label = label.strip().lower()
            if score < self.coco_threshold(label):
                continue
            seen_objects[label] = max(score, seen_objects.get(label, 0.0))
        for label, score in seen_objects.items():
            for cat in self.categories("coco", label):
                evidence.setdefault(cat, {})[f"coco:{label}"] = score

        classes = []
        for label, prob, index in scenes:
            entry = self.entry("imagenet", label, index)
            if entry is not None:
                classes.append((entry, float(prob)))
        classes.sort(key=lambda c: -c[1])
        sums: dict[str, float] = {}
        feeders: dict[str, list[tuple[str, float]]] = {}
        for entry, prob in classes:
            for cat in self._final(entry).categories:
                sums[cat] = sums.get(cat, 0.0) + prob
                feeders.setdefault(cat, []).append((entry.key, prob))
        top1_cats = set(self._final(classes[0][0]).categories) if classes else set()
        top1_prob = classes[0][1] if classes else 0.0
        for cat, total in sums.items():
            if total >= self.imagenet_min_prob or (cat in top1_cats and top1_prob >= self.imagenet_top1_min):
                bucket = evidence.setdefault(cat, {})
                for key, prob in feeders[cat]:
                    bucket[f"imagenet:{key}"] = prob
                bucket["_imagenet_sum"] = min(total, 1.0)

        hits = []
        for cat, items in evidence.items():
            strengths = [v for k, v in items.items() if k.startswith("coco:")]
            if "_imagenet_sum" in items:
                strengths.append(items["_imagenet_sum"])
            labels = tuple(k for k in items if not k.startswith("_"))
            hits.append(CategoryHit(cat, self.fine_categories[cat], _noisy_or(strengths), labels))
        hits.sort(key=lambda h: (-h.confidence, h.name))

        # Scene: classes of one scene group add up; the best group counts above scene_min_prob.
        scene_sums: dict[str, float] = {}
        where_evidence: dict[str, list[float]] = {"indoor": [], "outdoor": []}
        for entry, prob in classes:
            info = self._scenes.get(entry.key)
            if info is None:
                continue
            scene_sums[info.scene] = scene_sums.get(info.scene, 0.0) + prob
        scene = scene_group = None
        scene_conf = 0.0
        if scene_sums:
            best = max(scene_sums, key=lambda s: scene_sums[s])
            if scene_sums[best] >= self.scene_min_prob:
                scene, scene_conf = best, min(scene_sums[best], 1.0)
                scene_group = self.scene_groups[best][1]
        for name, total in scene_sums.items():
            side = self.scene_groups[name][0]
            if side != "either":
                where_evidence[side].append(min(total, 1.0))
        for side, weights in self.where_objects.items():
            for label, score in seen_objects.items():
                if label in weights:
                    where_evidence[side].append(weights[label] * score)
        votes = {side: _noisy_or(values) for side, values in where_evidence.items()}
        where = None
        for side, other in (("indoor", "outdoor"), ("outdoor", "indoor")):
            if votes[side] >= self.where_min_vote and votes[side] - votes[other] >= self.where_margin:
                where = side

        groups: dict[str, float] = {}
        for hit in hits:
            groups[hit.group] = max(groups.get(hit.group, 0.0), hit.confidence)
        if scene_group is not None:
            groups[scene_group] = max(groups.get(scene_group, 0.0), scene_conf)
        if where is not None:
            side_group = "Indoors" if where == "indoor" else "Outdoors"
            groups[side_group] = max(groups.get(side_group, 0.0), votes[where])
        order = {g: i for i, g in enumerate(self.groups)}
        groups = dict(sorted(groups.items(), key=lambda kv: (-kv[1], order[kv[0]])))

        return ItemCategories(
            categories=tuple(hits), groups=groups, scene=scene, scene_group=scene_group,
            scene_confidence=scene_conf, where=where, where_votes=votes,
        )


class _Checker:
    """Small validation helpers that name the file in every error."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, reason: str):
        raise TaxonomyError(f"{self.path}: {reason}")

    def table(self, data: dict, key: str) -> dict:
        value = data.get(key)
        if not isinstance(value, dict):
            self.fail(f"missing table [{key}]")
        return value

    def integer(self, data: dict, key: str) -> int:
        value = data.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"'{key}' must be an integer")
        return value

    def probability(self, data: dict, key: str, where: str) -> float:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0 or math.isnan(value):
            self.fail(f"[{where}] '{key}' must be a number between 0 and 1 (got {value!r})")
        return float(value)

    def choice(self, data: dict, key: str, options: tuple[str, ...], where: str) -> str:
        value = data.get(key)
        if value not in options:
            self.fail(f"[{where}] '{key}' must be one of {', '.join(options)} (got {value!r})")
        return value

    def lowercase(self, key: str, where: str) -> None:
        if key != key.lower() or key != key.strip() or not key:
            self.fail(f"[{where}] key '{key}' must be lowercase without surrounding spaces")


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
    "TaxonomyError", "canonical_imagenet", "load",
]
