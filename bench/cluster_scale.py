"""Clustering at scale: 50,000 synthetic 1024-d identity features (target < 20 s, < 1 GiB).

Synthetic library: 500 identities with a Zipf-like number of faces each, plus singletons
(strangers seen once). Identity centres share a common direction, as HSE features do:
faces of different people sit near cosine 0.41 and faces of one person near 0.70, the
means measured on testmedia/faces; faces are centre + Gaussian noise. Faces are grouped
into photos of 1-3 faces, never two of one identity. Prints wall and CPU time, peak RSS
(resource.getrusage) and BCubed against the truth. Isotropic noise has no heavy tail, so
the synthetic BCubed says little about quality: bench/cluster_quality.py does.

    python bench/cluster_scale.py [--faces 50000] [--identities 500] [--singletons 5000]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def synthetic(faces: int, identities: int, singletons: int, dim: int = 1024, seed: int = 0):
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(dim)
    common /= np.linalg.norm(common)

    def around_common(k: int) -> np.ndarray:
        r = rng.standard_normal((k, dim))
        r /= np.linalg.norm(r, axis=1, keepdims=True)
        out = 0.765 * common + 0.644 * r  # centres at cosine 0.585
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    centres = around_common(identities)
    weights = 1.0 / np.arange(1, identities + 1) ** 0.5
    people = rng.choice(identities, faces - singletons, p=weights / weights.sum())
    truth = np.concatenate([people, identities + np.arange(singletons)])
    features = np.empty((faces, dim), np.float32)
    for s in range(0, faces, 5000):
        t = truth[s:s + 5000]
        base = np.where((t < identities)[:, None], centres[np.minimum(t, identities - 1)],
                        around_common(len(t)))
        noise = rng.standard_normal((len(t), dim)) * np.sqrt(0.43 / dim)
        features[s:s + 5000] = base + noise
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    # Photos of 1-3 faces in a random order; a repeated identity starts a new photo.
    order = rng.permutation(faces)
    photos = np.empty(faces, np.int64)
    photo, room, seen = 0, 0, set()
    for i in order:
        if room == 0 or truth[i] in seen:
            photo, room, seen = photo + 1, int(rng.integers(1, 4)), set()
        photos[i] = photo
        seen.add(truth[i])
        room -= 1
    ages = rng.uniform(8, 80, faces)
    return features, photos, ages, truth


def main() -> None:
    from galprof.people.cluster import bcubed, cluster_faces

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=50_000)
    parser.add_argument("--identities", type=int, default=500)
    parser.add_argument("--singletons", type=int, default=5_000)
    args = parser.parse_args()
    features, photos, ages, truth = synthetic(args.faces, args.identities, args.singletons)
    # As the store orders faces: by photo (a stand-in for date and path), then face index.
    keys = [(int(p), i) for i, p in enumerate(photos)]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu0, wall0 = time.process_time(), time.perf_counter()
    labels = cluster_faces(features, photos, ages, order_keys=keys)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"faces {args.faces}, identities {args.identities}, singletons {args.singletons}")
    print(f"clustering: wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {peak:.0f} MiB "
          f"(before clustering {rss_before:.0f} MiB)")
    print(f"people {labels.max() + 1}, unknown {(labels < 0).sum()}")
    p, r, f = bcubed(truth, labels)
    print(f"BCubed precision {p:.3f} recall {r:.3f} F {f:.3f}")


if __name__ == "__main__":
    main()
