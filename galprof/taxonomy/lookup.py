"""The taxonomy: look-ups over the validated tables, and one item's categories."""

from __future__ import annotations

from typing import Iterable

from galprof.taxonomy import scoring
from galprof.taxonomy.evidence import Evidence
from galprof.taxonomy.labels import canonical_label
from galprof.taxonomy.model import (SOURCES, Entry, ItemCategories, SceneInfo,
                                    Source, TaxonomyError)
from galprof.taxonomy.parse import Parsed


class Taxonomy(Parsed):
    """A validated taxonomy. Build it with :func:`galprof.taxonomy.load`."""


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
            name = canonical_label(label) if label else ""
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

    def categorize(self, objects: Iterable[tuple[str, float]] = (),
                   scenes: Iterable[tuple[str, float, int]] = (),
                   evidence: Evidence | None = None) -> ItemCategories:
        """Fine categories, high-level groups, scene and indoor/outdoor of one media item
        (see `scoring.categorize`): from `evidence`, or from bare (label, score) objects,
        each taken as a subject, and (label, probability, index) classes."""
        return scoring.categorize(self, evidence or Evidence.from_labels(objects, scenes))
