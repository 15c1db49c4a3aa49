"""One media item's interests: what the photo is *of*, as fine categories, high-level groups,
its scene and indoor/outdoor.

The evidence (`taxonomy.evidence.Evidence`) is the detector's objects with the share of the
picture they cover, the classifier's classes and the faces with their size and age. The
rules, each with its reason in taxonomy.toml ([subject], [worn], [children], per-label
`min_prob` / `confirm` / `area`):
  - a detection counts in proportion to how much of the picture it covers, fully from
    `object_area` on (a subject), not at all under `context_area` (context);
  - clothes and accessories count only when no one in the photo wears them;
  - on a photo about people, a category only the classifier gives counts at a share of its
    confidence (the classifier describes the person); where the detector sees a category's
    objects only as context (ships on a skyline), the classifier's word for it is dropped;
  - a face estimated younger than `max_age` counts for Children, unless it is the owner's;
  - noisy classes need more probability (`min_prob`), some detections need the classifier
    to agree (`confirm`).
Objects and classifier are independent witnesses: confidences combine as a noisy-or; a
weighted piece of evidence (a small detection, the classifier on a portrait) counts from
`min_weight` on. What does not count is kept in `ItemCategories.dropped` with the reason,
for `galprof show`.
"""

from __future__ import annotations

from typing import Iterable

from galprof.taxonomy.evidence import Evidence
from galprof.taxonomy.model import CategoryHit, ItemCategories


def _noisy_or(values: Iterable[float]) -> float:
    """Independent pieces of evidence: 1 - prod(1 - v)."""
    rest = 1.0
    for v in values:
        rest *= 1.0 - min(max(v, 0.0), 1.0)
    return 1.0 - rest


class _Ledger:
    """Evidence per fine category, the notes on it, and what was dropped."""

    def __init__(self):
        self.strengths: dict[str, dict[str, float]] = {}
        self.notes: dict[str, list[str]] = {}
        self.dropped: list[tuple[str, str, str]] = []

    def add(self, category: str, key: str, strength: float, note: str | None = None) -> None:
        bucket = self.strengths.setdefault(category, {})
        bucket[key] = max(strength, bucket.get(key, 0.0))
        if note:
            self.notes.setdefault(category, []).append(note)

    def drop(self, category: str, key: str, why: str) -> None:
        self.dropped.append((category, key, why))


def _worn(tax, key: str, categories: Iterable[str]) -> bool:
    r = tax.subject
    return key in r.worn_labels or any(c in r.worn_categories for c in categories)


def categorize(tax, evidence: Evidence) -> ItemCategories:
    """Fine categories, high-level groups, scene and indoor/outdoor of one media item.

    Per fine category, ImageNet classes add up (beagle + foxhound both say "dogs"); the sum
    counts when it reaches ``imagenet_min_prob``, or ``imagenet_top1_min`` for the top-1 class.
    """
    r = tax.subject
    about_people = (evidence.person_area() >= r.person_area
                    or evidence.face_area() >= r.face_area)
    # Someone in the photo wears the clothes: a face shows (a headless torso is how shops
    # show clothes); without the faces stage, a large person box.
    wearer = bool(evidence.faces) if evidence.faces is not None else \
        evidence.person_area() >= r.person_area
    ledger = _Ledger()
    classes = _classes(tax, evidence, ledger)
    seen_objects, context = _objects(tax, evidence, classes, wearer, ledger)
    _classifier(tax, classes, context, about_people, wearer, ledger)
    _children(tax, evidence, ledger)
    hits = _hits(tax, ledger)
    scene_sums = _scene_sums(tax, classes, wearer)
    scene = scene_group = None
    scene_conf = 0.0
    if scene_sums:
        best = max(scene_sums, key=lambda s: scene_sums[s])
        if scene_sums[best] >= tax.scene_min_prob:
            scene, scene_conf = best, min(scene_sums[best], 1.0)
            scene_group = tax.scene_groups[best][1]
    votes, where = _where(tax, scene_sums, seen_objects)

    groups: dict[str, float] = {}
    for hit in hits:
        groups[hit.group] = max(groups.get(hit.group, 0.0), hit.confidence)
    if scene_group is not None:
        groups[scene_group] = max(groups.get(scene_group, 0.0), scene_conf)
    alone = not groups and not about_people
    if where is not None and (r.where_counts == "always" or r.where_counts == "alone" and alone):
        side_group = "Indoors" if where == "indoor" else "Outdoors"
        groups[side_group] = max(groups.get(side_group, 0.0), votes[where])
    order = {g: i for i, g in enumerate(tax.groups)}
    groups = dict(sorted(groups.items(), key=lambda kv: (-kv[1], order[kv[0]])))

    return ItemCategories(
        categories=tuple(hits), groups=groups, scene=scene, scene_group=scene_group,
        scene_confidence=scene_conf, where=where, where_votes=votes,
        dropped=tuple(ledger.dropped),
    )


def _classes(tax, evidence: Evidence, ledger: _Ledger) -> list:
    """The classifier's mapped classes that pass their floors, most probable first."""
    classes = []
    for label, prob, index in evidence.scenes:
        entry = tax.entry("imagenet", label, index)
        if entry is None:
            continue
        if entry.min_prob is not None and prob < entry.min_prob:
            for cat in tax._final(entry).categories:
                ledger.drop(cat, f"imagenet:{entry.key}",
                            f"{prob:.2f} is under this class's floor {entry.min_prob} ({entry.note})")
            continue
        classes.append((entry, float(prob)))
    classes.sort(key=lambda c: -c[1])
    return classes


def _objects(tax, evidence: Evidence, classes: list, wearer: bool,
             ledger: _Ledger) -> tuple[dict[str, float], dict[str, str]]:
    """The detector's objects, subject or context by the share of the picture they cover.
    Returns the best score per label seen, and category -> the detection that made that
    category context (when nothing made it a subject)."""
    r = tax.subject
    seen_groups = {tax.fine_categories[cat] for entry, prob in classes
                   if prob >= r.confirm_min_prob for cat in tax._final(entry).categories}
    # a sure top class names some detections better (a tricycle, not a bicycle)
    covered = set(classes[0][0].covers) if classes and classes[0][1] >= tax.imagenet_top1_min \
        else set()
    seen_objects: dict[str, float] = {}
    context: dict[str, str] = {}
    for o in evidence.objects:
        if o.score < tax.coco_threshold(o.label):
            continue
        seen_objects[o.label] = max(o.score, seen_objects.get(o.label, 0.0))
        entry = tax.entry("coco", o.label)
        categories = tax.categories("coco", o.label)
        if entry is None or not categories:
            continue
        key = f"coco:{o.label}"
        if o.label in covered:
            for cat in categories:
                ledger.drop(cat, key, f"it is the classifier's {classes[0][0].key} ({classes[0][0].note})")
            continue
        if entry.confirm and entry.confirm not in seen_groups:
            for cat in categories:
                ledger.drop(cat, key, f"the classifier does not see {entry.confirm} ({entry.note})")
            continue
        full = entry.area if entry.area is not None else r.object_area
        low = min(r.context_area, full / 2)
        weight = 1.0 if o.area is None or o.area >= full else \
            max(0.0, (o.area - low) / (full - low))
        note = (f"{key} covers {o.area:.1%} of the picture (context under {low:.0%}, a subject "
                f"from {full:.0%}): x{weight:.2f}" if weight < 1 else None)
        for cat in categories:
            if wearer and _worn(tax, key, [cat]):
                ledger.drop(cat, key, "worn by a person in the photo")
            elif o.score * weight < r.min_weight:
                ledger.drop(cat, key, f"{note}: context, under {r.min_weight}")
                for same in (cat, *entry.stands_for):
                    context.setdefault(same, key)
            else:
                ledger.add(cat, key, o.score * weight, note)
    detected = set(ledger.strengths)
    return seen_objects, {cat: key for cat, key in context.items() if cat not in detected}


def _classifier(tax, classes: list, context: dict[str, str], about_people: bool,
                wearer: bool, ledger: _Ledger) -> None:
    """The classifier's classes, summed per fine category."""
    r = tax.subject
    detected = set(ledger.strengths)
    sums: dict[str, float] = {}
    feeders: dict[str, list[tuple[str, float]]] = {}
    for entry, prob in classes:
        key = f"imagenet:{entry.key}"
        for cat in tax._final(entry).categories:
            if wearer and _worn(tax, key, [cat]):
                ledger.drop(cat, key, "worn by a person in the photo")
                continue
            if cat in context and not (entry is classes[0][0] and prob >= r.context_top1_prob):
                ledger.drop(cat, key, f"the detector sees it as context ({context[cat]})")
                continue
            sums[cat] = sums.get(cat, 0.0) + prob
            feeders.setdefault(cat, []).append((entry.key, prob))
    top1_cats = set(tax._final(classes[0][0]).categories) if classes else set()
    top1_prob = classes[0][1] if classes else 0.0
    for cat, total in sums.items():
        if not (total >= tax.imagenet_min_prob
                or (cat in top1_cats and top1_prob >= tax.imagenet_top1_min)):
            continue
        strength, note = min(total, 1.0), None
        if about_people and cat not in detected and cat not in r.worn_categories:
            strength *= r.people_classifier_weight
            note = (f"a photo about people, and only the classifier says {cat}: "
                    f"x{r.people_classifier_weight}")
            if strength < r.min_weight:
                ledger.drop(cat, ", ".join(f"imagenet:{k}" for k, _ in feeders[cat]),
                            f"{note}: under {r.min_weight}")
                continue
        ledger.add(cat, "_imagenet_sum", strength, note)
        for key, prob in feeders[cat]:
            ledger.add(cat, f"imagenet:{key}", 0.0)


def _children(tax, evidence: Evidence, ledger: _Ledger) -> None:
    """Children, from the faces' estimated ages (not the owner's own childhood photos)."""
    r = tax.subject
    for face in evidence.faces or ():
        if face.age is None or face.age >= r.child_max_age:
            continue
        if face.owner:
            ledger.drop(r.child_category, "face:child", "the owner's own childhood photo")
            continue
        ledger.add(r.child_category, "face:child", 1.0)


def _hits(tax, ledger: _Ledger) -> list[CategoryHit]:
    """One hit per fine category: detections, faces and the classifier's sum as a noisy-or."""
    hits = []
    for cat, items in ledger.strengths.items():
        strengths = [v for k, v in items.items() if k.startswith(("coco:", "face:"))]
        if "_imagenet_sum" in items:
            strengths.append(items["_imagenet_sum"])
        labels = tuple(k for k in items if not k.startswith("_"))
        hits.append(CategoryHit(cat, tax.fine_categories[cat], _noisy_or(strengths), labels,
                                tuple(dict.fromkeys(ledger.notes.get(cat, [])))))
    hits.sort(key=lambda h: (-h.confidence, h.name))
    return hits


def _scene_sums(tax, classes: list, wearer: bool) -> dict[str, float]:
    """Classes of one scene group add up. A worn class (a dress read as `bikini`) says
    nothing about the place."""
    sums: dict[str, float] = {}
    for entry, prob in classes:
        info = tax._scenes.get(entry.key)
        if info is None:
            continue
        if wearer and _worn(tax, f"imagenet:{entry.key}", tax._final(entry).categories):
            continue
        sums[info.scene] = sums.get(info.scene, 0.0) + prob
    return sums


def _where(tax, scene_sums: dict[str, float], seen_objects: dict[str, float]
           ) -> tuple[dict[str, float], str | None]:
    """The indoor and outdoor votes (scene groups and telling objects, as a noisy-or), and
    the side that wins by the margin, if one does."""
    evidence: dict[str, list[float]] = {"indoor": [], "outdoor": []}
    for name, total in scene_sums.items():
        side = tax.scene_groups[name][0]
        if side != "either":
            evidence[side].append(min(total, 1.0))
    for side, weights in tax.where_objects.items():
        for label, score in seen_objects.items():
            if label in weights:
                evidence[side].append(weights[label] * score)
    votes = {side: _noisy_or(values) for side, values in evidence.items()}
    where = None
    for side, other in (("indoor", "outdoor"), ("outdoor", "indoor")):
        if votes[side] >= tax.where_min_vote and votes[side] - votes[other] >= tax.where_margin:
            where = side
    return votes, where
