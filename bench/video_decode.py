"""Video decoding for the stages: only what the sampled frames need, and still shots.

    python bench/video_decode.py [--media ../shared/testmedia] [--clips DIR] [--no-scan] [--json]

1. Per video (the test media's and generated phone clips: 1080p H.264 and 4K HEVC, 30
   and 60 s, and a 30 s 1080p tripod shot), the time to the sampled frames decoding every
   frame (what galprof did before) against decoding only what they need, that both give
   the same frames pixel for pixel, and how many sampled frames repeat a still shot.
2. Per test video, what the stages say with the repeats (each repeat given its frame's
   results) against analysing every sampled frame: objects (the video rule's summary),
   top scenes, faces.
3. Unless --no-scan: each generated clip scanned alone with all stages (galprof
   benchmark --clips), against real time.
Clips are written to --clips (kept for the next run) or a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from galprof import bench                                      # noqa: E402
from galprof.gallery import frames as frames_mod               # noqa: E402
from galprof.gallery.walk import walk                          # noqa: E402
from galprof.stages import build_stages                        # noqa: E402

LONG_SIDE = 1280
STILL_CLIP = ("1080p H.264 30 s tripod", "libx264", (1920, 1080), 30, 17_000_000)


def every_frame(path: Path, indices: set[int]) -> list[tuple[int, np.ndarray]]:
    """The frames at `indices` by decoding every frame (the reference)."""
    import av

    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        rotation = 0
        for i, vf in enumerate(c.decode(s)):
            if i == 0:
                rotation = int(getattr(vf, "rotation", 0) or 0)
            if i not in indices:
                continue
            f = min(1.0, LONG_SIDE / max(vf.width, vf.height))
            rgb = vf.to_ndarray(width=max(2, round(vf.width * f)),
                                height=max(2, round(vf.height * f)), format="rgb24")
            out.append((i, frames_mod._rotate(rgb, rotation)))
            if len(out) >= len(indices):
                break
    return out


def sampling_step(path: Path, frame_step: int = 5, max_frames: int = 40) -> int:
    import av

    with av.open(str(path)) as c:
        meta = frames_mod.video_metadata(c)
        total = c.streams.video[0].frames or (int(meta.duration * meta.fps)
                                              if meta.duration and meta.fps else 0)
    return max(frame_step, math.ceil(total / max_frames) if total else frame_step)


def decode_row(path: Path, name: str) -> dict:
    step = sampling_step(path)
    t = time.perf_counter()
    new = frames_mod.decode_video(path, LONG_SIDE, 5, 40)
    t_new = time.perf_counter() - t
    indices = [f.index for f in new.frames]
    t = time.perf_counter()
    ref = every_frame(path, set(indices))      # what 0.1.0 decoded to reach them
    t_all = time.perf_counter() - t
    stills = frames_mod.decode_video(path, LONG_SIDE, 5, 40, repeats=True)
    same = (indices == [i for i, _ in ref]
            and all(np.array_equal(f.image, im) for f, (_, im) in zip(new.frames, ref)))
    return {"video": name, "frames": len(new.frames), "step": step,
            "at_keyframes": any(i % step for i in indices),
            "every_frame_s": round(t_all, 2), "sampled_only_s": round(t_new, 2),
            "speedup": round(t_all / t_new, 1) if t_new else None, "same_frames": same,
            "repeats": sum(f.same_as is not None for f in stills.frames)}


def results_row(path: Path, name: str, stages, tax) -> dict:
    out = {"video": name}
    for label, repeats in (("every", False), ("repeats", True)):
        frames = frames_mod.decode_video(path, LONG_SIDE, 5, 40, repeats=repeats).frames
        r = {s.name: s.run(frames, {}) for s in stages}
        faces = r["faces"].to_json()
        out[label] = {"objects": sorted((o.label, o.frames_seen) for o in
                                        r["objects"].summary(tax.coco_threshold)),
                      "scenes": [s.label for s in r["scenes"].scenes[:3]],
                      "faces": faces["faces"], "tracks": len(faces["tracks"]),
                      "analysed": sum(f.same_as is None for f in frames)}
    out["same_objects"] = out["every"]["objects"] == out["repeats"]["objects"]
    out["same_scenes"] = out["every"]["scenes"] == out["repeats"]["scenes"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "testmedia")
    parser.add_argument("--clips", type=Path, default=None)
    parser.add_argument("--no-scan", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from galprof import taxonomy

    with tempfile.TemporaryDirectory() as tmp:
        clips_dir = args.clips or Path(tmp)
        clips_dir.mkdir(parents=True, exist_ok=True)
        clips = []
        for spec in bench.PHONE_CLIPS + (STILL_CLIP,):
            path = clips_dir / (spec[0].replace(" ", "_").replace(".", "") + ".mp4")
            if not path.exists():
                bench.generate_clip(path, spec[1], spec[2], spec[3], spec[4],
                                    still="tripod" in spec[0])
            clips.append((spec[0], path))
        videos = [(str(f.path.relative_to(args.media)), f.path)
                  for f in walk([args.media / "videos"]).items if f.kind == "video"]
        decode = [decode_row(p, n) for n, p in videos + clips]
        stages = build_stages(["objects", "scenes", "faces"])
        tax = taxonomy.load()
        results = [results_row(p, n, stages, tax) for n, p in videos]
        scans = [] if args.no_scan else [
            bench.clip_benchmark(spec, Path(tmp), ["objects", "scenes", "faces"], clip=path)
            for spec, (_, path) in zip(bench.PHONE_CLIPS, clips)]
    if args.json:
        print(json.dumps({"decode": decode, "results": results, "scans": scans}, indent=2))
        return
    print("| video | sampled frames (step) | every frame, s | sampled only, s | speed-up | "
          "same frames | still repeats |")
    print("|---|---|---|---|---|---|---|")
    for r in decode:
        print(f"| {r['video']} | {r['frames']} ({r['step']}) | {r['every_frame_s']} | "
              f"{r['sampled_only_s']} | {r['speedup']}x | {'yes' if r['same_frames'] else 'NO'} | "
              f"{r['repeats']} |")
    print("\n| video | analysed (of sampled) | objects (frames seen), every frame | with repeats "
          "| top scenes every / repeats | faces every / repeats |")
    print("|---|---|---|---|---|---|")
    for r in results:
        e, p = r["every"], r["repeats"]
        fmt = lambda objs: ", ".join(f"{l} {n}" for l, n in objs) or "-"       # noqa: E731
        print(f"| {r['video']} | {p['analysed']} of {e['analysed']} | {fmt(e['objects'])} | "
              f"{fmt(p['objects'])} | {', '.join(e['scenes'])} / {', '.join(p['scenes'])} | "
              f"{e['faces']} / {p['faces']} |")
    if scans:
        print("\n| clip | scan, s | x real time | decode, s | frames (repeats) | peak RSS, MB |")
        print("|---|---|---|---|---|---|")
        for r in scans:
            if "skipped" in r:
                print(f"| {r['name']} | skipped: {r['skipped']} |")
                continue
            print(f"| {r['name']} | {r['seconds']} | {r['real_time']} | {r['decode_seconds']} | "
                  f"{r['frames']} ({r['repeats']}) | {r['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
