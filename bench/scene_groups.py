"""Closing-note figure for the interests issue: for every image of
`testmedia/scenes/labels.csv`, the high-level groups galprof gives it (objects + scenes
through the taxonomy), and the share that lands in a group its label calls for.

    python bench/scene_groups.py [--scene-model mobilenet_v2|efficientnet_lite0]

The expected groups (`scene_groups_expected.csv`) were written by hand from the
labels' scene and main-object columns; a hit is any expected group among the item's
groups, a top hit is the expected group being the item's most confident one.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    from galprof.inspect import describe_media
    from galprof.pipeline import Settings, run
    from galprof.stages import build_stages
    from galprof.store import open_store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=HERE.parents[1] / "shared" / "testmedia")
    parser.add_argument("--scene-model", default=None)
    args = parser.parse_args()
    with open(HERE / "scene_groups_expected.csv") as f:
        expected = {r["file"]: set(r["expected_groups"].split(";")) for r in csv.DictReader(f)}
    paths = [args.media / rel for rel in expected]
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "g.db")
        stages = build_stages(["objects", "scenes"], models={"scenes": args.scene_model})
        run(store, paths, Settings(stages=stages))
        hits = top_hits = 0
        for rel, want in expected.items():
            info = describe_media(store, str(args.media / rel))
            cats = info.get("categories", [])
            groups: dict[str, float] = {}
            for c in cats:
                groups[c["group"]] = max(groups.get(c["group"], 0), c["confidence"])
            ranked = sorted(groups, key=lambda g: -groups[g])
            hit = bool(want & set(ranked))
            top = bool(ranked) and ranked[0] in want
            hits += hit
            top_hits += top
            print(f"{'+' if hit else '-'} {rel:<48} {', '.join(ranked[:3]) or '(none)':<45} "
                  f"want {' / '.join(sorted(want))}")
        n = len(expected)
        print(f"\n{hits}/{n} ({hits / n:.0%}) land in an expected group; "
              f"{top_hits}/{n} ({top_hits / n:.0%}) with it as the top group")


if __name__ == "__main__":
    main()
