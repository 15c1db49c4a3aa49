"""Reading and validating taxonomy.toml and scenes.toml into look-up tables.

Every violation raises TaxonomyError naming the file, the entry and the reason.
"""

from __future__ import annotations

import math
from pathlib import Path

from galprof.taxonomy.model import (COCO_PREFIX, PAPER_GROUPS, WHERE, Entry, SceneInfo,
                                    SubjectRules, TaxonomyError)


class Parsed:
    """The taxonomy files, parsed and validated into look-up tables (the base of Taxonomy)."""

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
        self._parse_subject(data)
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

    def _parse_subject(self, data: dict) -> None:
        p = self._check.probability
        subject = self._check.table(data, "subject")
        worn = self._check.table(data, "worn")
        children = self._check.table(data, "children")
        bursts = self._check.table(data, "bursts")
        for c in worn.get("categories", []):
            if c not in self.fine_categories:
                self._check.fail(f"[worn] categories: unknown fine category '{c}'")
        labels = worn.get("labels", [])
        for label in labels:
            source, _, key = label.partition(":")
            if source not in self._entries or key not in self._entries[source]:
                self._check.fail(f"[worn] labels: '{label}' is not a 'coco:' or 'imagenet:' key")
        child_category = children.get("category")
        if child_category not in self.fine_categories:
            self._check.fail(f"[children] category: unknown fine category '{child_category}'")
        age = children.get("max_age")
        if isinstance(age, bool) or not isinstance(age, (int, float)) or not 0 < age <= 18:
            self._check.fail("[children] max_age must be an age in years, 0 < age <= 18")
        seconds = bursts.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            self._check.fail("[bursts] seconds must be a number of seconds >= 0")
        where_counts = self._check.choice(subject, "where_counts", ("never", "alone", "always"),
                                          "subject")
        self.subject = SubjectRules(
            object_area=p(subject, "object_area", "subject"),
            context_area=p(subject, "context_area", "subject"),
            context_top1_prob=p(subject, "context_top1_prob", "subject"),
            where_counts=where_counts,
            min_weight=p(subject, "min_weight", "subject"),
            person_area=p(subject, "person_area", "subject"),
            face_area=p(subject, "face_area", "subject"),
            people_classifier_weight=p(subject, "people_classifier_weight", "subject"),
            confirm_min_prob=p(subject, "confirm_min_prob", "subject"),
            worn_categories=frozenset(worn.get("categories", [])),
            worn_labels=frozenset(labels),
            child_max_age=float(age), child_category=child_category,
            burst_seconds=float(seconds), burst_cosine=p(bursts, "cosine", "bursts"))

    def _parse_fine(self, data: dict) -> None:
        fine = self._check.table(data, "fine")
        for name, group in fine.items():
            self._check.lowercase(name, "fine")
            if group not in self.groups:
                self._check.fail(f"[fine] '{name}': unknown group '{group}' (known: {', '.join(self.groups)})")
        self.fine_categories: dict[str, str] = dict(fine)

    def _parse_entries(self, data: dict, source: str) -> dict[str, Entry]:
        table = self._check.table(data, source)
        allowed = {"categories", "ignore", "see", "threshold", "note", "index", "min_prob",
                   "confirm", "area", "covers", "stands_for"}
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
            min_prob = confirm = area = None
            if "min_prob" in raw:
                if source != "imagenet":
                    self._check.fail(f"{where}: min_prob is for ImageNet classes only")
                min_prob = self._check.probability(raw, "min_prob", f"{source}.{key}")
            if "confirm" in raw or "area" in raw:
                if source != "coco":
                    self._check.fail(f"{where}: confirm and area are for COCO labels only")
                confirm = raw.get("confirm")
                if confirm is not None and confirm not in self.groups:
                    self._check.fail(f"{where}: confirm must name a group (got {confirm!r})")
                if "area" in raw:
                    area = self._check.probability(raw, "area", f"{source}.{key}")
            covers = raw.get("covers", [])
            if covers:
                if source != "imagenet" or not isinstance(covers, list) or not all(
                        isinstance(c, str) and c.startswith(COCO_PREFIX) for c in covers):
                    self._check.fail(f"{where}: covers lists 'coco:LABEL' keys (ImageNet classes only)")
            stands_for = raw.get("stands_for", [])
            if stands_for:
                if source != "coco" or not isinstance(stands_for, list):
                    self._check.fail(f"{where}: stands_for lists fine categories (COCO labels only)")
                for c in stands_for:
                    if c not in self.fine_categories:
                        self._check.fail(f"{where}: stands_for: unknown fine category '{c}'")
            if (min_prob is not None or confirm is not None or covers or stands_for) \
                    and not raw.get("note"):
                self._check.fail(f"{where}: a min_prob, confirm, covers or stands_for rule "
                                 "needs a note saying why")
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
                note=str(raw.get("note", "")), min_prob=min_prob, confirm=confirm, area=area,
                covers=tuple(c[len(COCO_PREFIX):] for c in covers), stands_for=tuple(stands_for),
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

