"""One media item's interests: detector objects and classifier classes to fine categories,
high-level groups, its scene and indoor/outdoor."""

from __future__ import annotations

from typing import Iterable

from galprof.taxonomy.model import CategoryHit, ItemCategories


def _noisy_or(values: Iterable[float]) -> float:
    """Independent pieces of evidence: 1 - prod(1 - v)."""
    rest = 1.0
    for v in values:
        rest *= 1.0 - min(max(v, 0.0), 1.0)
    return 1.0 - rest


def categorize(
    tax,
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
        if score < tax.coco_threshold(label):
            continue
        seen_objects[label] = max(score, seen_objects.get(label, 0.0))
    for label, score in seen_objects.items():
        for cat in tax.categories("coco", label):
            evidence.setdefault(cat, {})[f"coco:{label}"] = score

    classes = []
    for label, prob, index in scenes:
        entry = tax.entry("imagenet", label, index)
        if entry is not None:
            classes.append((entry, float(prob)))
    classes.sort(key=lambda c: -c[1])
    sums: dict[str, float] = {}
    feeders: dict[str, list[tuple[str, float]]] = {}
    for entry, prob in classes:
        for cat in tax._final(entry).categories:
            sums[cat] = sums.get(cat, 0.0) + prob
            feeders.setdefault(cat, []).append((entry.key, prob))
    top1_cats = set(tax._final(classes[0][0]).categories) if classes else set()
    top1_prob = classes[0][1] if classes else 0.0
    for cat, total in sums.items():
        if total >= tax.imagenet_min_prob or (cat in top1_cats and top1_prob >= tax.imagenet_top1_min):
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
        hits.append(CategoryHit(cat, tax.fine_categories[cat], _noisy_or(strengths), labels))
    hits.sort(key=lambda h: (-h.confidence, h.name))

    # Scene: classes of one scene group add up; the best group counts above scene_min_prob.
    scene_sums: dict[str, float] = {}
    where_evidence: dict[str, list[float]] = {"indoor": [], "outdoor": []}
    for entry, prob in classes:
        info = tax._scenes.get(entry.key)
        if info is None:
            continue
        scene_sums[info.scene] = scene_sums.get(info.scene, 0.0) + prob
    scene = scene_group = None
    scene_conf = 0.0
    if scene_sums:
        best = max(scene_sums, key=lambda s: scene_sums[s])
        if scene_sums[best] >= tax.scene_min_prob:
            scene, scene_conf = best, min(scene_sums[best], 1.0)
            scene_group = tax.scene_groups[best][1]
    for name, total in scene_sums.items():
        side = tax.scene_groups[name][0]
        if side != "either":
            where_evidence[side].append(min(total, 1.0))
    for side, weights in tax.where_objects.items():
        for label, score in seen_objects.items():
            if label in weights:
                where_evidence[side].append(weights[label] * score)
    votes = {side: _noisy_or(values) for side, values in where_evidence.items()}
    where = None
    for side, other in (("indoor", "outdoor"), ("outdoor", "indoor")):
        if votes[side] >= tax.where_min_vote and votes[side] - votes[other] >= tax.where_margin:
            where = side

    groups: dict[str, float] = {}
    for hit in hits:
        groups[hit.group] = max(groups.get(hit.group, 0.0), hit.confidence)
    if scene_group is not None:
        groups[scene_group] = max(groups.get(scene_group, 0.0), scene_conf)
    if where is not None:
        side_group = "Indoors" if where == "indoor" else "Outdoors"
        groups[side_group] = max(groups.get(side_group, 0.0), votes[where])
    order = {g: i for i, g in enumerate(tax.groups)}
    groups = dict(sorted(groups.items(), key=lambda kv: (-kv[1], order[kv[0]])))

    return ItemCategories(
        categories=tuple(hits), groups=groups, scene=scene, scene_group=scene_group,
        scene_confidence=scene_conf, where=where, where_votes=votes,
    )

