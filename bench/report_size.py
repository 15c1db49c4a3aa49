"""Page size and build time of the HTML report for a big gallery (default 10,000 photos).

The profile is generated: every media item gets its own path (so nothing is deduplicated that
would not be in a real gallery), and each path is backed by a real testmedia file, reused
cyclically, so the previews are real JPEG-encoded photos and video frames.

    python bench/report_size.py [--photos 10000] [--max-thumbs 24] [--out /tmp/report.html]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GALPROF_SHARED", REPO.parent / "shared"))
SEP = "::"  # synthetic path = real path + SEP + item number

GROUPS = {
    "Pets/animals": ["dogs", "cats", "birds", "horses", "wild animals"],
    "People": ["selfies", "group photos", "portraits", "children"],
    "Food": ["dishes", "coffee", "fruit", "desserts", "drinks"],
    "Nature": ["mountains", "sea", "forest", "flowers", "sunsets", "snow"],
    "City": ["streets", "buildings", "monuments", "interiors"],
    "Transport": ["cars", "buses", "trains", "boats", "planes", "bicycles"],
    "Sports": ["football", "skiing", "cycling", "swimming"],
    "Technology": ["computers", "phones", "screens"],
    "Art/culture": ["museums", "concerts", "paintings"],
    "Documents": ["receipts", "notes", "screenshots"],
}


def real_media() -> list[Path]:
    rows = csv.DictReader(open(SHARED / "testmedia" / "media_index.csv", encoding="utf-8"))
    return [SHARED / "testmedia" / r["file"] for r in rows
            if r["decode_check"] == "ok" and not r["file"].startswith("corrupt/")]


def make_profile(n: int, pool: list[Path], seed: int = 7) -> dict:
    rnd = random.Random(seed)
    paths = [f"{pool[i % len(pool)]}{SEP}{i}" for i in range(n)]
    categories = []
    weights = [rnd.uniform(0.3, 3.0) for _ in GROUPS]
    for (group, subs), w in zip(GROUPS.items(), weights):
        subcategories = []
        for sub in subs:
            k = max(1, int(n * w / 25 * rnd.uniform(0.2, 1.0)))
            subcategories.append({"category": sub, "media": k, "paths": rnd.sample(paths, k)})
        total = sum(s["media"] for s in subcategories)
        categories.append({"group": group, "media": total, "share": round(total / n, 3),
                           "subcategories": subcategories})
    locations = []
    for i in range(60):
        k = max(1, int(n / (i + 2) / 4))
        locations.append({"city": f"City {i}", "admin1": "Region", "country": "Country",
                          "country_code": "XX", "media": k, "first": "2015-01-01",
                          "last": "2024-12-31", "paths": rnd.sample(paths, k)})
    bins = ["0-7", "7-12", "12-18", "18-25", "25-35", "35-45", "45-60", "60+"]
    people = []
    for i in range(80):
        k = max(2, int(n / (i + 3) / 6))
        mine = rnd.sample(paths, k)
        people.append({"id": i + 1, "name": None, "role": "owner" if i == 0 else None,
                       "gender": "MF"[i % 2], "birth_year": 1950 + (i * 7) % 70, "photos": k,
                       "videos": 0, "first": "2015-01-01", "last": "2024-12-31",
                       "face": {"path": mine[0], "box": [0.3, 0.2, 0.6, 0.6]}, "paths": mine})
    return {"schema_version": 1, "generated_at": "2026-11-29T00:00:00+00:00",
            "gallery": {"roots": ["/bench"], "photos": n, "videos": 0, "frames": 0, "failed": 0},
            "timeline": [], "cameras": [], "categories": categories, "interests": [],
            "locations": locations, "people": people, "owner": {"person_id": 1, "guess": True},
            "relations": [], "demography": {"bins": bins, "male": [1] * 8, "female": [1] * 8}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=10_000)
    ap.add_argument("--max-thumbs", type=int, default=24)
    ap.add_argument("--out", type=Path, default=Path("/tmp/galprof-bench-report.html"))
    args = ap.parse_args(argv)

    from galprof.gallery.frames import thumbnail
    from galprof.report import build_report

    def real_thumbnail(path: Path, long_side: int):
        return thumbnail(Path(str(path).split(SEP)[0]), long_side)

    profile = make_profile(args.photos, real_media())
    start = time.perf_counter()
    stats = build_report(profile, args.out, thumbs_per_category=args.max_thumbs,
                         thumbnail=real_thumbnail)
    seconds = time.perf_counter() - start
    mb = stats.bytes / 1e6
    print(f"photos={args.photos} max_thumbs={args.max_thumbs} previews={stats.thumbnails} "
          f"faces={stats.faces} failed={len(stats.failed)} size={mb:.1f} MB "
          f"({stats.bytes / max(1, stats.thumbnails + stats.faces) / 1e3:.1f} kB per preview) "
          f"build={seconds:.1f} s on {os.cpu_count()} cores -> {args.out}")
    return 0 if mb <= 30 else 1


if __name__ == "__main__":
    sys.exit(main())
