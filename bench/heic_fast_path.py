"""The HEIC fast path against a full decode, on every real HEIC/HEIF of the test media.

    python bench/heic_fast_path.py [--media ../shared/testmedia] [--runs 5] [--json]

For each file: whether it has an embedded preview the fast path can use, the time to the
analysis frame on each path (median of --runs, one thread, nothing else running in this
process), and what the three stages make of it on each path: the interest groups of the
profile, the objects (label and score above the taxonomy's thresholds), the top scene
class and the faces. The fast path is what `galprof scan` does (read_media with
for_stages=True): the preview for objects and scenes, and for faces a glance at the
preview, the full picture decoded only when that shows a face or a hint of one.

A second table checks the faces rule where the test HEICs cannot (one of them shows a
face): every JPEG of testmedia/faces reduced to a 320 px "preview" must give the same
faces through the fast path as the full frame does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from galprof import taxonomy                                   # noqa: E402
from galprof.gallery.frames import decode_photo               # noqa: E402
from galprof.gallery.walk import walk                         # noqa: E402
from galprof.interests import contributions                    # noqa: E402
from galprof.stages import Frame, build_stages                # noqa: E402


def median_ms(fn, runs: int) -> float:
    fn()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return round(1000 * statistics.median(samples), 1)


def analyse(stages, frames) -> dict:
    return {s.name: s.run(frames, {}) for s in stages}


def describe(results, tax, size) -> dict:
    objects = sorted((o.label, round(o.score, 2))
                     for o in results["objects"].summary(tax.coco_threshold))
    faces = [f for fr in results["faces"].frames for f in fr.faces]
    _, found = contributions(results, tax, {"width": size[0], "height": size[1]})
    return {"groups": sorted({g for _, g, _ in found}),
            "objects": objects, "scene": results["scenes"].scenes[0].label,
            "faces": len(faces), "faces_with_identity": sum(f.identity for f in faces),
            "face_boxes": [[round(v) for v in f.box] for f in faces]}


def heic_table(media: Path, runs: int, stages, tax, long_side: int) -> list[dict]:
    rows = []
    heics = [f for f in walk([media]).items if f.format == "HEIF" and "corrupt" not in f.path.parts]
    for found in heics:
        data = found.path.read_bytes()
        decoded = decode_photo(data, long_side, preview=True)
        fast = decoded.frames[0]
        full = decode_photo(data, long_side).frames[0]
        row = {"file": str(found.path.relative_to(media)), "preview": fast.reduced,
               "preview_size": list(fast.image.shape[1::-1]) if fast.reduced else None,
               "full_decode_ms": median_ms(lambda: decode_photo(data, long_side), runs)}
        row["fast_decode_ms"] = (median_ms(lambda: decode_photo(data, long_side, preview=True),
                                           runs) if fast.reduced else row["full_decode_ms"])
        t = time.perf_counter()
        fast_results = analyse(stages, [fast])
        row["fast_stages_ms"] = round(1000 * (time.perf_counter() - t), 1)
        row["enlarged"] = "larger" in fast._cache
        t = time.perf_counter()
        full_results = analyse(stages, [full])
        row["full_stages_ms"] = round(1000 * (time.perf_counter() - t), 1)
        size = (decoded.meta.width, decoded.meta.height)
        row["fast"], row["full"] = (describe(fast_results, tax, size),
                                    describe(full_results, tax, size))
        row["same_groups"] = row["fast"]["groups"] == row["full"]["groups"]
        row["same_faces"] = (row["fast"]["faces"], row["fast"]["face_boxes"]) == \
            (row["full"]["faces"], row["full"]["face_boxes"])
        rows.append(row)
    return rows


def simulated_previews(media: Path, faces_stage, long_side: int, side: int = 320) -> dict:
    """Each JPEG of testmedia/faces as if it were a HEIC with a `side` px preview."""
    from PIL import Image

    checked = same = escalated = with_faces = 0
    differing = []
    for found in walk([media / "faces"]).items:
        if found.format != "JPEG":
            continue
        full = decode_photo(found.path.read_bytes(), long_side).frames[0]
        h, w = full.image.shape[:2]
        if max(h, w) <= side:
            continue
        f = side / max(h, w)
        small = np.asarray(Image.fromarray(full.image).resize(
            (max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR))
        preview = Frame(0, None, small, full.scale * small.shape[1] / w,
                        enlarge=lambda full=full: (full.image, full.scale))
        a = faces_stage.run([preview], {}).to_json()
        b = faces_stage.run([full], {}).to_json()
        checked += 1
        escalated += "larger" in preview._cache
        with_faces += b["faces"] > 0
        if a == b:
            same += 1
        else:
            differing.append(str(found.path.relative_to(media)))
    return {"photos": checked, "with_faces": with_faces, "escalated": escalated,
            "same_faces": same, "differing": differing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "testmedia")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tax = taxonomy.load()
    stages = build_stages(["objects", "scenes", "faces"])
    for s in stages:
        s.load()
    long_side = max(s.long_side for s in stages)
    rows = heic_table(args.media, args.runs, stages, tax, long_side)
    faces_stage = next(s for s in stages if s.name == "faces")
    sim = simulated_previews(args.media, faces_stage, long_side)
    if args.json:
        print(json.dumps({"heic": rows, "simulated_previews": sim}, indent=2))
        return
    print("| file | preview | decode ms fast / full | stages ms fast / full | groups fast | "
          "groups full | objects fast | objects full | scene fast / full | faces fast / full |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        fa, fu = r["fast"], r["full"]
        print(f"| {r['file']} | {'x'.join(map(str, r['preview_size'])) if r['preview'] else '-'}"
              f"{' (full on demand)' if r['enlarged'] else ''} | {r['fast_decode_ms']} / "
              f"{r['full_decode_ms']} | {r['fast_stages_ms']} / {r['full_stages_ms']} | "
              f"{', '.join(fa['groups']) or '-'} | {', '.join(fu['groups']) or '-'} | "
              f"{', '.join(f'{l} {s}' for l, s in fa['objects']) or '-'} | "
              f"{', '.join(f'{l} {s}' for l, s in fu['objects']) or '-'} | "
              f"{fa['scene']} / {fu['scene']} | {fa['faces']} / {fu['faces']} |")
    fast = [r for r in rows if r["preview"]]
    print(f"\n{len(fast)} of {len(rows)} files have a usable preview; on them: same groups "
          f"{sum(r['same_groups'] for r in fast)}/{len(fast)}, same faces "
          f"{sum(r['same_faces'] for r in fast)}/{len(fast)}, decode to analysis size median "
          f"{statistics.median(r['fast_decode_ms'] for r in fast)} ms against "
          f"{statistics.median(r['full_decode_ms'] for r in fast)} ms")
    print(f"simulated 320 px previews of testmedia/faces: {sim['photos']} photos "
          f"({sim['with_faces']} with faces), full picture asked for {sim['escalated']}, "
          f"same faces as the full frame {sim['same_faces']}/{sim['photos']}"
          + (f"; differing: {', '.join(sim['differing'])}" if sim["differing"] else ""))


if __name__ == "__main__":
    main()
