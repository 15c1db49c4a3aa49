"""The user-interest profile: a JSON document built from the store alone.

`build_profile` never runs a model: it reads media rows and cached stage results,
maps labels to interests through the taxonomy (so a taxonomy change needs no
re-scan) and adds the gallery-level passes (people, places, descriptor) when they
are available. `profile.schema.json` beside this file describes every key;
adding a key is fine, changing one bumps SCHEMA_VERSION.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

from galprof.store.db import Store

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("profile.schema.json")


def _present(store: Store) -> list:
    """Media that are in the gallery now and were read (failed files count only as failed)."""
    return store.conn.execute(
        "SELECT * FROM media WHERE status != 'failed' ORDER BY path").fetchall()


def _gallery(store: Store, media: list) -> dict:
    roots = sorted({m["root"] for m in media} | {
        r[0] for r in store.conn.execute("SELECT DISTINCT root FROM media")})
    frames = store.conn.execute(
        "SELECT count(*) FROM frames JOIN media ON media.id = frames.media_id "
        "WHERE media.status != 'failed'").fetchone()[0]
    failed = store.conn.execute("SELECT count(*) FROM media WHERE status = 'failed'").fetchone()[0]
    kinds = Counter(m["kind"] for m in media)
    return {"roots": roots, "photos": kinds.get("photo", 0), "videos": kinds.get("video", 0),
            "frames": frames, "failed": failed}


def _month(taken_at: str | None) -> str | None:
    return taken_at[:7] if taken_at and len(taken_at) >= 7 else None


def _timeline(media: list) -> list[dict]:
    months = Counter(_month(m["taken_at"]) or "unknown" for m in media)
    return [{"month": k, "media": v} for k, v in sorted(months.items())]


def _cameras(media: list) -> list[dict]:
    cams = Counter((m["make"], m["model"]) for m in media if m["make"] or m["model"])
    return [{"make": make, "model": model, "media": n}
            for (make, model), n in sorted(cams.items(), key=lambda kv: (-kv[1], str(kv[0])))]


def item_categories(results: dict[str, dict], taxonomy) -> list[tuple[str, str, float]]:
    """(fine category, group, confidence) of one media item, from its cached stage payloads.

    A group reached only through the indoor/outdoor decision (a couch means Indoors)
    gets the scene group, or "indoor"/"outdoor", as its subcategory."""
    objects = [(o["label"], o["score"]) for o in
               (results.get("objects", {}).get("payload", {}).get("objects") or [])]
    scenes = [(s["label"], s["score"], s.get("index")) for s in
              (results.get("scenes", {}).get("payload", {}).get("scenes") or [])]
    if not objects and not scenes:
        return []
    item = taxonomy.categorize(objects, scenes)
    out = [(hit.name, hit.group, hit.confidence) for hit in item.categories]
    covered = {group for _, group, _ in out}
    for group, confidence in item.groups.items():
        if group not in covered:
            name = item.scene if item.scene_group == group and item.scene else (item.where or group.lower())
            out.append((name, group, confidence))
    return out


def _categories(store: Store, media: list) -> tuple[list[dict], list[dict]]:
    from galprof import taxonomy as taxonomy_mod

    tax = taxonomy_mod.load()
    per_category: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    analysed = 0
    for m in media:
        if not m["content_hash"]:
            continue
        results = store.results(m["content_hash"])
        if "objects" not in results and "scenes" not in results:
            continue
        analysed += 1
        for category, group, confidence in item_categories(results, tax):
            per_category[(category, group)].append((m["path"], confidence))
    groups: dict[str, dict] = {}
    for (category, group), hits in per_category.items():
        g = groups.setdefault(group, {"paths": set(), "subcategories": []})
        g["paths"].update(p for p, _ in hits)
        g["subcategories"].append({"category": category, "media": len(hits),
                                   "paths": sorted(p for p, _ in hits)})
    categories = [{
        "group": group, "media": len(groups[group]["paths"]),
        "share": round(len(groups[group]["paths"]) / analysed, 4),
        "subcategories": sorted(groups[group]["subcategories"], key=lambda s: (-s["media"], s["category"])),
    } for group in tax.groups if group in groups]
    categories.sort(key=lambda g: -g["media"])
    # The paper's counters, normalised: the summed confidence of a category over the
    # analysed media, divided by their number (a video counts once).
    interests = [{"category": c, "group": g,
                  "score": round(sum(conf for _, conf in hits) / analysed, 4),
                  "media": len(hits)} for (c, g), hits in per_category.items()]
    interests.sort(key=lambda i: (-i["score"], i["category"]))
    return categories, interests


def _locations(media: list) -> list[dict]:
    from galprof import places

    items = [{"path": m["path"], "lat": m["gps_lat"], "lon": m["gps_lon"],
              "taken_at": m["taken_at"], "kind": m["kind"]}
             for m in media if m["gps_lat"] is not None and m["gps_lon"] is not None]
    return places.summarise(items) if items else []


def _locations_group(locations: list[dict], analysed: int) -> dict | None:
    """The paper's "Locations" high-level group: its subcategories are the cities."""
    if not locations:
        return None
    subs = [{"category": ", ".join(x for x in (loc.get("city"), loc.get("country")) if x),
             "media": loc["media"], "paths": loc["paths"]} for loc in locations]
    media = len({p for loc in locations for p in loc["paths"]})
    return {"group": "Locations", "media": media,
            "share": round(min(1.0, media / analysed), 4) if analysed else 0.0,
            "subcategories": subs}


def _descriptor(store: Store, media: list) -> dict:
    """The user descriptor: the paper's attention pooling of the photo features (one per
    photo, the mean over frames for a video: the scene classifier's pooled layer) when a
    trained aggregator is installed (`infer.default_path()`), else their mean, saying so."""
    import numpy as np

    from galprof.aggregate import infer
    from galprof.store.db import unpack_arrays

    present = {m["content_hash"] for m in media}
    feats = []
    for digest, blob in store.conn.execute(
            "SELECT content_hash, arrays FROM results WHERE stage = 'scenes' AND arrays IS NOT NULL"):
        if digest in present:
            arrays = unpack_arrays(blob)
            if "features" in arrays:
                feats.append(arrays["features"])
    if not feats:
        return {}
    path = infer.default_path()
    aggregator = infer.load_aggregator(path) if path.exists() else None
    out = infer.describe(np.stack(feats), aggregator, top=15)
    out.pop("weights")
    out["interests"] = [{"category": c, "probability": round(p, 4)} for c, p in out["interests"]]
    return {**out, "items": len(feats)}


def build_profile(store: Store) -> dict:
    from galprof.people.gallery import profile_sections

    media = _present(store)
    categories, interests = _categories(store, media)
    locations = _locations(media)
    group = _locations_group(locations, len(media))
    if group:
        categories.append(group)
    profile = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gallery": _gallery(store, media),
        "timeline": _timeline(media),
        "cameras": _cameras(media),
        "categories": categories,
        "interests": interests,
        "locations": locations,
        **profile_sections(store),
        "descriptor": _descriptor(store, media),
    }
    private = store.conn.execute("SELECT count(*) FROM media WHERE private = 1").fetchone()[0]
    profile["gallery"]["private"] = private
    return profile


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())
