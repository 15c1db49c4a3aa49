"""The tunables of the people passes: values and reasons in galprof/tunables.toml
([clustering], [relations]).

Override with `dataclasses.replace(CLUSTER, merge_cosine=0.7)`; `check()` refuses values
outside a sane range with a one-line reason.
"""

from __future__ import annotations

from galprof import tunables


@tunables.defaults("clustering")
class ClusterParams:
    """HDBSCAN and the seed's rules (see [clustering] in tunables.toml)."""

    min_cluster_size: int | None
    min_samples: int
    cannot_link_distance: float
    child_age: float
    child_penalty_per_year: float
    merge_cosine: float
    member_cosine: float
    min_faces: int
    min_photos: int
    exact_max_faces: int
    partition_size: int
    partition_dims: int
    assign_cosine: float

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


@tunables.defaults("relations")
class RelationParams:
    """Owner, relations and demography (see [relations] in tunables.toml)."""

    male_threshold: float
    min_photos: int
    min_span_days: int
    partner_lead: float
    parent_child_bins: int
    age_bins: tuple[int, ...]

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
AGE_BINS = RELATIONS.age_bins      # the seed's age bins (paper, "Demography")

__all__ = ["AGE_BINS", "CLUSTER", "RELATIONS", "ClusterParams", "RelationParams"]
