"""Latency of the object and scene models: model call alone and full predict, 1 and 2 threads.

Usage: GALPROF_MODELS=/path/to/models python bench/vision_latency.py [PHOTO]
"""

from __future__ import annotations

import sys
import time

import numpy as np
from PIL import Image

from galprof.vision.objects import ObjectDetector
from galprof.vision.scenes import SceneClassifier

REPEATS = 30


def median_ms(fn) -> str:
    """"median (best)" in ms; the best is the figure to trust on a busy machine."""
    fn()                                    # warm-up
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return f"{1000 * float(np.median(times)):5.1f} ({1000 * min(times):5.1f})"


def main(photo: str) -> None:
    image = np.asarray(Image.open(photo).convert("RGB"))
    print(f"photo {photo} {image.shape[1]}x{image.shape[0]}, median (best) of {REPEATS}")
    makers = [(m, lambda m=m, t=1: ObjectDetector(m, threads=t))
              for m in ("yolox_nano", "yolox_nano_onnx")]
    makers += [(m, lambda m=m, t=1: SceneClassifier(m, threads=t))
               for m in ("mobilenet_v2", "efficientnet_lite0")]
    for name, make in makers:
        for threads in (1, 2):
            model = make(t=threads).load()
            feeds, _ = model._preprocess(image)
            run = median_ms(lambda: model.session.run(feeds))
            full = median_ms(lambda: model.predict(image))
            print(f"{name:20s} threads={threads}  model call {run} ms  predict {full} ms")
    # The cost of reading the feature tensor (preserving intermediate tensors).
    for name in ("mobilenet_v2", "efficientnet_lite0"):
        for keep in (True, False):
            model = SceneClassifier(name, threads=2)
            if not keep:
                model.feature_tensor = ""
            model.load()
            feeds, _ = model._preprocess(image)
            print(f"{name:20s} features={'on ' if keep else 'off'}  model call "
                  f"{median_ms(lambda: model.session.run(feeds))} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/testmedia/scenes/darknet_dog.jpg")
