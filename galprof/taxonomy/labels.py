"""Label names as the taxonomy keys them."""

from __future__ import annotations


def canonical_label(line: str) -> str:
    """ImageNet's canonical name: the first comma-separated synonym, lowercased
    ('golden retriever' from 'Golden retriever, golden')."""
    return line.split(",")[0].strip().lower()
