"""Clustering quality on ../shared/testmedia/faces: BCubed precision, recall and F.

Runs the real FaceDetector and FaceAnalyzer on every photo under faces/ listed in
faces/labels.csv, clusters all detected faces with `cluster_faces` (unlabelled faces take
part as distractors) and scores the labelled ones.

labels.csv lists the identities of a photo but not which box is whom. A face of a
single-identity photo with one detection takes that identity; in multi-face photos the
listed identities are matched to the boxes by the pairing closest to those identities'
single-face photos. Faces left without an identity are distractors, not scored.

Faces are ordered as the store orders them (`order_keys`: no capture date, then the path,
then the face's index in its photo). Prints every person with the identities of its faces,
then the scores.

    python bench/cluster_quality.py [--testmedia DIR]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

UNNAMED = {"unlabeled", "none", ""}


def face_table(testmedia: Path) -> dict[str, list]:
    """Every face of the labelled faces/ photos: file, features, age, male_prob, box."""
    from galprof.vision.faces import FaceAnalyzer, FaceDetector

    detector, analyzer = FaceDetector(), FaceAnalyzer()
    table: dict[str, list] = {"file": [], "features": [], "age": [], "male_prob": [], "box": []}
    for row in read_labels(testmedia):
        with Image.open(testmedia / row["file"]) as im:
            image = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        for face in detector.detect(image):
            attrs = analyzer.analyze(image, face)
            table["file"].append(row["file"])
            table["features"].append(attrs.features)
            table["age"].append(attrs.age)
            table["male_prob"].append(attrs.male_prob)
            table["box"].append(face.box)
    table["features"] = np.stack(table["features"]).astype(np.float32)
    table["age"] = np.array(table["age"])
    table["male_prob"] = np.array(table["male_prob"])
    return table


def order_keys(files: list[str]) -> list[tuple]:
    """The store's key per face, (taken_at or "", path, frame, face index): these photos
    carry no date that the table reads, so the path and the detection index decide."""
    seen: Counter = Counter()
    keys = []
    for f in files:
        keys.append(("", f, 0, seen[f]))
        seen[f] += 1
    return keys


def read_labels(testmedia: Path) -> list[dict]:
    with open(testmedia / "faces" / "labels.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["file"].startswith("faces/")]


def identities(testmedia: Path, files: list[str], features: np.ndarray) -> list[str]:
    """The identity of each face ('' = unknown), see the module docstring."""
    listed = {r["file"]: [i for i in r["identities"].split(";")] for r in read_labels(testmedia)}
    faces_of: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        faces_of.setdefault(f, []).append(i)
    out = [""] * len(files)
    refs: dict[str, list[np.ndarray]] = {}
    for f, idx in faces_of.items():
        names = listed[f]
        if len(names) == 1 and len(idx) == 1 and names[0] not in UNNAMED:
            out[idx[0]] = names[0]
            refs.setdefault(names[0], []).append(features[idx[0]])
    centre = {k: np.mean(v, 0) for k, v in refs.items()}
    for f, idx in faces_of.items():
        names = [n for n in listed[f] if n in centre]
        if (len(idx) == 1 and len(listed[f]) == 1) or not names:
            continue
        pairs = max(itertools.permutations(idx, min(len(idx), len(names))),
                    key=lambda p: sum(float(features[i] @ centre[n]) for i, n in zip(p, names)))
        for i, n in zip(pairs, names):
            out[i] = n
    return out


def main() -> None:
    from galprof.people.cluster import bcubed, cluster_faces

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = os.environ.get("GALPROF_SHARED", Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--testmedia", type=Path, default=Path(shared) / "testmedia")
    args = parser.parse_args()
    os.environ.setdefault("GALPROF_MODELS", str(args.testmedia.parent / "models"))
    start = time.perf_counter()
    table = face_table(args.testmedia)
    took = time.perf_counter() - start
    truth = identities(args.testmedia, table["file"], table["features"])
    start = time.perf_counter()
    labels = cluster_faces(table["features"], table["file"], table["age"],
                           order_keys=order_keys(table["file"]))
    cluster_s = time.perf_counter() - start
    for label in sorted(set(labels.tolist())):
        members = Counter(t or "?" for t, k in zip(truth, labels) if k == label)
        name = "unknown" if label < 0 else f"person {label}"
        print(f"{name}: " + ", ".join(f"{t} x{c}" for t, c in sorted(members.items())))
    scored = np.array([t != "" for t in truth])
    p, r, f = bcubed([t for t in truth if t], labels[scored])
    print(f"faces {len(truth)} (labelled {scored.sum()}, {len(set(truth) - {''})} identities), "
          f"features {took:.1f} s, clustering {cluster_s * 1000:.0f} ms")
    print(f"people {labels.max() + 1}, unknown labelled faces {(labels[scored] < 0).sum()}")
    print(f"BCubed precision {p:.3f} recall {r:.3f} F {f:.3f}")


if __name__ == "__main__":
    main()
