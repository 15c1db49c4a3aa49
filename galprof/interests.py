"""The profile's interests: what each media item contributes, counted over the gallery.

Per item, `contributions` turns its cached stage payloads into (fine category, group,
confidence) through the taxonomy's subject rules (galprof/taxonomy/scoring.py): what the
photo is of, not what happens to be in it. Over the gallery, `count` groups bursts and
near-duplicates (shots close in time with alike scene features) into one event each, so
twenty shots of one dinner count once, and builds the paper's counters: per high-level
group and fine category, the media and events that show it (strongest first), and per
category the summed confidence over the analysed events, divided by their number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from galprof.taxonomy.evidence import Evidence


@dataclass
class Item:
    path: str
    taken_at: str | None
    features: np.ndarray | None                    # scene features, to tell near-duplicates
    categories: list[tuple[str, str, float]] = field(default_factory=list)


def contributions(results: dict, taxonomy, media: dict | None = None,
                  owner_faces=None):
    """(ItemCategories, [(fine category, group, confidence)]) of one media item.

    results: stage -> payload ("objects", "scenes", "faces", "text"); media: its row (width,
    height: the displayed size boxes refer to); owner_faces: the FaceKeys of the owner's
    faces in it. A group reached only through the indoor/outdoor decision (a couch means
    Indoors) gets the scene group, or "indoor"/"outdoor", as its subcategory. What was read
    on a ticket, a boarding pass or a menu adds its categories (documents.interest_items)
    where the pictures did not already show them."""
    objects, scenes = results.get("objects"), results.get("scenes")
    if objects is None and scenes is None:
        return None, []
    media = media or {}
    evidence = Evidence.from_payloads(objects, scenes, results.get("faces"), media.get("width"),
                                      media.get("height"), taxonomy.coco_threshold, owner_faces)
    item = taxonomy.categorize(evidence=evidence)
    out = [(hit.name, hit.group, hit.confidence) for hit in item.categories]
    covered = {group for _, group, _ in out}
    for group, confidence in item.groups.items():
        if group not in covered:
            name = item.scene if item.scene_group == group and item.scene else (item.where or group.lower())
            out.append((name, group, confidence))
    text = results.get("text")
    if text is not None and text.hits:
        from galprof import documents
        shown = {name for name, _, _ in out}
        out += [c for c in documents.interest_items(text.hits) if c[0] not in shown]
    return item, out


def _time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.timestamp() if dt.tzinfo else dt.replace(tzinfo=None).timestamp()


def events(items: list[Item], seconds: float, cosine: float) -> list[int]:
    """An event number per item: items taken within `seconds` of the previous one (in time
    order) whose features are at least `cosine` alike join its event."""
    order = sorted(range(len(items)), key=lambda i: (_time(items[i].taken_at) is None,
                                                     _time(items[i].taken_at) or 0.0, items[i].path))
    event = [0] * len(items)
    current, last = -1, None
    for i in order:
        t, f = _time(items[i].taken_at), items[i].features
        joined = False
        if last is not None and t is not None and f is not None:
            lt, lf = _time(items[last].taken_at), items[last].features
            if lt is not None and lf is not None and abs(t - lt) <= seconds:
                denom = float(np.linalg.norm(f) * np.linalg.norm(lf)) or 1.0
                joined = float(np.dot(f, lf)) / denom >= cosine
        if not joined:
            current += 1
        event[i] = current
        last = i
    return event


def count(items: list[Item], groups_order: list[str], seconds: float, cosine: float
          ) -> tuple[list[dict], list[dict], int]:
    """(categories, interests, events) over the analysed items (see the module docstring)."""
    if not items:
        return [], [], 0
    event_of = events(items, seconds, cosine)
    n_events = max(event_of) + 1
    per_category: dict[tuple[str, str], dict[int, list[tuple[float, str]]]] = {}
    for item, event in zip(items, event_of):
        for category, group, confidence in item.categories:
            per_category.setdefault((category, group), {}).setdefault(event, []).append(
                (confidence, item.path))
    groups: dict[str, dict] = {}
    for (category, group), by_event in per_category.items():
        hits = sorted(((c, p) for members in by_event.values() for c, p in members),
                      key=lambda h: (-h[0], h[1]))
        g = groups.setdefault(group, {"paths": {}, "events": set(), "subcategories": []})
        for c, p in hits:
            g["paths"][p] = max(c, g["paths"].get(p, 0.0))
        g["events"].update(by_event)
        g["subcategories"].append({"category": category, "media": len(hits),
                                   "events": len(by_event), "paths": [p for _, p in hits]})
    categories = [{
        "group": group, "media": len(groups[group]["paths"]),
        "events": len(groups[group]["events"]),
        "share": round(len(groups[group]["events"]) / n_events, 4),
        "subcategories": sorted(groups[group]["subcategories"],
                                key=lambda s: (-s["events"], -s["media"], s["category"])),
    } for group in groups_order if group in groups]
    categories.sort(key=lambda g: (-g["events"], -g["media"]))
    # The paper's counters, normalised: the summed confidence of a category over the
    # analysed events (a burst, like a video, counts once), divided by their number.
    interests = [{"category": c, "group": g,
                  "score": round(sum(max(x for x, _ in members) for members in by_event.values())
                                 / n_events, 4),
                  "media": sum(len(m) for m in by_event.values()), "events": len(by_event)}
                 for (c, g), by_event in per_category.items()]
    interests.sort(key=lambda i: (-i["score"], i["category"]))
    return categories, interests, n_events
