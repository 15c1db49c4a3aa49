"""What the remote tier finds that the device tier misses, per image of testmedia/scenes.

The device tier: one YOLOX-Nano look at the frame a scan decodes (long side 1280 when
the faces stage runs). The remote tier: what `offload` uploads (long side 1024, JPEG
without EXIF), decoded as the server decodes it, then tiled YOLOX-Nano; scenes from the
EfficientNet-Lite0 + MobileNetV2 mean versus MobileNetV2 alone. In-process (no HTTP):
the models and the bytes are the server's.

Usage: GALPROF_MODELS=/path/to/models python bench/remote_gain.py [FOLDER]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from galprof.gallery.frames import decode
from galprof.remote.client import UPLOAD_LONG_SIDE, encode_jpeg
from galprof.remote.server import AccurateTier, decode_upload
from galprof.vision.objects import ObjectDetector
from galprof.vision.scenes import SceneClassifier

DEVICE_LONG_SIDE = 1280
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def main(folder: Path) -> None:
    device = ObjectDetector().load()
    device_scenes = SceneClassifier("mobilenet_v2").load()
    tier = AccurateTier().load()
    gained_total, lost_total, images_with_gain, top1_changed = 0, 0, 0, 0
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    print(f"{'image':<34} {'device objects':<44} remote extra (lost)   "
          "scene top-1 device -> remote")
    for path in files:
        frame = decode(path, "photo", DEVICE_LONG_SIDE).frames[0].image
        mine = Counter(d.label for d in device.predict(frame))
        upload = decode_upload(encode_jpeg(decode(path, "photo", UPLOAD_LONG_SIDE).frames[0].image))
        result = tier.analyse([upload])
        theirs = Counter()
        for o in result["objects"]["objects"]:
            theirs[o["label"]] = o["count"]
        extra = theirs - mine
        lost = mine - theirs
        gained_total += sum(extra.values())
        lost_total += sum(lost.values())
        images_with_gain += bool(extra)
        d_top = device_scenes.predict(frame, 1)[0].label
        r_top = result["scenes"]["scenes"][0]["label"]
        top1_changed += d_top != r_top
        fmt = lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "-"
        print(f"{path.name[:34]:<34} {fmt(mine)[:44]:<44} +[{fmt(extra)}] -[{fmt(lost)}]   "
              f"{d_top} -> {r_top}")
    print(f"\n{len(files)} images: the remote tier found {gained_total} more object instances "
          f"on {images_with_gain} images and {lost_total} fewer; scene top-1 changed on "
          f"{top1_changed}")


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[2] / "shared/testmedia/scenes"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
