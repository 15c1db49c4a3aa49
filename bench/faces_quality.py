"""Face branch quality on ../shared/testmedia (labels in faces/labels.csv): detection recall
and extra faces, false positives on the photoprism_nofaces hard negatives, gender accuracy,
age mean absolute error (against the midpoint of the labelled range), identity separation,
for several tile policies and frame sizes.

    python bench/faces_quality.py [--long-sides 960,1280,1600] [--grids 1,2,3] [--analyzer hse_faces]

Detection time is the detector alone (frames decoded beforehand), 2 threads; the machine
may be shared, so the load average is printed next to it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from galprof.gallery.frames import decode_photo
from galprof.people.params import RelationParams
from galprof.vision.faces import FaceAnalyzer, FaceDetector, FaceTunables

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GALPROF_SHARED", REPO.parent / "shared"))


def midpoint(age_range: str) -> float | None:
    if "-" not in age_range:
        return None
    low, high = (float(v) for v in age_range.split("-"))
    return (low + high) / 2


def detection_rows(rows, frames, detector: FaceDetector):
    """Per photo: (row, faces found, seconds)."""
    out = []
    for r in rows:
        image = frames[r["file"]].image
        start = time.perf_counter()
        faces = detector.detect(image)
        out.append((r, faces, time.perf_counter() - start))
    return out


def detection_summary(results) -> dict:
    positives = [(r, f) for r, f, _ in results if int(r["n_faces"]) > 0]
    negatives = [(r, f) for r, f, _ in results if int(r["n_faces"]) == 0]
    labelled = sum(int(r["n_faces"]) for r, _ in positives)
    found = sum(min(int(r["n_faces"]), len(f)) for r, f in positives)
    return {
        "photos": len(results),
        "recall": found / labelled,
        "found": found, "labelled": labelled,
        "extra": sum(max(0, len(f) - int(r["n_faces"])) for r, f in positives),
        "fp_faces": sum(len(f) for _, f in negatives),
        "fp_photos": sum(1 for _, f in negatives if f),
        "negatives": len(negatives),
        "ms": 1000 * sum(t for _, _, t in results) / len(results),
        "wrong": [f"{Path(r['file']).name} {len(f)}/{r['n_faces']}" for r, f, _ in results
                  if len(f) != int(r["n_faces"])],
    }


def attribute_summary(rows, frames, detector: FaceDetector, analyzer: FaceAnalyzer) -> dict:
    """Gender, age and identity on the single-face labelled photos."""
    males, ages, feats, ids, misses, wrong_gender = [], [], [], [], [], []
    for r in rows:
        if r["n_faces"] != "1" or r["identities"] in ("none",):
            continue
        image = frames[r["file"]].image
        faces = detector.detect(image)
        if not faces:
            misses.append(Path(r["file"]).name)
            continue
        att = analyzer.analyze(image, max(faces, key=lambda f: f.width))
        if r["apparent_gender"] in ("M", "F"):
            right = (att.male_prob >= RelationParams().male_threshold) == (r["apparent_gender"] == "M")
            males.append(right)
            if not right:
                wrong_gender.append(f"{Path(r['file']).name} {r['apparent_gender']} "
                                    f"p(male)={att.male_prob:.2f}")
        mid = midpoint(r["approx_age_at_photo"])
        if mid is not None:
            ages.append(abs(att.age - mid))
        if r["identities"] != "unlabeled":
            feats.append(att.features)
            ids.append(r["identities"])
    feats, ids = np.array(feats), np.array(ids)
    sims = feats @ feats.T
    same = ids[:, None] == ids[None, :]
    upper = np.triu(np.ones_like(same), 1).astype(bool)
    np.fill_diagonal(sims, -1)
    has_pair = same.sum(1) > 1
    rank1 = (ids[sims.argmax(1)] == ids)[has_pair].mean()
    same_s, diff_s = sims[same & upper], sims[~same & upper]
    # the best single cosine threshold for "same person" over all pairs
    thresholds = np.linspace(0.3, 0.9, 61)
    accuracy = [((same_s >= t).sum() + (diff_s < t).sum()) / (len(same_s) + len(diff_s))
                for t in thresholds]
    best = int(np.argmax(accuracy))
    return {
        "gender_right": int(sum(males)), "gender_n": len(males),
        "age_mae": float(np.mean(ages)), "age_n": len(ages),
        "age_within_10": float(np.mean(np.array(ages) <= 10)),
        "same_mean": float(same_s.mean()), "diff_mean": float(diff_s.mean()),
        "same_min": float(same_s.min()), "diff_max": float(diff_s.max()),
        "rank1": float(rank1), "rank1_n": int(has_pair.sum()),
        "pair_accuracy": float(accuracy[best]), "pair_threshold": float(thresholds[best]),
        "misses": misses, "wrong_gender": wrong_gender,
    }


def identity_by_face_size(rows, frames, detector: FaceDetector, analyzer: FaceAnalyzer,
                          sides=(20, 28, 36, 48, 64, 96)) -> list[tuple[int, float, float, int]]:
    """How identity degrades with face size: each labelled single-face photo is shrunk
    so that its face is `side` px, analysed with the shrunk detector box, and compared
    with the full-size features of every photo. Returns (side, mean cosine to its own
    full-size features, rank-1 among the other photos, probes)."""
    from PIL import Image

    from galprof.vision.faces import FaceBox

    probes = []
    for r in rows:
        if r["n_faces"] != "1" or r["identities"] in ("none", "unlabeled"):
            continue
        image = frames[r["file"]].image
        faces = detector.detect(image)
        if faces:
            face = max(faces, key=lambda f: f.width)
            probes.append((r["identities"], image, face, analyzer.analyze(image, face).features))
    ids = np.array([p[0] for p in probes])
    gallery = np.array([p[3] for p in probes])
    out = []
    for side in sides:
        own, hits, n = [], 0, 0
        for i, (ident, image, face, full) in enumerate(probes):
            k = side / max(face.width, face.height)
            if k >= 1:
                continue
            h, w = image.shape[:2]
            small = np.asarray(Image.fromarray(image).resize(
                (max(1, round(w * k)), max(1, round(h * k))), Image.BILINEAR))
            box = FaceBox(tuple(v * k for v in face.box), face.score,
                          [(x * k, y * k) for x, y in face.keypoints])
            feats = analyzer.analyze(small, box).features
            own.append(float(feats @ full))
            sims = gallery @ feats
            sims[i] = -1
            if (ids == ident).sum() > 1:
                hits += ids[int(sims.argmax())] == ident
                n += 1
        out.append((side, float(np.mean(own)), hits / max(n, 1), n))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long-sides", default="960,1280,1600")
    ap.add_argument("--tiles", default="all", help="tile policies to compare (comma-separated "
                    "names from the table, or all)")
    ap.add_argument("--analyzer", default="hse_faces")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("GALPROF_MODELS", str(SHARED / "models"))
    media = SHARED / "testmedia"
    with open(media / "faces" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    print(f"{len(rows)} labelled photos ({sum(int(r['n_faces']) for r in rows)} faces, "
          f"{sum(1 for r in rows if r['n_faces'] == '0')} hard negatives); "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n")

    policies = {
        "none": dict(tile_grid=1),
        "2-grid, when hinted": dict(tile_grid=2),
        "2-grid, always": dict(tile_grid=2, tile_hint_score=0.0),
        "3-grid, when hinted": dict(tile_grid=3),
        "3-grid, always": dict(tile_grid=3, tile_hint_score=0.0),
    }
    chosen_policies = [p for p in policies if args.tiles == "all" or p in args.tiles.split(",")]
    header = (f"{'long side':>9} {'tiles':<20} {'recall':>14} {'extra':>5} {'FP (neg.)':>10} "
              f"{'passes':>6} {'ms/photo':>8}  photos whose count differs from the label")
    print(header)
    print("-" * len(header))
    chosen = None
    for long_side in (int(v) for v in args.long_sides.split(",")):
        frames = {r["file"]: decode_photo(media / r["file"], long_side).frames[0] for r in rows}
        for policy in chosen_policies:
            tunables = dataclasses.replace(FaceTunables(), **policies[policy])
            detector = FaceDetector(threads=args.threads, tunables=tunables).load()
            detection_rows(rows[:3], frames, detector)           # warm up
            detector.passes = 0
            s = detection_summary(detection_rows(rows, frames, detector))
            print(f"{long_side:>9} {policy:<20} {s['recall']:>6.1%} {s['found']:>3}/{s['labelled']:<3} "
                  f"{s['extra']:>5} {s['fp_faces']:>3} in {s['fp_photos']}/{s['negatives']} "
                  f"{detector.passes / len(rows):>6.2f} {s['ms']:>8.1f}  {', '.join(s['wrong'])}",
                  flush=True)
        if long_side == 1280:
            chosen = frames
    frames = chosen or frames
    detector = FaceDetector(threads=args.threads).load()
    analyzer = FaceAnalyzer(args.analyzer, threads=args.threads).load()
    a = attribute_summary(rows, frames, detector, analyzer)
    print(f"\nattributes ({args.analyzer}, default tunables, 1280 px frames, single-face photos):")
    print(f"  gender accuracy   {a['gender_right']}/{a['gender_n']} = "
          f"{a['gender_right'] / a['gender_n']:.1%}   wrong: {'; '.join(a['wrong_gender']) or '-'}")
    print(f"  age MAE           {a['age_mae']:.1f} years over {a['age_n']} faces "
          f"({a['age_within_10']:.0%} within 10 years of the label midpoint)")
    print(f"  identity cosine   same person mean {a['same_mean']:.2f} (min {a['same_min']:.2f}), "
          f"different mean {a['diff_mean']:.2f} (max {a['diff_max']:.2f})")
    print(f"  rank-1            {a['rank1']:.1%} of {a['rank1_n']} photos have a photo of the "
          f"same person as nearest neighbour")
    print(f"  pair accuracy     {a['pair_accuracy']:.1%} at cosine >= {a['pair_threshold']:.2f}")
    print(f"  no face found in  {', '.join(a['misses']) or '-'}")
    print("\nidentity against face size (photos shrunk so the face box is this many px):")
    print(f"  {'face px':>7} {'cos to full size':>16} {'rank-1':>7} {'probes':>6}")
    for side, own, rank1, n in identity_by_face_size(rows, frames, detector, analyzer):
        print(f"  {side:>7} {own:>16.2f} {rank1:>7.1%} {n:>6}")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
