"""The taxonomy's types: label entries, scene info, an item's categories, and the error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from galprof.errors import SetupError

# The high-level groups of the paper, in report order. The data file must list exactly
# these: the profile and the report key on them.
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
    min_prob: float | None = None  # an ImageNet class counts only at this probability or more
    confirm: str | None = None     # a COCO label counts only when the classifier sees this group
    area: float | None = None      # a COCO label's own subject area (see [subject] object_area)
    covers: tuple[str, ...] = ()   # COCO labels this ImageNet class names better when top-1
    stands_for: tuple[str, ...] = ()  # more fine categories a COCO detection is the object of


@dataclass(frozen=True)
class SceneInfo:
    """Where a classifier class puts a photo."""

    label: str    # ImageNet key
    scene: str    # scene group, e.g. "beach/coast"
    where: str    # "indoor", "outdoor" or "either"
    group: str    # high-level group, e.g. "Outdoors"


@dataclass(frozen=True)
class SubjectRules:
    """What a photo contributes: subject versus context ([subject], [worn], [children],
    [bursts] of taxonomy.toml, where each value has its reason)."""

    object_area: float             # a detection covering this share of the picture is a subject
    context_area: float            # ...and one under this share is context
    min_weight: float              # a category counts for a photo from this weighted confidence
    person_area: float             # a person box this big makes the photo about people...
    face_area: float               # ...and so does a face box this big
    people_classifier_weight: float  # classifier-only evidence on a photo about people
    confirm_min_prob: float        # a classifier class this sure confirms a group
    where_counts: str              # when the bare indoor/outdoor vote counts: never|alone|always
    context_top1_prob: float       # a top class this sure counts though its objects are context
    worn_categories: frozenset[str]  # fine categories of things people wear
    worn_labels: frozenset[str]    # "imagenet:groom", ...: worn, though mapped elsewhere
    child_max_age: float           # a face estimated younger than this is a child's
    child_category: str            # the fine category a child's face counts for
    burst_seconds: float           # shots this close in time...
    burst_cosine: float            # ...and this alike (scene features) are one event


@dataclass(frozen=True)
class CategoryHit:
    """A fine category found in one item, how sure, and which labels said so."""

    name: str
    group: str
    confidence: float
    evidence: tuple[str, ...]    # "coco:dog", "imagenet:beagle", "face:child", ...
    notes: tuple[str, ...] = ()  # why evidence was down-weighted


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
    dropped: tuple[tuple[str, str, str], ...] = ()   # (category, evidence, why it does not count)

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

