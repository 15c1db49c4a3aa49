"""Private by text: precision and recall of the text stage + galprof.documents on generated
documents and screenshots (tests/text_samples.py) and on ../shared/testmedia (all public by
text: street scenes, shop fronts, signs, T-shirts, colour charts), the detector's and the
recogniser's latency, and the share of a testmedia scan that reaches the detector.

    python bench/text_privacy.py [--seeds 1,2,3] [--all] [--skip-testmedia] [--threads 2]

The testmedia part is a real scan (`galprof.pipeline.run`) with the stages objects, scenes, faces and
text into a temporary database; the verdicts come from documents.classify over the stored
media rows and payloads, as the privacy pass would make them. --all also runs the detector
and the rules on every testmedia photo, without the pre-filter, to show what the rules
alone would call private. The machine may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GALPROF_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO / "tests"))

import text_samples  # noqa: E402  (the generators the tests use)

from galprof import documents  # noqa: E402
from galprof.gallery.frames import decode_photo  # noqa: E402
from galprof.stages import build_stages  # noqa: E402
from galprof.vision.faces import FacesStage  # noqa: E402
from galprof.vision.objects import ObjectsStage  # noqa: E402
from galprof.vision.scenes import ScenesStage  # noqa: E402
from galprof.vision.text import TextStage  # noqa: E402


def precision_recall(rows) -> dict:
    tp = sum(r["expected"] and r["private"] for r in rows)
    fp = sum(not r["expected"] and r["private"] for r in rows)
    fn = sum(r["expected"] and not r["private"] for r in rows)
    return {"n": len(rows), "true_private": tp, "false_private": fp, "missed": fn,
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None}


def generated(seeds: list[int], threads: int) -> tuple[list[dict], TextStage]:
    upstream_stages = [ObjectsStage(threads=threads), ScenesStage(threads=threads),
                       FacesStage(threads=threads)]
    text = TextStage(threads=threads)
    for stage in upstream_stages + [text]:
        stage.load()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for sample in text_samples.generated_set(seed):
                path = Path(tmp) / Path(sample.name).name
                path.write_bytes(sample.data)
                frames = decode_photo(path, TextStage.long_side).frames
                upstream = {}
                for stage in upstream_stages:
                    upstream[stage.name] = stage.run(frames, upstream)
                payload = text.run(frames, upstream).to_json()
                verdict = documents.classify(payload, sample.meta, sample.fmt, sample.name)
                private, reason = documents.text_privacy(verdict.kind, verdict.reason)
                rows.append({"seed": seed, "file": Path(sample.name).name,
                             "expected_kind": sample.kind, "kind": verdict.kind,
                             "reason": reason or verdict.reason, "expected": sample.private,
                             "private": private, "ran": payload["ran"],
                             "cue": payload["cue"] or payload["skipped"],
                             "read": payload["read"]})
    return rows, text


def testmedia(threads: int, run_all: bool) -> dict:
    from galprof.pipeline import Settings, run
    from galprof.store import open_store

    root = SHARED / "testmedia"
    out = {}
    modes = [("pre-filter", True)] + ([("all photos", False)] if run_all else [])
    for label, use_prefilter in modes:
        with tempfile.TemporaryDirectory() as tmp:
            stages = build_stages(["objects", "scenes", "faces"], threads=threads)
            text = TextStage(threads=threads, prefilter=use_prefilter)
            store = open_store(Path(tmp) / "text.db")
            started = time.perf_counter()
            summary = run(store, [root], Settings(stages=stages + [text]))
            seconds = time.perf_counter() - started
            rows = []
            for path, m in sorted(store.media.under([root]).items()):
                if m["status"] == "failed":
                    continue
                result = store.results.payload(m["content_hash"], "text")
                payload = result.to_json() if result is not None else None
                meta = {k: m[k] for k in ("width", "height", "make", "model", "focal_length")}
                verdict = documents.classify(payload, meta, m["format"], path)
                private, reason = documents.text_privacy(verdict.kind, verdict.reason)
                rows.append({"file": str(Path(path).relative_to(root)),
                             "media": m["kind"], "kind": verdict.kind, "reason": verdict.reason,
                             "expected": False, "private": private,
                             "ran": bool(payload and payload["ran"]),
                             "cue": (payload or {}).get("cue") or (payload or {}).get("skipped")})
            store.close()
            out[label] = {"rows": rows, "stats": text.stats.to_json(),
                          "scan_seconds": round(seconds, 1),
                          "text_stage_seconds": summary.stage_seconds.get("text"),
                          "stage_seconds": summary.stage_seconds}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--all", action="store_true",
                        help="also run the detector on every testmedia photo (no pre-filter)")
    parser.add_argument("--skip-testmedia", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows, text = generated(seeds, args.threads)
    print(f"\n== generated set, seeds {seeds}")
    for r in rows:
        mark = "ok " if r["kind"] == r["expected_kind"] and r["private"] == r["expected"] else "BAD"
        print(f"{mark} {r['file'][:44]:44s} {r['expected_kind']:16s} -> {r['kind']:16s} "
              f"{'private' if r['private'] else 'public ':7s} {r['reason']!r:48s} "
              f"read {r['read']:2d} [{r['cue']}]")
    kinds_right = sum(r["kind"] == r["expected_kind"] for r in rows)
    print("private by text:", precision_recall(rows), f"kinds right {kinds_right}/{len(rows)}")
    stats = text.stats.to_json()
    print("latency on the generated set:", stats)

    if args.skip_testmedia:
        return
    for label, result in testmedia(args.threads, args.all).items():
        rows = result["rows"]
        photos = [r for r in rows if r["media"] == "photo"]
        print(f"\n== testmedia, {label}: {len(rows)} items ({len(photos)} photos)")
        for r in rows:
            if r["ran"] or r["private"] or r["kind"] != "none":
                print(f"  {r['file'][:60]:60s} {r['kind']:16s} "
                      f"{'PRIVATE' if r['private'] else 'public'} {r['reason']!r} [{r['cue']}]")
        ran = sum(r["ran"] for r in rows)
        print(f"reached the detector: {ran}/{len(rows)} items = {ran / len(rows):.1%} "
              f"({sum(r['ran'] for r in photos)}/{len(photos)} photos)")
        print("private by text:", precision_recall(rows))
        print("stage stats:", result["stats"], "| text stage", result["text_stage_seconds"],
              "s of a", result["scan_seconds"], "s scan; stages", result["stage_seconds"])


if __name__ == "__main__":
    main()
