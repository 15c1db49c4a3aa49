"""HDBSCAN (Campello, Moulavi and Sander, 2013) on a precomputed distance matrix, in numpy.

The people pass clusters at most a few thousand faces at a time (cluster.py), where the
dense algorithm is the one to use: each face's core distance, the minimum spanning tree of
the mutual-reachability graph (Prim's algorithm on the matrix), its single-linkage tree,
that tree condensed by the minimum cluster size, and the clusters of excess of mass. The
labels are scikit-learn's (HDBSCAN with metric="precomputed" and its default selection;
tests/test_people.py compares them), without scikit-learn: importing it took 0.85 s and
~97 MB of a scan of the phone roll, and Termux has no build of it.
"""

from __future__ import annotations

from collections import deque

import numpy as np

NOISE = -1
_CORE_ROWS = 256        # rows partitioned at a time: no second n x n matrix for the cores


def hdbscan(distances: np.ndarray, min_cluster_size: int, min_samples: int,
            allow_single_cluster: bool = False) -> np.ndarray:
    """The cluster label of each of n points (NOISE for none), given their symmetric
    float64 distances, which become the mutual reachabilities (overwritten in place).
    `min_samples` counts the point itself; labels number the clusters in the order of
    the condensed tree (parents before children, left before right)."""
    n = len(distances)
    if n < 2:
        raise ValueError("HDBSCAN needs at least two points")
    if np.isnan(distances).any():
        raise ValueError("distances contain NaN")
    _mutual_reachability(distances, min(min_samples, n) - 1)
    starts, ends, weights = _spanning_tree(distances)
    order = np.argsort(weights)
    merges = _single_linkage(starts[order], ends[order], weights[order])
    tree = _condense(merges, min_cluster_size)
    clusters = _excess_of_mass(tree, n, allow_single_cluster)
    return _labels(tree, n, clusters, allow_single_cluster)


def _mutual_reachability(distances: np.ndarray, neighbour: int) -> None:
    """In place: max(core i, core j, distance), the core distance being the distance to
    the `neighbour`-th nearest point (0: the point itself)."""
    core = np.empty(len(distances))
    for start in range(0, len(distances), _CORE_ROWS):
        rows = distances[start:start + _CORE_ROWS]
        core[start:start + len(rows)] = np.partition(rows, neighbour, axis=1)[:, neighbour]
    np.maximum(distances, core[:, None], out=distances)
    np.maximum(distances, core[None, :], out=distances)


def _spanning_tree(reach: np.ndarray):
    """Prim's algorithm from point 0, each step's edge given as (the point added last,
    the point added now, its distance to the tree): n - 1 edges."""
    n = len(reach)
    outside = np.arange(n)
    nearest = np.full(n, np.inf)          # each outside point's distance to the tree
    starts = np.empty(n - 1, np.intp)
    ends = np.empty(n - 1, np.intp)
    weights = np.empty(n - 1)
    current = 0
    for i in range(n - 1):
        keep = outside != current
        outside = outside[keep]
        nearest = np.minimum(nearest[keep], reach[current, outside])
        j = int(np.argmin(nearest))
        starts[i], ends[i], weights[i] = current, outside[j], nearest[j]
        current = int(outside[j])
    return starts, ends, weights


def _single_linkage(starts, ends, weights) -> list[tuple[int, int, float, int]]:
    """The merges of the edges taken in order: (left node, right node, distance, size);
    merge i is node n + i, a point is its own node."""
    n = len(weights) + 1
    parent = np.arange(2 * n - 1)
    size = np.ones(2 * n - 1, np.intp)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return int(root)

    merges = []
    for i, (a, b, w) in enumerate(zip(starts.tolist(), ends.tolist(), weights.tolist())):
        left, right = find(a), find(b)
        merged = n + i
        size[merged] = size[left] + size[right]
        parent[left] = parent[right] = merged
        merges.append((left, right, w, int(size[merged])))
    return merges


def _points_under(merges, node: int, n: int) -> list[int]:
    """The points of a node's subtree, breadth first, left before right."""
    out, queue = [], deque([node])
    while queue:
        x = queue.popleft()
        if x < n:
            out.append(x)
        else:
            left, right = merges[x - n][:2]
            queue += (left, right)
    return out


def _condense(merges, min_cluster_size: int) -> list[tuple[int, int, float, int]]:
    """The condensed tree: rows (parent cluster, child, lambda = 1 / distance, size). A
    split into two parts of at least min_cluster_size points makes two clusters; a smaller
    part's points leave the cluster at that lambda, and the larger part goes on as it.
    Points are 0..n-1, clusters n (the root), n + 1, ... in the order they are made."""
    n = len(merges) + 1
    root = 2 * n - 2
    cluster_of = {root: n}
    made = n + 1
    rows = []
    queue = deque([root])
    while queue:
        node = queue.popleft()
        if node < n:
            continue
        left, right, distance, _ = merges[node - n]
        at = 1.0 / distance if distance > 0.0 else np.inf
        parent = cluster_of[node]
        counts = [merges[c - n][3] if c >= n else 1 for c in (left, right)]
        big = [count >= min_cluster_size for count in counts]
        for child, count, is_big in zip((left, right), counts, big):
            if all(big):
                cluster_of[child] = made
                rows.append((parent, made, at, count))
                made += 1
                queue.append(child)
            elif is_big:
                cluster_of[child] = parent         # the cluster goes on as this part
                queue.append(child)
            else:
                rows += [(parent, p, at, 1) for p in _points_under(merges, child, n)]
    return rows


def _excess_of_mass(tree, n: int, allow_single_cluster: bool) -> set[int]:
    """The clusters selected by excess of mass: bottom up, a cluster whose stability is
    less than its children's total gives way to them, else it replaces its descendants.
    The root is a candidate only with allow_single_cluster."""
    parents = np.array([r[0] for r in tree], np.intp)
    children = np.array([r[1] for r in tree], np.intp)
    lambdas = np.array([r[2] for r in tree])
    sizes = np.array([r[3] for r in tree], np.intp)
    top = max(int(children.max(initial=n)), n)
    births = np.full(top + 1, np.nan)
    births[children] = lambdas
    births[n] = 0.0
    stability = np.zeros(top + 1)
    with np.errstate(invalid="ignore"):               # inf - inf: a duplicate point
        np.add.at(stability, parents, (lambdas - births[parents]) * sizes)
    splits = sizes > 1
    kids: dict[int, list[int]] = {}
    for p, c in zip(parents[splits].tolist(), children[splits].tolist()):
        kids.setdefault(p, []).append(c)
    candidates = sorted(set(parents.tolist()) | {n}, reverse=True)
    if not allow_single_cluster:
        candidates = candidates[:-1]
    stable = {c: float(stability[c]) for c in candidates}
    chosen = dict.fromkeys(candidates, True)
    for node in candidates:
        below = float(np.sum([stable[c] for c in kids.get(node, [])]))
        if below > stable[node]:
            chosen[node] = False
            stable[node] = below
        else:
            queue = deque(kids.get(node, []))
            while queue:
                c = queue.popleft()
                chosen[c] = False
                queue += kids.get(c, [])
    return {c for c, yes in chosen.items() if yes}


def _labels(tree, n: int, clusters: set[int], allow_single_cluster: bool) -> np.ndarray:
    """Each point's label: that of its nearest selected ancestor cluster, else NOISE; with a
    single cluster allowed and selected (the root), the points that leave the root before
    its last ones are NOISE."""
    number = {c: i for i, c in enumerate(sorted(clusters))}
    owner = {n: n}                         # cluster -> its nearest selected ancestor (or root)
    labels = np.full(n, NOISE, np.intp)
    left_at = np.empty(n)
    for parent, child, at, _ in tree:      # parents come before their children
        owner_here = owner[parent]
        if child >= n:
            owner[child] = child if child in clusters else owner_here
            continue
        left_at[child] = at
        if owner_here != n:
            labels[child] = number[owner_here]
    if len(clusters) == 1 and allow_single_cluster and n in clusters:
        last = max((at for parent, _, at, _ in tree if parent == n), default=np.inf)
        at_root = [child for parent, child, _, _ in tree if child < n and owner[parent] == n]
        for child in at_root:
            if left_at[child] >= last:
                labels[child] = number[n]
    return labels
