"""What `galprof show` tells about one media item, as plain data."""

from __future__ import annotations

from galprof.store.db import Store


def describe_media(store: Store, path: str) -> dict | None:
    row = store.media_by_path(path)
    if row is None:
        return None
    media = dict(row)
    frames = [dict(r) for r in store.conn.execute(
        "SELECT idx, timestamp, width, height FROM frames WHERE media_id = ? ORDER BY idx",
        (row["id"],))]
    results = store.results(row["content_hash"]) if row["content_hash"] else {}
    info = {"media": media, "frames": frames, "results": results,
            "errors": [dict(e) for e in store.errors_for(path)], "sections": []}
    objects = results.get("objects", {}).get("payload", {}).get("objects") or []
    if objects:
        info["sections"].append({"title": "objects", "lines": [
            f"{o['label']:<16} {o['score']:.2f}  box {[round(v) for v in o.get('box', [])]}"
            for o in objects]})
    scenes = results.get("scenes", {}).get("payload", {}).get("scenes") or []
    if scenes:
        info["sections"].append({"title": "scenes", "lines": [
            f"{s['label']:<24} {s['score']:.2f}" for s in scenes[:5]]})
    faces = results.get("faces", {}).get("payload")
    if faces:
        lines = []
        people = {(r["frame_idx"], r["face_idx"]): r["person_id"] for r in store.conn.execute(
            "SELECT frame_idx, face_idx, person_id FROM faces WHERE media_id = ?", (row["id"],))}
        for f in faces["frames"]:
            for i, face in enumerate(f["faces"]):
                who = people.get((f["index"], face["track"] if face.get("track") is not None else i))
                attrs = (f"age {face['age']:.0f}, male {face['male_prob']:.2f}"
                         if face.get("age") is not None else "too small for identity")
                lines.append(f"frame {f['index']}: box {[round(v) for v in face['box']]} "
                             f"score {face['score']:.2f}, {attrs}"
                             + (f", person {who}" if who is not None else ""))
        info["sections"].append({"title": f"faces ({faces['faces']})", "lines": lines})
    from galprof import privacy
    info["privacy"] = privacy.describe(store, row)
    info["sections"].append({"title": "privacy", "lines": [
        ("private" if info["privacy"]["private"] else "public") + ": "
        + "; ".join(info["privacy"]["reasons"])]
        + [f"uploaded {u['at']} to {u['server']} ({u['bytes']} bytes)" for u in info["privacy"]["uploads"]]})

    from galprof import taxonomy
    from galprof.profile import item_categories

    cats = item_categories(results, taxonomy.load())
    if cats:
        info["categories"] = [{"category": c, "group": g, "confidence": round(v, 4)}
                              for c, g, v in sorted(cats, key=lambda x: -x[2])]
        info["sections"].append({"title": "categories", "lines": [
            f"{c['group']} / {c['category']}  {c['confidence']:.2f}" for c in info["categories"]]})
    return info
