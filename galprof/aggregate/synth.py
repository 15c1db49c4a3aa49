"""A synthetic benchmark shaped like the paper's Amazon subset, for the aggregators.

Each user has a few interests among C categories (1 + Poisson(1), so about 2; categories
are Zipf-popular, so labels are sparse and unbalanced) and 5 to 40 items (5 + a geometric
number, about 8 on average). An item's feature vector imitates the non-negative penultimate
layer of an image classifier (D = 1280 as in MobileNetV2): x = relu(z), where z is

- an **interest item**: a * (prototype[c] + 0.7 * subtype[c, j]) + noise, for one of the user's
  interests c (each interest has at least one item), with a clarity a that varies from item
  to item (log-normal);
- an **off-topic item** (10% of the non-clutter items): the same, for a random category the
  user is not interested in (a gift, a one-off): nothing marks it, it is label noise for
  every aggregator;
- a **clutter item** (screenshots, documents, blurred or incidental shots; a share of the
  user's items drawn per user from Beta(2, 2), about half): a common clutter look
  (one mean direction plus a random mix of 16 clutter directions) plus a weak resemblance
  to two random categories, plus noise.

Why attention should beat averaging here: averaging gives every item weight 1/M, so the
category resemblance of the clutter items enters the descriptor and pushes random
categories up the ranking. Because that resemblance is spread over all categories at
random, a linear layer after the mean cannot remove it without removing the signal too.
An attention block scores each item before pooling and can learn that items with the
clutter look deserve a small weight. Noise and off-topic items hurt every aggregator alike.

Everything is drawn from one seeded generator: the same arguments give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from galprof.aggregate.data import Dataset


# What an item is (Dataset.kinds): the generator knows, the aggregators do not.
INTEREST, OFFTOPIC, CLUTTER = 0, 1, 2


@dataclass(frozen=True)
class SynthConfig:
    users: int = 20000
    categories: int = 40
    dim: int = 1280                  # MobileNetV2's penultimate layer
    seed: int = 0
    min_items: int = 5
    max_items: int = 40
    mean_extra_items: float = 3.0    # geometric items beyond min_items: about 8 items a user
    mean_extra_interests: float = 1.0  # interests = 1 + Poisson: about 2 a user
    max_interests: int = 5
    popularity_exponent: float = 0.8  # category popularity ~ 1 / rank^exponent
    subtypes: int = 4                # kinds of item within a category (boots, sandals, ...)
    subtype_weight: float = 0.7
    clarity: float = 0.08            # median strength a of a category item's signal (at D=1280)
    clarity_spread: float = 0.5      # sigma of log(a)
    noise: float = 1.0               # per-dimension Gaussian noise before the relu
    offtopic_rate: float = 0.1       # share of non-clutter items from a non-interest category
    clutter_max_share: float = 1.0   # per-user clutter share = Beta(2, 2) * this: about half
    clutter_look: float = 0.3        # strength of the common clutter direction
    clutter_rank: int = 16           # random mix of this many clutter directions
    clutter_variety: float = 0.5
    clutter_categories: int = 2      # random categories a clutter item weakly resembles


def category_names(n: int) -> list[str]:
    return [f"category{c:02d}" for c in range(n)]


def generate(config: SynthConfig = SynthConfig()) -> Dataset:
    """Build the data set described in the module docstring."""
    cfg = config
    if cfg.users < 1 or cfg.categories < 2 or cfg.dim < 2:
        raise ValueError("synth needs at least 1 user, 2 categories and 2 dimensions")
    rng = np.random.default_rng(cfg.seed)
    c, d = cfg.categories, cfg.dim
    # A signal of strength a stands out of the noise by about a * sqrt(D): rescale the
    # strengths so that a smaller D (tests) is as hard as D = 1280.
    scale = np.float32(np.sqrt(1280.0 / d))
    prototypes = rng.standard_normal((c, d), dtype=np.float32)
    subtypes = rng.standard_normal((c, cfg.subtypes, d), dtype=np.float32)
    clutter_mean = rng.standard_normal(d, dtype=np.float32)
    clutter_dirs = rng.standard_normal((cfg.clutter_rank, d), dtype=np.float32)
    popularity = 1.0 / np.arange(1, c + 1) ** cfg.popularity_exponent
    popularity = popularity[rng.permutation(c)]
    popularity /= popularity.sum()

    n_items = cfg.min_items + rng.geometric(1.0 / (1.0 + cfg.mean_extra_items), cfg.users) - 1
    n_items = np.minimum(n_items, cfg.max_items)
    n_interests = np.minimum(1 + rng.poisson(cfg.mean_extra_interests, cfg.users),
                             min(cfg.max_interests, c - 1, cfg.min_items))
    clutter_share = rng.beta(2.0, 2.0, cfg.users) * cfg.clutter_max_share

    labels = np.zeros((cfg.users, c), dtype=np.uint8)
    kinds, cats = [], []            # per item: its kind and its category
    for u in range(cfg.users):
        mine = rng.choice(c, size=n_interests[u], replace=False, p=popularity)
        labels[u, mine] = 1
        m = n_items[u]
        kind = np.where(rng.random(m) < clutter_share[u], CLUTTER,
                        np.where(rng.random(m) < cfg.offtopic_rate, OFFTOPIC, INTEREST))
        kind[:len(mine)] = INTEREST  # every interest shows up at least once
        cat = rng.choice(mine, size=m)
        cat[:len(mine)] = mine
        others = np.setdiff1d(np.arange(c), mine)
        off = kind == OFFTOPIC
        cat[off] = rng.choice(others, size=off.sum())
        order = rng.permutation(m)  # the interests are not always the first photos
        kinds.append(kind[order])
        cats.append(cat[order])
    kind = np.concatenate(kinds)
    cat = np.concatenate(cats)
    n = len(kind)

    offsets = np.zeros(cfg.users + 1, dtype=np.int64)
    np.cumsum(n_items, out=offsets[1:])
    features = np.empty((n, d), dtype=np.float16)
    spread = np.exp(cfg.clarity_spread * rng.standard_normal(n)).astype(np.float32)
    clarity = scale * cfg.clarity * spread
    subtype = rng.integers(0, cfg.subtypes, n)
    chunk = 4096
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        k, cc, a = kind[sl], cat[sl], clarity[sl, None]
        z = cfg.noise * rng.standard_normal((len(k), d), dtype=np.float32)
        item = k != CLUTTER
        z[item] += a[item] * (prototypes[cc[item]]
                              + cfg.subtype_weight * subtypes[cc[item], subtype[sl][item]])
        clutter = ~item
        nc = int(clutter.sum())
        if nc:
            mix = rng.standard_normal((nc, cfg.clutter_rank), dtype=np.float32)
            variety = mix @ clutter_dirs / np.sqrt(cfg.clutter_rank)
            look = clutter_mean + cfg.clutter_variety * variety
            picks = np.stack([rng.choice(c, size=cfg.clutter_categories, replace=False)
                              for _ in range(nc)])
            weights = rng.dirichlet(np.ones(cfg.clutter_categories), nc).astype(np.float32)
            resemblance = np.einsum("nk,nkd->nd", weights, prototypes[picks])
            z[clutter] += scale * cfg.clutter_look * look + a[clutter] * resemblance
        features[sl] = np.maximum(z, 0.0)
    user_ids = np.array([f"user{u:06d}" for u in range(cfg.users)], dtype=str)
    return Dataset(user_ids, offsets, features, labels, category_names(c),
                   kind.astype(np.uint8)).validate("synth")
