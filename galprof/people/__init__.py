"""People: identity clusters, per-person facts, owner, relations and demography.

A library over arrays: the store feeds per-face features and facts, these functions return
labels and dataclasses; nothing here reads the database or runs a model.
"""

from galprof.people.cluster import (NOISE, assign_new, auto_min_cluster_size, bcubed,
                                    centroids, cluster_faces, distance_matrix)
from galprof.people.params import (AGE_BINS, CLUSTER, RELATIONS, ClusterParams,
                                   RelationParams)
from galprof.people.relations import (Demography, Owner, Person, Relation, age_bin,
                                      demography, find_owner, qualifies, relations,
                                      summarise_people)

__all__ = [
    "AGE_BINS", "CLUSTER", "NOISE", "RELATIONS", "ClusterParams", "Demography", "Owner",
    "Person", "Relation", "RelationParams", "age_bin", "assign_new", "auto_min_cluster_size",
    "bcubed", "centroids", "cluster_faces", "demography", "distance_matrix", "find_owner",
    "qualifies", "relations", "summarise_people",
]
