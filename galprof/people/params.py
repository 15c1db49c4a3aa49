"""Every tunable of the people passes, in one place, each with why it has its value.

Override with `dataclasses.replace(CLUSTER, merge_cosine=0.7)`; `check()` refuses values
outside a sane range with a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass

AGE_BINS = (0, 7, 12, 17, 24, 34, 44, 54, 100)  # the seed's age bins (paper, "Demography")


@dataclass(frozen=True)
class ClusterParams:
    # None = grow with the library: max(2, round(log10(n_faces))). 2 fragments large
    # libraries into pairs; 2 up to ~300 faces, 3 up to ~3,000, 4 up to ~30,000, 5 above.
    min_cluster_size: int | None = None
    # Neighbours a face needs, not counting itself, to be a core face (the hdbscan package's
    # count; scikit-learn's HDBSCAN counts the face too and gets this + 1). 1 keeps a person
    # seen only twice as a cluster core; larger values eat small people, and they make
    # reachability ties (equal core distances) that HDBSCAN breaks by processing order.
    min_samples: int = 1
    # Same-photo pairs get this distance (cosine distance is at most 2): never one person.
    cannot_link_distance: float = 4.0
    # The seed's child rule: below this estimated age, faces change fast, so the identity
    # features of siblings and of one child at different ages are unreliable.
    child_age: float = 7.0
    # Added distance per year of birth-year difference when either face is a child.
    child_penalty_per_year: float = 0.05
    # Two clusters whose centroids are this close (cosine) and never share a photo are one
    # person. Centroids average out noise, so different people's centroids reach 0.68 on
    # testmedia/faces (single faces stay <= 0.65); 0.68-0.72 is the plateau of best BCubed F.
    merge_cosine: float = 0.7
    # A face whose mean cosine to the other faces of its cluster is below this is unknown:
    # guards against clusters of strangers. On testmedia/faces every clustered face is
    # >= 0.648; one face each of 18 different people: mean 0.39, closest pair 0.586.
    member_cosine: float = 0.6
    # Refinement: a cluster is a person only with this many faces...
    min_faces: int = 2
    # ...from at least this many distinct photos (one burst of one photo is not a person).
    min_photos: int = 2
    # Up to this many faces the full distance matrix is used (n^2 float64: 128 MB at 4,000).
    exact_max_faces: int = 4000
    # Larger libraries are split into similarity partitions of about this size, each
    # clustered exactly, then joined by the centroid merge pass.
    partition_size: int = 2000
    # Dimensions kept by PCA to partition large libraries (partitioning only; distances
    # inside a partition use all 1024 features).
    partition_dims: int = 64
    # Incremental assignment: a new face joins an existing person when its cosine to the
    # person's centroid is at least this. On testmedia/faces (leave-one-out) a face's own
    # person's centroid is >= 0.7 for 93% of faces and no other centroid reaches 0.67.
    assign_cosine: float = 0.7

    def check(self) -> "ClusterParams":
        _range(self, "min_cluster_size", 2, 1000, allow_none=True)
        _range(self, "min_samples", 1, 100)
        _range(self, "cannot_link_distance", 2.0, 1e6)
        _range(self, "child_age", 0.0, 18.0)
        _range(self, "child_penalty_per_year", 0.0, 1.0)
        _range(self, "merge_cosine", 0.0, 1.0)
        _range(self, "member_cosine", -1.0, 1.0)
        _range(self, "min_faces", 1, 1000)
        _range(self, "min_photos", 1, 1000)
        _range(self, "exact_max_faces", 10, 20000)
        _range(self, "partition_size", 10, self.exact_max_faces)
        _range(self, "partition_dims", 2, 1024)
        _range(self, "assign_cosine", -1.0, 1.0)
        return self


@dataclass(frozen=True)
class RelationParams:
    # The HSE model's contract: male when the gender output is >= 0.6 (models manifest);
    # fused over a person's faces by the mean probability.
    male_threshold: float = 0.6
    # Only people seen this often, over this many days, are "close" and get a relation.
    min_photos: int = 5
    min_span_days: int = 15
    # Partner = the opposite-gender friend with this many times the photos of the next one.
    partner_lead: float = 1.5
    # "Two or more bins older/younger" is the seed's parent/child rule.
    parent_child_bins: int = 2
    age_bins: tuple[int, ...] = AGE_BINS

    def check(self) -> "RelationParams":
        _range(self, "male_threshold", 0.0, 1.0)
        _range(self, "min_photos", 1, 100000)
        _range(self, "min_span_days", 0, 100000)
        _range(self, "partner_lead", 1.0, 100.0)
        _range(self, "parent_child_bins", 1, len(self.age_bins))
        if list(self.age_bins) != sorted(set(self.age_bins)) or len(self.age_bins) < 2:
            raise ValueError(f"age_bins must be strictly increasing, got {self.age_bins}")
        return self


def _range(params, name: str, low, high, allow_none: bool = False) -> None:
    value = getattr(params, name)
    if value is None and allow_none:
        return
    if value is None or not (low <= value <= high):
        raise ValueError(f"{type(params).__name__}.{name}={value!r} is outside [{low}, {high}]")


CLUSTER = ClusterParams()
RELATIONS = RelationParams()

__all__ = ["AGE_BINS", "CLUSTER", "RELATIONS", "ClusterParams", "RelationParams"]
